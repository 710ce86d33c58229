"""Character tokenizer with a word separator, the units of the CTC output layer.

Unit 0 is the CTC blank, unit 1 the word separator ``|`` that stands for a space,
then the characters of the alphabet in sorted order. The tokenizer is saved with
the model as a plain dict, so a model file alone can decode.
"""

from __future__ import annotations

from collections.abc import Iterable

from asr.errors import TokenizerError

BLANK = "<blk>"
WORD_SEP = "|"


class CharTokenizer:
    """Maps text to unit ids and back.

    Args:
        alphabet: the characters text may hold, besides the space.
    """

    def __init__(self, alphabet: Iterable[str]):
        chars = sorted(set(alphabet) - {" "})
        for c in chars:
            if len(c) != 1 or c == WORD_SEP:
                raise TokenizerError(f"bad alphabet entry {c!r}: entries are single characters other than {WORD_SEP!r}")
        self.units: list[str] = [BLANK, WORD_SEP, *chars]
        self._index = {u: i for i, u in enumerate(self.units)}
        self._index[" "] = self._index.pop(WORD_SEP)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Learn the alphabet from training transcripts."""
        alphabet: set[str] = set()
        for t in texts:
            alphabet.update(t)
        return cls(alphabet)

    @property
    def alphabet(self) -> set[str]:
        """The characters accepted in text (the space included)."""
        return set(self.units[2:]) | {" "}

    @property
    def blank(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.units)

    def unknown_chars(self, text: str) -> list[str]:
        """The characters of ``text`` the tokenizer has no unit for, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str) -> list[int]:
        """Text -> unit ids. Runs of spaces collapse to one separator; edges are stripped.

        Raises:
            TokenizerError: a character outside the alphabet (never dropped silently).
        """
        bad = self.unknown_chars(text)
        if bad:
            raise TokenizerError(f"text {text!r} holds characters outside the alphabet: {bad}")
        return [self._index[c] for c in " ".join(text.split())]

    def decode(self, ids: Iterable[int]) -> str:
        """Unit ids (blanks already removed or not) -> text."""
        out = "".join(self.units[i] for i in ids if i != 0)
        return " ".join(out.replace(WORD_SEP, " ").split())

    def to_dict(self) -> dict:
        return {"type": "char", "units": list(self.units)}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if d.get("type") != "char":
            raise TokenizerError(f"unknown tokenizer type {d.get('type')!r}")
        tok = cls(d["units"][2:])
        if tok.units != d["units"]:
            raise TokenizerError("saved tokenizer units are not in canonical order; the file is corrupt")
        return tok
