"""FSDD spoken digits: isolated digits and connected digit strings from real recordings.

    asr run fsdd [--corpus-dir DIR] [--stage N] [--stop-stage M] [--set key=value ...]
"""

from asr.corpora import fsdd
from asr.features import FeatureConfig
from asr import features, train
from asr.stages import Stage

TASK_SETS = tuple(f"{task}/{split}" for task in ("isolated", "connected") for split in ("train", "dev", "test"))

STAGES = [
    Stage(1, "prepare", fsdd.stage),
    Stage(2, "features", features.stage, inputs=("prepare",)),
    Stage(3, "train", train.stage, inputs=("features",)),
]

CONFIG = {
    "prepare": fsdd.FsddConfig(),
    "features": FeatureConfig(sample_rate=fsdd.NATIVE_RATE, sets=TASK_SETS,
                              train_sets=("isolated/train", "connected/train")),
    "train": train.TrainConfig(train_sets=("isolated/train", "connected/train"),
                               dev_sets=("isolated/dev", "connected/dev"),
                               num_layers=2, hidden=128, stack=3, epochs=15, batch_frames=20_000),
}
