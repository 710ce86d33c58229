"""LibriSpeech: read English audiobooks, 16 kHz; train-clean-100 by default.

    asr run librispeech --corpus-dir DIR [--set prepare.train=train-clean-100,train-clean-360,train-other-500]
    asr run librispeech --set prepare.train=train-clean-5 --set prepare.dev=dev-clean-2

The second line trains on Mini LibriSpeech (OpenSLR 31, 5 hours). Tunes decoding on dev-clean,
scores test-clean and test-other. See asr/corpora/librispeech.py.

Sized for a GPU (a CPU takes days on 100 hours): a 4 x 320 BiLSTM over x3-stacked MFCC
frames with SpecAugment, as BiLSTM-CTC character models in the literature; the number of
updates follows the corpus size (asr/train/stage.py: plan, 10,000 for 100 hours). Several GPUs:
``--set train.nproc=N`` (README, Training). Not yet measured on this corpus.
"""

from asr.corpora import librispeech
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.model.config import ModelConfig
from asr.pipeline.recipe import standard_stages
from asr.score import stage as scoring
from asr.train import stage as train

STAGES = standard_stages(librispeech.stage, librispeech.VERSION, librispeech.fingerprint)

CONFIG = {
    "prepare": librispeech.LibriSpeechConfig(),
    "features": features.FeatureConfig(
        sample_rate=librispeech.SAMPLE_RATE, train_sets=("train/*",), speed_perturb=(0.9, 1.1)
    ),
    "lm": lm.LmConfig(sets=("train/*",), order=3, token_order=6),
    "train": train.TrainConfig(
        train_sets=("train/*",),
        dev_sets=("dev/*",),
        model=ModelConfig(num_layers=4, hidden=320, stack=3, dropout=0.2),
        batch_frames=20_000,
        lr=1e-3,
        spec_augment=True,
        early_stop=5,
    ),
    # open vocabulary: lexicon-free beam search with the character 6-gram, weights tuned on dev
    "decode": decode.DecodeConfig(
        sets=("test/*",),
        tune_sets=("dev/*",),
        search=decode.DecodeOptions(method="beam_lm"),
        lm_weights=(0.5, 1.0, 1.5),
        word_scores=(0.0, 1.0),
    ),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
