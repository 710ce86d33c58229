"""AN4 (CMU census database): names, addresses, numbers and spelled letters, 16 kHz; about 50 minutes.

    asr run an4 [--corpus-dir DIR] [--set key=value ...]

Trains on the official train split less ``dev`` (8 speakers carved from it), tunes decoding on
dev and scores the official test (130 utterances, 10 speakers) when the copy has it, else ``devtest`` (8 more
training speakers held out: the shared copy holds the training split alone). See asr/corpora/an4.py.

Sized as deepspeech.pytorch's AN4 run is (a GPU; it reports about 9.6% test WER with a larger
DeepSpeech2 model and 70 epochs): a 3 x 256 BiLSTM over x3-stacked MFCC frames with SpecAugment
and speed perturbation; the number of updates follows the corpus size (asr/train/stage.py: plan). At
0.7 hours the corpus also trains on a CPU. Not yet measured here (no copy of AN4 on this machine).
"""

from asr.corpora import an4
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.model.config import ModelConfig
from asr.pipeline.recipe import standard_stages
from asr.score import stage as scoring
from asr.train import stage as train

STAGES = standard_stages(an4.stage, an4.VERSION, an4.fingerprint)

CONFIG = {
    "prepare": an4.An4Config(),
    "features": features.FeatureConfig(sample_rate=an4.SAMPLE_RATE, train_sets=("train",), speed_perturb=(0.9, 1.1)),
    "lm": lm.LmConfig(sets=("train",), order=3, token_order=6),
    "train": train.TrainConfig(
        train_sets=("train",),
        dev_sets=("dev",),
        model=ModelConfig(num_layers=3, hidden=256, stack=3, dropout=0.2),
        batch_frames=5_000,
        lr=1e-3,
        spec_augment=True,
        early_stop=5,
    ),
    # AN4's words are few and recur (numbers, letters, a closed prompt set): the lexicon of the training
    # words with their trigram, weights tuned on dev
    "decode": decode.DecodeConfig(
        sets=("*test",),  # test, or devtest on a copy without it
        tune_sets=("dev",),
        search=decode.DecodeOptions(method="lexicon_lm"),
        lm_weights=(0.5, 1.0, 2.0),
        word_scores=(-1.0, 0.0, 1.0),
    ),
    "score": scoring.ScoreConfig(),
    "export": export.ExportConfig(),
}
