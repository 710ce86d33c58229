"""Word and character error rates through jiwer, with bootstrap intervals and paired comparisons.

Rates are always corpus level (total errors / total reference words), never an
average of per-utterance rates. ``%WER`` lines follow Kaldi's ``compute-wer``.
The bootstrap follows Bisani & Ney (2004), as Kaldi's ``compute-wer-bootci``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jiwer
import numpy as np

from asr.core.errors import AsrError

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts of a corpus (words or characters)."""

    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """jiwer's definition: errors / reference length (0 errors on an empty reference is 0)."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.ref_len

    def line(self, name: str = "WER") -> str:
        return (
            f"%{name} {100 * self.rate:.2f} [ {self.errors} / {self.ref_len}, {self.insertions} ins, "
            f"{self.deletions} del, {self.substitutions} sub ]"
        )


def _counts(out) -> ErrorCounts:
    return ErrorCounts(out.hits, out.substitutions, out.deletions, out.insertions)


@dataclass
class Score:
    """Scores of aligned hypotheses; ``ids`` in order, with per-utterance word errors for the bootstrap."""

    ids: list[str]
    refs: list[str]
    hyps: list[str]
    words: ErrorCounts
    chars: ErrorCounts
    utt_errors: np.ndarray  # (N,) word errors per utterance
    utt_ref_len: np.ndarray  # (N,) reference words per utterance
    utt_char_errors: np.ndarray  # (N,) character errors per utterance
    utt_ref_chars: np.ndarray  # (N,) reference characters per utterance
    alignment: object  # jiwer WordOutput

    def bootstrap(self, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, chars: bool = False) -> tuple[float, float]:
        """95% confidence interval of the WER (or CER) by resampling utterances.

        Raises:
            AsrError: ``samples`` < 1.
        """
        if samples < 1:
            raise AsrError(f"a bootstrap interval needs at least one resample, got {samples}")
        errs, lens = (self.utt_char_errors, self.utt_ref_chars) if chars else (self.utt_errors, self.utt_ref_len)
        return interval(errs, lens, samples, np.random.default_rng(seed))


def score(
    refs: dict[str, str],
    hyps: dict[str, str],
    missing_as_deletions: bool = False,
    ref_name: str = "REF",
    hyp_name: str = "HYP",
) -> Score:
    """Align every utterance of ``refs`` with its hypothesis and count errors.

    Raises:
        AsrError: ids in only one of the two (listed), unless ``missing_as_deletions``
            (then a missing hypothesis is empty; extra hypotheses are still an error).
    """
    only_ref = sorted(set(refs) - set(hyps))
    only_hyp = sorted(set(hyps) - set(refs))
    if only_hyp or (only_ref and not missing_as_deletions):
        parts = []
        if only_ref:
            parts.append(f"{len(only_ref)} id(s) in {ref_name} but not in {hyp_name}: {only_ref[:10]}")
        if only_hyp:
            parts.append(f"{len(only_hyp)} id(s) in {hyp_name} but not in {ref_name}: {only_hyp[:10]}")
        hint = "" if only_hyp else " (use --missing-as-deletions to count them as deleted)"
        raise AsrError("; ".join(parts) + hint)
    if not refs:
        raise AsrError(f"{ref_name} holds no utterances")
    ids = sorted(refs)
    r = [refs[i] for i in ids]
    h = [hyps.get(i, "") for i in ids]
    words = jiwer.process_words(r, h)
    chars = jiwer.process_characters(r, h)
    return Score(ids, r, h, _counts(words), _counts(chars), *_per_utterance(words), *_per_utterance(chars), words)


def _per_utterance(out) -> tuple[np.ndarray, np.ndarray]:
    """Errors and reference length of each utterance of a jiwer result (words or characters)."""
    errs, lens = [], []
    for ref, chunks in zip(out.references, out.alignments):
        e = 0
        for c in chunks:
            if c.type in ("substitute", "delete"):
                e += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                e += c.hyp_end_idx - c.hyp_start_idx
        errs.append(e)
        lens.append(len(ref))
    return np.array(errs), np.array(lens)


def compare(a: Score, b: Score, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> float:
    """Probability that ``a`` has a lower WER than ``b`` (paired bootstrap over utterances)."""
    if a.ids != b.ids:
        raise AsrError("the two hypothesis sets cover different utterances")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a.ids), size=(samples, len(a.ids)))
    delta = b.utt_errors[idx].sum(1) - a.utt_errors[idx].sum(1)
    return float((delta > 0).mean())


def interval(errors: np.ndarray, lengths: np.ndarray, samples: int, rng: np.random.Generator) -> tuple[float, float]:
    """The 95% bootstrap interval of a corpus-level error rate: utterances (``errors`` and reference ``lengths``
    per utterance, ``(N,)``) resampled with replacement ``samples`` times. The one resampling of the package:
    test sets, speakers and other groups alike."""
    idx = rng.integers(0, len(errors), size=(samples, len(errors)))
    lo, hi = np.percentile(errors[idx].sum(1) / np.maximum(lengths[idx].sum(1), 1), [2.5, 97.5])
    return float(lo), float(hi)


UNKNOWN_SPEAKER = "unknown"


def speaker_of(uid: str, speakers: dict[str, str] | None) -> str:
    """The utterance's speaker from ``speakers``; never guessed from the id (``7_jackson_32`` is not
    spoken by "7"): an utterance without one is counted under ``unknown``."""
    return (speakers or {}).get(uid) or UNKNOWN_SPEAKER
