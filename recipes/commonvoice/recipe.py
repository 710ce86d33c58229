"""Common Voice: crowd-sourced read sentences, any language, MP3 clips; the release's own splits.

    asr run commonvoice --corpus-dir DIR [--set prepare.language=de]
    asr run commonvoice --set prepare.url=<signed link> --set prepare.sha256=<its checksum>

Trains on train.tsv, tunes decoding on dev.tsv, scores test.tsv (WER and CER, text normalised per
language: asr/corpora/commonvoice.py). ``--set prepare.max_train_hours=H`` trains on a part.

Sized for a GPU: a 4 x 320 BiLSTM character model over x3-stacked MFCC frames with SpecAugment and
speed perturbation, decoded open-vocabulary with the character 6-gram (a release's test sentences
are mostly unseen). Character BiLSTM-CTC models on Common Voice English report WER in the 20-40% range
depending on the release size; for languages written without spaces (zh-CN, ja) read the CER. Not
yet measured here (no Common Voice copy on this machine).
"""

from asr.corpora import commonvoice
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.model.config import ModelConfig
from asr.pipeline.recipe import standard_stages
from asr.score import stage as scoring
from asr.train import stage as train

STAGES = standard_stages(commonvoice.stage, commonvoice.VERSION, commonvoice.fingerprint)

CONFIG = {
    "prepare": commonvoice.CommonVoiceConfig(),
    "features": features.FeatureConfig(
        sample_rate=commonvoice.SAMPLE_RATE, train_sets=("train",), speed_perturb=(0.9, 1.1)
    ),
    "lm": lm.LmConfig(sets=("train",), order=3, token_order=6),
    "train": train.TrainConfig(
        train_sets=("train",),
        dev_sets=("dev",),
        model=ModelConfig(num_layers=4, hidden=320, stack=3, dropout=0.2),
        batch_frames=20_000,
        lr=1e-3,
        spec_augment=True,
        early_stop=5,
    ),
    "decode": decode.DecodeConfig(
        sets=("test",),
        tune_sets=("dev",),
        search=decode.DecodeOptions(method="beam_lm"),
        lm_weights=(0.5, 1.0, 1.5),
        word_scores=(0.0, 1.0),
    ),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
