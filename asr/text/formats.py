"""Transcripts as the files people load: subtitles (SRT, WebVTT), whisper's TSV, sclite's CTM, plain text, JSON.

Subtitle cues follow the common readability rules (Netflix's and the BBC's guidelines, whisper's writer): at
most :data:`LINE_CHARS` characters a line, two lines, :data:`CUE_SECONDS` seconds a cue, cut between words
(using the words' times) and never across a segment's end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from asr.text.transcript import Transcript, Word

FORMATS = ("txt", "json", "srt", "vtt", "tsv", "ctm")
LINE_CHARS = 42
CUE_LINES = 2
CUE_SECONDS = 7.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def _lines(words: list[str]) -> list[str]:
    """Words wrapped into lines of at most :data:`LINE_CHARS` (a longer word alone on its line)."""
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= LINE_CHARS:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines


def cues(t: Transcript) -> list[Cue]:
    """The transcript's words as subtitle cues: a new cue when the words would take a third line, when the cue
    would last past :data:`CUE_SECONDS`, or at a segment's end."""
    out: list[Cue] = []
    for segment in t.segments or ([] if not t.words else [None]):
        words = t.words if segment is None else segment.words
        cue: list[Word] = []
        for w in words:
            if cue and (len(_lines([x.word for x in cue + [w]])) > CUE_LINES or w.end - cue[0].start > CUE_SECONDS):
                out.append(Cue(cue[0].start, cue[-1].end, tuple(_lines([x.word for x in cue]))))
                cue = []
            cue.append(w)
        if cue:
            out.append(Cue(cue[0].start, cue[-1].end, tuple(_lines([x.word for x in cue]))))
    return out


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(t: Transcript) -> str:
    return "".join(
        f"{k}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
        for k, c in enumerate(cues(t), 1)
    )


def vtt(t: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(c.lines) + "\n\n" for c in cues(t)
    )


def tsv(t: Transcript) -> str:
    """whisper's TSV: start and end in integer milliseconds, then the segment's text."""
    rows = [f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{s.text}" for s in t.segments]
    return "start\tend\ttext\n" + "".join(r + "\n" for r in rows)


def ctm(t: Transcript, utterance: str, channel: str = "1") -> str:
    """sclite's CTM: ``utterance channel start duration word confidence`` a line (confidence 1.00 where the
    decoder gives none)."""
    return "".join(
        f"{utterance} {channel} {w.start:.2f} {max(0.01, w.end - w.start):.2f} {w.word} "
        f"{1.0 if w.conf is None else w.conf:.2f}\n"
        for w in t.words
    )


def render(t: Transcript, fmt: str, name: str) -> str:
    """The transcript in format ``fmt`` (one of :data:`FORMATS`); ``name`` names it in a CTM."""
    if fmt == "txt":
        return t.text + "\n"
    if fmt == "json":
        return json.dumps(t.to_dict(), ensure_ascii=False) + "\n"
    if fmt == "ctm":
        return ctm(t, name)
    return {"srt": srt, "vtt": vtt, "tsv": tsv}[fmt](t)
