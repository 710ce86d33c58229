"""Your own corpus through the same stages as fsdd.

    asr run custom --set prepare.train=data/mine/train --set prepare.dev=data/mine/dev \
                   --set prepare.test=data/mine/test [--set features.sample_rate=16000 ...]

Each path is a Kaldi data directory (wav.scp, text, utt2spk) or a JSONL manifest;
several paths per split are comma-separated. See README.md for a worked example.
"""

from asr.corpora import custom
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.model.config import ModelConfig
from asr.pipeline.recipe import standard_stages
from asr.score import stage as scoring
from asr.train import stage as train

STAGES = standard_stages(custom.stage, custom.VERSION, custom.fingerprint)

CONFIG = {
    "prepare": custom.CustomConfig(),
    "features": features.FeatureConfig(sample_rate=16_000, train_sets=("train/*",)),
    "lm": lm.LmConfig(sets=("train/*",), order=3),
    "train": train.TrainConfig(
        train_sets=("train/*",),
        dev_sets=("dev/*",),
        model=ModelConfig(num_layers=2, hidden=128, stack=3),
        batch_frames=8_000,
        lr=2e-3,
    ),  # updates: by the audio's hours (asr.train.stage.plan)
    "decode": decode.DecodeConfig(sets=("test/*",), tune_sets=("dev/*",)),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
