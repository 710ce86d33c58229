"""How log-probabilities become text: :class:`DecodeOptions`, the one description of a decoder, shared by
the decode stage, the recognizer (``asr.load_model``), an exported model file and the CLI (its choices
and defaults come from here). No flashlight import: reading a model file's settings needs none; the
search itself is :mod:`asr.search.beam`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

# beam: lexicon-free, no LM; beam_lm: lexicon-free with the unit n-gram (open vocabulary);
# lexicon: words of the lexicon only; lexicon_lm: lexicon + word n-gram
METHODS = ("greedy", "beam", "beam_lm", "lexicon", "lexicon_lm")
MAX_BEAM = 10_000  # hypotheses or units per frame: far past any useful beam (a model file's settings are bounded)


@dataclass(frozen=True)
class DecodeOptions:
    """How posteriors become text; the decode stage, ``asr.load_model`` and the CLI share it."""

    method: Literal["greedy", "beam", "beam_lm", "lexicon", "lexicon_lm"] = "lexicon_lm"  # see METHODS
    beam_size: int = 16  # hypotheses kept per frame
    beam_size_token: int = 0  # units tried per frame, the most likely first (0: all)
    beam_threshold: float = 25.0  # drop hypotheses this far (log score) below the best
    lm_weight: float = 1.0  # weight of the n-gram (beam_lm: over units; lexicon_lm: over words)
    word_score: float = 0.0  # bonus per word (insertion penalty when negative)
    mix_weight: float = 1.0  # lexicon_lm: weight of the in-domain n-gram against the large word list (1: none)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {list(METHODS)}")
        if not 0.0 <= self.mix_weight <= 1.0:
            raise ValueError(f"mix_weight must be in [0, 1], got {self.mix_weight}")
        if (
            not 1 <= self.beam_size <= MAX_BEAM
            or not self.beam_threshold > 0
            or not 0 <= self.beam_size_token <= MAX_BEAM
        ):
            raise ValueError(
                f"beam_size must be >= 1, beam_size_token >= 0 (both at most {MAX_BEAM}) and beam_threshold > 0"
            )
        if not all(math.isfinite(x) for x in (self.lm_weight, self.word_score, self.beam_threshold)):
            raise ValueError(
                f"lm_weight, word_score and beam_threshold must be finite numbers, got {self.lm_weight}, "
                f"{self.word_score} and {self.beam_threshold}"
            )

    def summary(self) -> str:
        """One line a person reads: ``lexicon_lm, beam 16, LM weight 1.0, word score 0.0`` (and the in-domain LM's
        share when the general one is mixed in): what ``asr info``, reports and logs say of a decoding."""
        return f"{self.method}, beam {self.beam_size}, LM weight {self.lm_weight}, word score {self.word_score}" + (
            f", in-domain LM share {self.mix_weight}" if self.mix_weight < 1 else ""
        )

    @property
    def needs_lexicon(self) -> bool:
        return self.method in ("lexicon", "lexicon_lm")

    @property
    def uses_lm(self) -> bool:
        return self.method in ("beam_lm", "lexicon_lm")


def default(name: str):
    """A field's default, for help texts that must not restate it."""
    return next(f.default for f in dataclasses.fields(DecodeOptions) if f.name == name)
