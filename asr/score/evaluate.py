"""Evaluating a model file on a manifest or Kaldi folder (``asr evaluate``): every utterance transcribed with the
recognizer, scored against its reference, and what a user should know before trusting the number (references in
characters the model cannot write, a phone model decoded without words)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from asr.core.errors import AsrError
from asr.data.manifest import Utterance, check, load_data
from asr.features.stage import load_utterance
from asr.recognize.batch import transcribe_all
from asr.recognize.recognizer import Recognizer
from asr.score.wer import Score, score
from asr.text.phones import fold_text
from asr.text.written import as_written

SHOWN = 10  # utterances named in a warning


@dataclass
class Evaluation:
    """What :func:`evaluate` found: the score of the utterances that could be read, their hypotheses, the
    utterances left out (id, why) and warnings to show before the score."""

    utts: list[Utterance]  # the ones scored
    hyps: dict[str, str]
    score: Score
    refs: dict[str, str]  # the references as scored (folded to ``phone_map``)
    unread: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    total: int = 0  # utterances in the data


def _warnings(rec: Recognizer, utts: list[Utterance], chars: set[str]) -> list[str]:
    out = []
    # a phone model of words (a separator unit) spells words through its lexicon, not in its units
    spelled = rec.model.spells_words_in_phones
    if spelled and not rec.options.needs_lexicon:
        out.append(
            f"{rec.options.method} decoding of a phone model outputs phones, not words: its error rate against the "
            "word references is no WER (the lexicon methods output words)"
        )
    if not chars:
        return out
    unknown = {u.id: [w for w in u.text.split() if any(c not in chars for c in w)] for u in utts}
    unknown = {uid: words for uid, words in unknown.items() if words}
    if unknown:
        shown = "; ".join(f"{uid}: {' '.join(w)!r}" for uid, w in list(unknown.items())[:SHOWN])
        out.append(
            f"{sum(map(len, unknown.values()))} reference word(s) in {len(unknown)} utterance(s) hold characters this "
            f"model cannot write, so they always count as errors: {shown}{' ...' if len(unknown) > SHOWN else ''}"
        )
    return out


def evaluate(
    rec: Recognizer,
    data: str | Path,
    phone_map: str = "",
    normalize: bool = True,
    nj: int = 1,
    load: Callable[[], Recognizer] | None = None,
) -> Evaluation:
    """Transcribe every utterance of ``data`` (a JSONL manifest or a Kaldi data folder) and score it, folded to
    ``phone_map`` when given; an utterance whose audio cannot be read is left out, named. ``normalize``: the
    references put in the form the model writes (:func:`asr.text.written.as_written`), as its recipe scored them.
    With ``nj`` > 1, ``load()`` makes the recognizer of each of ``nj`` worker processes (progress on standard
    error, as ``asr transcribe``'s).

    Raises:
        AsrError: a bad manifest, or no utterance that could be read.
    """
    utts = load_data(data)
    check(utts, data, check_audio=False)  # a missing file is reported with the others
    warnings = []
    chars = rec.model.written_characters
    if normalize and chars:
        normalized = [replace(u, text=as_written(u.text, chars)) for u in utts]
        changed = sum(a.text != b.text for a, b in zip(utts, normalized))
        if changed:
            warnings.append(
                f"{changed} of {len(utts)} references normalised as the model writes its words (case, punctuation); "
                "--raw-references scores them as given"
            )
        utts = normalized
    warnings += _warnings(rec, utts, chars)
    hyps, unread = {}, []
    workers, nj = (load, nj) if load is not None else ((lambda: rec), 1)
    for u, t, error in transcribe_all(workers, utts, nj, load_utterance, "asr evaluate"):
        if t is None:
            unread.append((u.id, error))
        else:
            hyps[u.id] = t.text
    scored = [u for u in utts if u.id in hyps]
    if not scored:
        raise AsrError(f"{data}: none of the {len(utts)} utterances could be read")
    refs = {u.id: fold_text(u.text, phone_map) for u in scored}
    s = score(refs, {k: fold_text(v, phone_map) for k, v in hyps.items()})
    return Evaluation(scored, hyps, s, refs, unread, warnings, len(utts))
