"""AN4 (CMU census database): names, addresses, numbers and spelled letters, 16 kHz; about 50 minutes.

    asr run an4 [--corpus-dir DIR] [--set key=value ...]

Trains on the official train split less ``dev`` (8 speakers carved from it), tunes decoding on
dev and scores the official test (130 utterances, 10 speakers) when the copy has it, else ``devtest`` (8 more
training speakers held out: the shared copy holds the training split alone). See asr/corpora/an4.py.

A 3 x 256 BiLSTM over x3-stacked MFCC frames with SpecAugment and speed perturbation, trained on CMUdict's
**phones** (single letters, which AN4 spells words with, as their names: lexicon.letter_names), words searched
through their pronunciations with the word trigram of the training transcripts, half as many updates again as
the default schedule gives 0.55 h, and eSpeak NG's 12 voices and Flite's 4 speaking the training transcripts pooled
at weight 0.3 each (Debian's espeak-ng and flite).
Chosen on dev (phones against characters, the longer schedule, no intermediate CTC, the synthetic voices); every
measurement: docs/recipes/an4.md.
"""

from asr.corpora import an4
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.model.config import ModelConfig
from asr.pipeline.recipe import standard_stages
from asr.score import stage as scoring
from asr.text import stage as pronounce
from asr.text.lexicon import CMUDICT
from asr.train import stage as train

STAGES = standard_stages(an4.stage, an4.VERSION, an4.fingerprint)

CONFIG = {
    # eSpeak NG's 12 English voices and Flite's 4 speak the 580 distinct training transcripts as extra speakers, each
    # at weight 0.3: dev WER 4.84% against 5.35% with eSpeak NG's alone and 6.39% with neither; a third longer
    # schedule without them: 5.53% (docs/recipes/an4.md)
    "prepare": an4.An4Config(pool=("espeak:0.3", "flite:0.3")),
    "features": features.FeatureConfig(sample_rate=an4.SAMPLE_RATE, train_sets=("train",), speed_perturb=(0.9, 1.1)),
    # phones: the network learns English sounds, CMUdict the spelling (a word it lacks: the G2P)
    "lexicon": pronounce.LexiconConfig(path=CMUDICT, letter_names=True),
    "lm": lm.LmConfig(sets=("train",), order=3, token_order=6, units="phone"),
    "train": train.TrainConfig(
        train_sets=("train",),
        dev_sets=("dev",),
        units="phone",
        model=ModelConfig(num_layers=3, hidden=256, stack=3, dropout=0.2),
        updates_per_sqrt_hour=1500,  # 1,941 updates: the default's 1,294 stopped while dev still improved
        batch_frames=5_000,
        lr=1e-3,
        spec_augment=True,
        early_stop=5,
    ),
    # AN4's words are few and recur (numbers, letters, a closed prompt set): the lexicon of the training
    # words with their trigram, weights tuned on dev; the grid brackets what dev chose (beam 64: no better)
    "decode": decode.DecodeConfig(
        sets=("*test",),  # test, or devtest on a copy without it
        tune_sets=("dev",),
        search=decode.DecodeOptions(method="lexicon_lm"),
        lm_weights=(0.125, 0.25, 0.5, 1.0),
        word_scores=(-2.0, -1.0, 0.0, 1.0),
    ),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
