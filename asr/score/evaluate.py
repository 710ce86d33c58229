"""Evaluating a model file on a manifest or Kaldi folder (``asr evaluate``): every utterance transcribed with the
recognizer, scored against its reference, and what a user should know before trusting the number (references in
characters the model cannot write, a phone model decoded without words)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asr.core.errors import AsrError, AudioError
from asr.data.manifest import Utterance, check, load_data
from asr.features.stage import load_utterance
from asr.recognize.recognizer import Recognizer
from asr.score.wer import Score, score
from asr.text.phones import fold_text

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


def _warnings(rec: Recognizer, utts: list[Utterance]) -> list[str]:
    out = []
    # a phone model of words (a separator unit) spells words through its lexicon, not in its units
    spelled = rec.model.spells_words_in_phones
    if spelled and not rec.options.needs_lexicon:
        out.append(
            f"{rec.options.method} decoding of a phone model outputs phones, not words: its error rate against the "
            "word references is no WER (the lexicon methods output words)"
        )
    unknown = {} if spelled else {u.id: rec.tokenizer.unknown_chars(u.text) for u in utts}
    unknown = {uid: chars for uid, chars in unknown.items() if chars}
    if unknown:
        shown = "; ".join(f"{uid}: {''.join(c)!r}" for uid, c in list(unknown.items())[:SHOWN])
        out.append(
            f"{len(unknown)} reference(s) hold characters this model cannot produce, so they always count as "
            f"errors: {shown}{' ...' if len(unknown) > SHOWN else ''}"
        )
    return out


def evaluate(rec: Recognizer, data: str | Path, phone_map: str = "") -> Evaluation:
    """Transcribe every utterance of ``data`` (a JSONL manifest or a Kaldi data folder) and score it, folded to
    ``phone_map`` when given; an utterance whose audio cannot be read is left out, named.

    Raises:
        AsrError: a bad manifest, or no utterance that could be read.
    """
    utts = load_data(data)
    check(utts, data, check_audio=False)  # a missing file is reported with the others
    warnings = _warnings(rec, utts)
    hyps, unread = {}, []
    for u in utts:
        try:
            hyps[u.id] = rec.transcribe(load_utterance(u, rec.sample_rate), rec.sample_rate).text
        except AudioError as e:
            unread.append((u.id, str(e)))
    scored = [u for u in utts if u.id in hyps]
    if not scored:
        raise AsrError(f"{data}: none of the {len(utts)} utterances could be read")
    refs = {u.id: fold_text(u.text, phone_map) for u in scored}
    s = score(refs, {k: fold_text(v, phone_map) for k, v in hyps.items()})
    return Evaluation(scored, hyps, s, refs, unread, warnings, len(utts))
