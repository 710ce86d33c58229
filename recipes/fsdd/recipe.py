"""FSDD spoken digits: isolated digits and connected digit strings from real recordings.

    asr run fsdd [--corpus-dir DIR] [--stage N] [--stop-stage M] [--set key=value ...]

One model learns both tasks; it is tuned on both dev sets and scored on both test sets.
"""

from asr import decode, export, features, lm, scoring, train
from asr.augment import AugmentConfig
from asr.corpora import fsdd
from asr.model import ModelConfig
from asr.recipe import standard_stages

TASKS = ("isolated", "connected")
TRAIN = tuple(f"{t}/train" for t in TASKS)
DEV = tuple(f"{t}/dev" for t in TASKS)
TEST = tuple(f"{t}/test" for t in TASKS)
ALL = tuple(f"{t}/{split}" for t in TASKS for split in fsdd.SPLITS)

STAGES = standard_stages(fsdd.stage, fsdd.VERSION, fsdd.fingerprint)

CONFIG = {
    "prepare": fsdd.FsddConfig(),
    # speed perturbation 0.9/1.1 + SpecAugment + dropout 0.3 for 8 epochs, against none + dropout 0.1 for
    # 10 epochs: greedy dev WER 2.5-2.7% vs 3.7-4.1%, isolated test WER 0.5/1.0% vs 1.5/2.0/2.0% over seeds,
    # in about the same training time (~340 s on 2 cores)
    # + one augmented copy (reverb, volume, noise, VTLP): isolated / connected test WER 0.00% / 0.16% against
    # 1.00% / 0.10%, and 40.1% against 43.8% on speechocean762's digit strings by 26 speakers it never heard
    # (README); 8.3 min end to end on 2 cores
    # + 3% non-speech examples (digital silence, noise; empty transcripts): the model heard digits in 6 of the 8
    # signals of asr.benchmarks.nonspeech without them (README "Non-speech")
    "features": features.FeatureConfig(
        sample_rate=fsdd.NATIVE_RATE,
        sets=ALL,
        train_sets=TRAIN,
        speed_perturb=(0.9, 1.1),
        augment=AugmentConfig(copies=1),
        nonspeech=0.03,
    ),
    "lm": lm.LmConfig(sets=TRAIN, order=3),
    # the epoch schedule it was tuned with: the updates-based default (2,177 updates, warm-up, dev once an epoch)
    # gave 0.00% / 0.57% isolated / connected test WER against 1.00% / 0.10% with this one (README)
    "train": train.TrainConfig(
        train_sets=TRAIN,
        dev_sets=DEV,
        model=ModelConfig(num_layers=2, hidden=128, stack=3, dropout=0.3),
        batch_frames=8_000,
        lr=2e-3,
        spec_augment=True,
        **train.EPOCH_PLATEAU,
        epochs=8,
    ),
    "decode": decode.DecodeConfig(sets=TEST, tune_sets=DEV),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
