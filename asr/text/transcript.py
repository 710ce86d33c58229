"""What recognition gives: a transcript and its timed words (plain data, no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float
    conf: float | None = None  # the mean probability of the best path's unit over the word's frames


class FrameWord(NamedTuple):
    """A word of a search's result, timed in the network's output frames (what the tokenizer and the searches
    give; :meth:`timed` makes the :class:`Word` users see)."""

    word: str
    first: int  # the frame of its first unit
    last: int  # the frame of its last unit

    def timed(self, frame_seconds: float, offset: int = 0, conf: float | None = None) -> Word:
        """The word in seconds, its frames counted from ``offset`` (where the searched piece began); it ends where
        its last frame ends."""
        return Word(self.word, (offset + self.first) * frame_seconds, (offset + self.last + 1) * frame_seconds, conf)


@dataclass
class Segment:
    """A stretch of a recording between pauses, and what was said in it (times in seconds from the start)."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "words": _words(self.words),
        }


def _words(words: list[Word]) -> list[dict]:
    return [
        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
        | ({} if w.conf is None else {"conf": round(w.conf, 3)})
        for w in words
    ]


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    path: str | None = None
    segments: list[Segment] = field(default_factory=list)  # the recording's stretches between pauses
    duration: float | None = None  # seconds of audio transcribed (None: not counted)

    @staticmethod
    def join(parts: list[Transcript]) -> Transcript:
        """Consecutive transcripts (a stream's utterances) as one."""
        return Transcript(
            " ".join(t.text for t in parts if t.text),
            [w for t in parts for w in t.words],
            segments=[s for t in parts for s in t.segments],
        )

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "text": self.text,
            "words": _words(self.words),
            "segments": [s.to_dict() for s in self.segments],
            **({} if self.duration is None else {"duration": round(self.duration, 3)}),
        }
