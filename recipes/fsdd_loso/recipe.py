"""FSDD speaker-independent evaluation: leave one speaker out, one fold per speaker present.

    asr run fsdd_loso [--corpus-dir DIR] [--set key=value ...]

The corpus folder holds fsdd/ and an4/: AN4's training utterances join every fold's training at weight 0.5
(``--set prepare.pool=`` trains on FSDD alone; ``prepare.pool_dir=DIR`` names another folder holding AN4).

RESULTS.md gives each fold's WER (trained on the other speakers) and the mean.
"""

from asr.corpora import fsdd
from asr.data.augment import AugmentConfig
from asr.decode.stage import DecodeConfig
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model.config import ModelConfig
from asr.pipeline.recipe import crossval_stages
from asr.score import stage as scoring
from asr.train import stage as train

STAGES = crossval_stages(fsdd.stage, fsdd.VERSION, fsdd.fingerprint)

CONFIG = {
    # isolated digits only: no connected-digit audio is needed. All of AN4's training utterances (948 by 74
    # speakers: names, letters, numbers) join every fold's training at weight 0.5: mean WER 8.05% against 9.25% with
    # the digit strings of speechocean762 and AN4 alone (docs/recipes/fsdd_loso.md); the decoder keeps FSDD's words
    "prepare": fsdd.FsddConfig(
        connected_train=0, connected_dev=0, connected_test=0, pool=("an4:0.5",), pool_words="all"
    ),
    # normalisation that `asr transcribe` reproduces on one new file (online CMVN), speed perturbation 0.9/1.1
    # and two augmented copies (reverb, volume, noise, VTLP): each helped on unseen speakers; per-speaker CMVN did
    # better still but needs all of a test speaker's audio (docs/recipes/fsdd_loso.md)
    "features": features.FeatureConfig(
        sample_rate=fsdd.NATIVE_RATE,
        sets=("loso/*",),
        train_sets=("loso/*/train",),
        speed_perturb=(0.9, 1.1),
        cmvn="online",
        augment=AugmentConfig(copies=2),
    ),
    "lm": lm.LmConfig(sets=("isolated/train",), order=2),
    "train": train.TrainConfig(
        model=ModelConfig(num_layers=2, hidden=128, stack=3, dropout=0.3),
        batch_frames=4_000,
        lr=2e-3,
        spec_augment=True,
        **train.EPOCH_PLATEAU,
        epochs=20,
    ),
    "decode": DecodeConfig(lm_weights=(0.0,), word_scores=(0.0,)),
    "score": scoring.ScoreConfig(),
}
