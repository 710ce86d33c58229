"""TIMIT phone recognition: phone error rate on the 39 folded phones (Lee & Hon), the literature's number.

    asr run timit --corpus-dir DIR        # DIR holds TIMIT/ (LDC93S1; licensed, no download)

Trains on the 3,696 SX/SI sentences of the 462 training speakers with their phones folded to 48,
tunes decoding on Kaldi's 50-speaker dev set and scores the 24-speaker core test (192 sentences),
references and hypotheses folded to 39 phones (asr/corpora/timit.py, asr/text/phones.py).

Sized as Graves, Mohamed & Hinton (2013), whose 3 x 250 BiLSTM trained with CTC reached 18.6% PER on
the core test: a 3 x 256 BiLSTM over MFCC + deltas at the full 10 ms frame rate (phones are short:
no frame stacking), SpecAugment and dropout in place of their weight noise, decoded by beam search
with a phone bigram (weight tuned on dev). Expect about 18-20% PER; on a GPU it trains in minutes,
on 2 CPU cores in a few hours. Not yet measured here (no TIMIT copy on this machine). Words instead
of phones: ``asr run timit_words``.
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
    "prepare": timit.TimitConfig(),
    "features": features.FeatureConfig(sample_rate=timit.SAMPLE_RATE, train_sets=("train",)),
    "lm": lm.LmConfig(sets=("train",), order=2, token_order=2, units="phone"),
    "train": train.TrainConfig(
        train_sets=("train",),
        dev_sets=("dev",),
        units="phone",
        model=ModelConfig(num_layers=3, hidden=256, stack=1, dropout=0.2),
        batch_frames=20_000,
        lr=1e-3,
        spec_augment=True,
        early_stop=5,
    ),
    "decode": decode.DecodeConfig(
        sets=("test",),
        tune_sets=("dev",),
        search=decode.DecodeOptions(method="beam_lm"),
        lm_weights=(0.0, 0.25, 0.5, 1.0),
        word_scores=(0.0,),
    ),
    "score": scoring.ScoreConfig(phone_map="timit39"),
    "export": export.ExportConfig(),
}
