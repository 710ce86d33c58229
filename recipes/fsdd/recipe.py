"""FSDD spoken digits: isolated digits and connected digit strings from real recordings.

    asr run fsdd [--corpus-dir DIR] [--stage N] [--stop-stage M] [--set key=value ...]

One model learns both tasks; it is tuned on both dev sets and scored on both test sets.
"""

from asr import decode, features, lm, scoring, train
from asr.corpora import fsdd
from asr.stages import Stage

TASKS = ("isolated", "connected")
TRAIN = tuple(f"{t}/train" for t in TASKS)
DEV = tuple(f"{t}/dev" for t in TASKS)
TEST = tuple(f"{t}/test" for t in TASKS)
ALL = tuple(f"{t}/{split}" for t in TASKS for split in fsdd.SPLITS)

STAGES = [
    Stage(1, "prepare", fsdd.stage),
    Stage(2, "features", features.stage, inputs=("prepare",)),
    Stage(3, "lm", lm.stage, inputs=("prepare",)),
    Stage(4, "train", train.stage, inputs=("features",)),
    Stage(5, "decode", decode.stage, inputs=("features", "lm", "train")),
    Stage(6, "score", scoring.stage, inputs=("train", "decode"), exports=("RESULTS.md",)),
]

CONFIG = {
    "prepare": fsdd.FsddConfig(),
    "features": features.FeatureConfig(sample_rate=fsdd.NATIVE_RATE, sets=ALL, train_sets=TRAIN),
    "lm": lm.LmConfig(sets=TRAIN, order=3),
    "train": train.TrainConfig(train_sets=TRAIN, dev_sets=DEV, num_layers=2, hidden=128, stack=3, epochs=10,
                               batch_frames=8_000, lr=2e-3),
    "decode": decode.DecodeConfig(sets=TEST, tune_sets=DEV),
    "score": scoring.ScoreConfig(),
}
