"""FSDD speaker-independent evaluation: leave one speaker out, one fold per speaker present.

    asr run fsdd_loso [--corpus-dir DIR] [--set key=value ...]

RESULTS.md gives each fold's WER (trained on the other speakers) and the mean.
"""

from asr import crossval, features, lm, scoring, train
from asr.corpora import fsdd
from asr.decode import DecodeConfig
from asr.stages import Stage

STAGES = [
    Stage(1, "prepare", fsdd.stage),
    Stage(2, "features", features.stage, inputs=("prepare",)),
    Stage(3, "lm", lm.stage, inputs=("prepare",)),
    Stage(4, "train", crossval.train_stage, inputs=("features",)),
    Stage(5, "decode", crossval.decode_stage, inputs=("features", "lm", "train")),
    Stage(6, "score", crossval.score_stage, inputs=("train", "decode"), exports=("RESULTS.md",)),
]

CONFIG = {
    # isolated digits only: no connected-digit audio is needed
    "prepare": fsdd.FsddConfig(connected_train=0, connected_dev=0, connected_test=0),
    "features": features.FeatureConfig(sample_rate=fsdd.NATIVE_RATE, sets=("loso/*",), train_sets=("loso/*/train",)),
    "lm": lm.LmConfig(sets=("isolated/train",), order=2),
    "train": train.TrainConfig(num_layers=2, hidden=128, stack=3, epochs=15, batch_frames=4_000, lr=2e-3,
                               spec_augment=True),
    "decode": DecodeConfig(lm_weights=(0.0,), word_scores=(0.0,)),
    "score": scoring.ScoreConfig(),
}
