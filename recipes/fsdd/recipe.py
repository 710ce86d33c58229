"""FSDD spoken digits: isolated digits and connected digit strings from real recordings.

    asr run fsdd [--corpus-dir DIR] [--stage N] [--stop-stage M] [--set key=value ...]

One model learns both tasks; it is tuned on both dev sets and scored on both test sets.
"""

from asr import decode, features, lm, scoring, train
from asr.corpora import fsdd
from asr.recipe import standard_stages

TASKS = ("isolated", "connected")
TRAIN = tuple(f"{t}/train" for t in TASKS)
DEV = tuple(f"{t}/dev" for t in TASKS)
TEST = tuple(f"{t}/test" for t in TASKS)
ALL = tuple(f"{t}/{split}" for t in TASKS for split in fsdd.SPLITS)

STAGES = standard_stages(fsdd.stage)

CONFIG = {
    "prepare": fsdd.FsddConfig(),
    "features": features.FeatureConfig(sample_rate=fsdd.NATIVE_RATE, sets=ALL, train_sets=TRAIN),
    "lm": lm.LmConfig(sets=TRAIN, order=3),
    "train": train.TrainConfig(train_sets=TRAIN, dev_sets=DEV, num_layers=2, hidden=128, stack=3, epochs=10,
                               batch_frames=8_000, lr=2e-3),
    "decode": decode.DecodeConfig(sets=TEST, tune_sets=DEV),
    "score": scoring.ScoreConfig(),
}
