"""Custom words for the lexicon searches (sherpa-onnx's and NeMo's hotwords, Vosk's grammar in spirit): words or
phrases a user expects, each with a boost.

A hotword the model's lexicon lacks is added to it, pronounced as the lexicon stage pronounces a transcript word
(CMUdict, then the G2P) for a phone model, spelled in its letters for a character model, and given the
probability of the in-domain n-gram's rarest word; every hotword then earns its boost per word in the search, as
a phrase: the words of a phrase earn theirs one by one as they follow each other, and a hypothesis that leaves a
phrase unfinished gives back what it earned (sherpa-onnx's context graph, at the level of words), so boosting
"new york" does not boost "new" alone.

The file (``--hotwords``) is sherpa-onnx's: a word or phrase a line, optionally followed by `` :BOOST`` (natural
log, added to the search's score per word); ``#`` starts a comment line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.core.errors import AsrError
from asr.core.textfiles import read_lines

DEFAULT_BOOST = 2.5  # per word, natural log: chosen on speechocean762 dev (docs/transcribing.md)
MAX_HOTWORDS = 10_000  # phrases per list (each adds a lexicon entry and nodes to the phrase table)
MAX_PHRASE_WORDS = 10
MAX_WORD_LETTERS = 64  # the G2P's bound (asr.text.stage.MAX_G2P_LETTERS)
MAX_BOOST = 100.0


@dataclass(frozen=True)
class Hotword:
    """A word or phrase (its words, as the model writes them) and its boost per word."""

    words: tuple[str, ...]
    boost: float = DEFAULT_BOOST

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse_hotwords(lines: Iterable[str], source: str = "hotwords", boost: float = DEFAULT_BOOST) -> list[Hotword]:
    """Hotword lines (``phrase`` or ``phrase :BOOST``; blank lines and ``#`` comments skipped) -> hotwords, the
    same phrase given twice kept once (its last boost); ``boost``: the boost of a line without one.

    Raises:
        AsrError: a bad boost, a phrase too long, too many phrases: each bad line named (up to five).
    """
    found: dict[tuple[str, ...], float] = {}
    bad: list[str] = []
    for no, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        text, value = line, boost
        head, sep, tail = line.rpartition(" :")
        if sep:
            text = head
            try:
                value = float(tail)
            except ValueError:
                bad.append(f"line {no}: boost {tail[:20]!r} is not a number")
                continue
        words = tuple(text.split())
        if not -MAX_BOOST <= value <= MAX_BOOST:  # also refuses nan
            bad.append(f"line {no}: boost {value} is not between {-MAX_BOOST:g} and {MAX_BOOST:g}")
        elif not words or len(words) > MAX_PHRASE_WORDS:
            bad.append(f"line {no}: a phrase of 1 to {MAX_PHRASE_WORDS} words, got {len(words)}")
        elif any(len(w) > MAX_WORD_LETTERS for w in words):
            bad.append(f"line {no}: a word of more than {MAX_WORD_LETTERS} letters")
        else:
            found[words] = value
    if bad:
        raise AsrError(f"{source}: {len(bad)} bad line(s): {'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    if len(found) > MAX_HOTWORDS:
        raise AsrError(f"{source}: {len(found)} phrases; at most {MAX_HOTWORDS:,} are taken")
    return [Hotword(w, b) for w, b in found.items()]


def read_hotwords(path: str | Path, boost: float = DEFAULT_BOOST) -> list[Hotword]:
    """A hotword file (see :func:`parse_hotwords`).

    Raises:
        AsrError: a missing or unreadable file, or bad lines (named by line).
    """
    path = Path(path)
    if not path.is_file():
        raise AsrError(f"{path}: no such hotword file (a word or phrase a line, optionally followed by ' :BOOST')")
    return parse_hotwords((line for _, line in read_lines(path)), str(path), boost)


class PhraseBoost:
    """The boosts of a list of phrases as a search's hypotheses go word by word.

    A node is the phrase prefix a hypothesis has matched last (a tuple of words, ``()`` at the root).
    :meth:`step` moves on by a word and says what the hypothesis earns or gives back; :meth:`finish` what it
    gives back when it ends inside a phrase. A finished phrase keeps its gain.
    """

    def __init__(self, hotwords: Iterable[Hotword]):
        self.earned: dict[tuple[str, ...], float] = {(): 0.0}  # phrase prefix -> its words' boosts, summed
        self.complete: set[tuple[str, ...]] = set()
        self.extended: set[tuple[str, ...]] = set()  # prefixes a longer phrase goes on from
        for h in hotwords:
            for n in range(1, len(h.words) + 1):
                prefix = h.words[:n]
                self.earned[prefix] = max(self.earned.get(prefix, float("-inf")), self.earned[prefix[:-1]] + h.boost)
            self.complete.add(h.words)
            self.extended.update(h.words[:n] for n in range(1, len(h.words)))
        # a prefix that is a phrase of its own and goes on into a longer one: what it earned is kept (banked)
        self.banked = {
            p: max((self.earned[p[:n]] for n in range(1, len(p) + 1) if p[:n] in self.complete), default=0.0)
            for p in self.earned
        }

    def step(self, node: tuple[str, ...], word: str) -> tuple[tuple[str, ...], float]:
        """``(node, word) -> (next node, score change)``."""
        candidate = (*node, word)
        while candidate and candidate not in self.earned:  # the longest suffix that starts a phrase
            candidate = candidate[1:]
        if candidate == (*node, word):  # the phrase goes on
            change = self.earned[candidate] - self.earned[node]
        else:  # left: give back what was not banked, earn the new match
            change = self.earned[candidate] - (self.earned[node] - self.banked[node])
        if candidate in self.complete and candidate not in self.extended:
            candidate = ()  # a finished phrase: back to the root, its gain kept
        return candidate, change

    def finish(self, node: tuple[str, ...]) -> float:
        """What a hypothesis ending at ``node`` gives back (an unfinished phrase)."""
        return -(self.earned[node] - self.banked[node])
