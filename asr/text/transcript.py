"""What recognition gives: a transcript and its timed words (plain data, no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float
    conf: float | None = None  # streaming: the mean probability of the best path's unit over the word's frames


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    path: str | None = None

    @staticmethod
    def join(parts: list[Transcript]) -> Transcript:
        """Consecutive transcripts (a stream's utterances) as one."""
        return Transcript(" ".join(t.text for t in parts if t.text), [w for t in parts for w in t.words])

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "text": self.text,
            "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in self.words],
        }
