"""TIMIT word recognition: word error rate on the core test (the same splits as ``asr run timit``).

    asr run timit_words --corpus-dir DIR  # DIR holds TIMIT/ (LDC93S1; licensed, no download)

The transcripts are the sentences' words (lower case, punctuation dropped), the units characters.
TIMIT's SX/SI prompts barely repeat between training and core test speakers, so decoding is open
vocabulary: lexicon-free beam search with the character 6-gram. TIMIT is a phone corpus: its 3 hours
and 2,300 distinct sentences make word recognition hard; the literature reports PER, not WER. Not
yet measured here (no TIMIT copy on this machine).
"""

from asr.corpora import timit
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.model.config import ModelConfig
from asr.pipeline.recipe import standard_stages
from asr.score import stage as scoring
from asr.train import stage as train

STAGES = standard_stages(timit.stage, timit.VERSION, timit.fingerprint)

CONFIG = {
    "prepare": timit.TimitConfig(text="words"),
    "features": features.FeatureConfig(sample_rate=timit.SAMPLE_RATE, train_sets=("train",), speed_perturb=(0.9, 1.1)),
    "lm": lm.LmConfig(sets=("train",), order=3, token_order=6),
    "train": train.TrainConfig(
        train_sets=("train",),
        dev_sets=("dev",),
        model=ModelConfig(num_layers=3, hidden=256, stack=3, dropout=0.2),
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
