"""speechocean762: read English sentences by non-native speakers (children and adults), 16 kHz.

    asr run speechocean762 [--corpus-dir DIR] [--set key=value ...]

Trains on the upstream train split less two speaker-disjoint sets carved from it: ``dev``
(tunes decoding, stops training) and ``devtest`` (reported once); the official ``test`` is
scored too when the corpus copy has it. See asr/corpora/speechocean762.py.
"""

from asr import decode, export, features, lm, scoring, train
from asr.corpora import speechocean762 as so762
from asr.model import ModelConfig
from asr.recipe import standard_stages

STAGES = standard_stages(so762.stage, so762.VERSION, so762.fingerprint)

CONFIG = {
    "prepare": so762.So762Config(),
    "features": features.FeatureConfig(sample_rate=so762.SAMPLE_RATE, train_sets=("train",)),
    "lm": lm.LmConfig(sets=("train",), order=3, token_order=6),
    # 3 x 256 BiLSTM over x3-stacked MFCC frames, sized to train in about 50 minutes on 2 CPU cores.
    # Without SpecAugment and with lr 3e-3: with SpecAugment and lr 2e-3 the dev CER was still 75% after
    # 9 epochs (CTC's blank plateau lasted about 7 epochs)
    "train": train.TrainConfig(train_sets=("train",), dev_sets=("dev",),
                               model=ModelConfig(num_layers=3, hidden=256, stack=3, dropout=0.2),
                               batch_frames=5_000, lr=3e-3, **train.EPOCH_PLATEAU, epochs=20),
    # open vocabulary: lexicon-free beam search with the 6-gram over characters. Dev WER (greedy 77.1%):
    # beam_lm 60.6% (LM weight 1.5), lexicon_lm over the training words 61.8%, lexicon_lm with wordfreq's
    # 20,000 most frequent words mixed in (lm.extra_words=20000, mix weight 0.98) 61.6%
    "decode": decode.DecodeConfig(sets=("*test",), tune_sets=("dev",),  # devtest, and test when there
                                  search=decode.DecodeOptions(method="beam_lm"),
                                  lm_weights=(1.0, 1.5, 2.0), word_scores=(0.0, 1.0)),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
