"""One module per corpus: where to get it, how to parse its file names, its splits.

Finding a corpus is shared: a local copy (``--corpus-dir``, else ``$ASR_CORPORA``), else an
earlier download under ``download_dir``, else the public archive, downloaded, checked and
unpacked (:func:`locate`). So is pooling: every corpus's prepare section has the :class:`Pooling` keys, and
other corpora's training utterances join its training sets (:mod:`asr.corpora.pool`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from asr.core.download import download, extract_tar
from asr.core.errors import CorpusError
from asr.corpora.synthetic import SYNTHESIZERS
from asr.data.manifest import Utterance, check, write_manifest

POOLABLE = ("an4", "fsdd", "speechocean762")  # corpora whose training utterances a recipe can pool
SYNTHETIC = tuple(SYNTHESIZERS)  # synthesisers speaking the recipe's own training transcripts

DOWNLOADS = "data/downloads"  # where public archives are downloaded and unpacked, unless a recipe says otherwise

CORPORA_ENV = "ASR_CORPORA"


def local_root(corpus_dir: str | Path | None) -> Path | None:
    """The folder holding local corpus copies: ``corpus_dir``, else ``$ASR_CORPORA``, else None."""
    if corpus_dir:
        return Path(corpus_dir)
    env = os.environ.get(CORPORA_ENV)
    return Path(env) if env else None


@dataclass(frozen=True)
class Source:
    """Where a corpus is found and fetched from.

    Attributes:
        name: shown in messages (``FSDD``).
        probe: a folder -> the corpus inside it (a copy's root, or the folder itself), or None.
        expected: what a copy holds, for the message when a named folder has none (``fsdd/recordings/*.wav``).
        url: the public archive.
        archive: its file name under the download folder.
        sha256: its checksum as the publisher lists it; None where none is published.
        min_bytes: the least size of a complete archive (the check when there is no checksum).
    """

    name: str
    probe: Callable[[Path], Path | None]
    expected: str
    url: str
    archive: str
    sha256: str | None = None
    min_bytes: int = 0

    @property
    def unpacked(self) -> str:
        return self.archive.removesuffix(".tar.gz").removesuffix(".tgz")


def find_local(src: Source, corpus_dir: str | Path | None, download_dir: str | Path = DOWNLOADS) -> Path | None:
    """The corpus if a copy is on disk (a local copy, or an earlier download), else None.

    Raises:
        CorpusError: a local copy was named but holds no corpus.
    """
    root = local_root(corpus_dir)
    if root is not None:
        found = src.probe(root)
        if found is None:
            raise CorpusError(
                f"no {src.name} under {root}: expected {root}/{src.expected} "
                "(the folder given by --corpus-dir or ASR_CORPORA)"
            )
        return found
    unpacked = Path(download_dir) / src.unpacked
    return src.probe(unpacked) if unpacked.is_dir() else None


def locate(src: Source, corpus_dir: str | Path | None = None, download_dir: str | Path = DOWNLOADS) -> Path:
    """The corpus: a copy on disk, else the public archive downloaded, checked and unpacked (every corpus module
    has its ``source()``: ``locate(fsdd.source(), corpus_dir)``).

    Args:
        corpus_dir: a folder holding the corpus (or the corpus folder itself); ``None``: the ``ASR_CORPORA``
            environment variable, else no local copy.
        download_dir: where the public archive is downloaded and unpacked.

    Raises:
        CorpusError: a named copy without the corpus, a failed download, or an archive without it.
    """
    found = find_local(src, corpus_dir, download_dir)
    if found is None:
        download_dir = Path(download_dir)
        archive = download(src.url, download_dir / src.archive, src.sha256, min_bytes=src.min_bytes)
        extract_tar(archive, download_dir / src.unpacked)
        found = src.probe(download_dir / src.unpacked)
        if found is None:
            raise CorpusError(f"{archive} holds no {src.expected}; delete it and download again")
    return found


def fingerprint(
    src: Source, corpus_dir: str | Path | None, download_dir: str | Path, stamps: Callable[[Path], dict[str, str]]
) -> dict[str, str] | None:
    """A prepare stage's data stamps: ``stamps(root)`` of the copy on disk; ``{}`` when a named folder holds
    none (the stage itself reports it); ``None`` before a download (the key is fixed once the stage ran)."""
    try:
        root = find_local(src, corpus_dir, download_dir)
    except CorpusError:
        return {}
    return None if root is None else stamps(root)


def inside(folder: Path, relative: str) -> Path | None:
    """``folder / relative`` if that names a place inside ``folder`` (no absolute path, no ``..`` out of it),
    else ``None``: a corpus listing must not make a recipe read any file on the machine."""
    if not relative or Path(relative).is_absolute():
        return None
    path = folder / relative
    return path if os.path.normpath(path).startswith(os.path.normpath(folder) + os.sep) else None


def shared_audio(sets: dict[str, list[Utterance]], train: str = "train") -> list[str]:
    """The audio files that the train set shares with another set (a test on training audio means nothing)."""
    trained = {u.audio for u in sets.get(train, [])}
    return sorted({u.audio for name, utts in sets.items() if name != train for u in utts} & trained)


def write_sets(out: Path, sets: dict[str, list[Utterance]], corpus: str) -> dict[str, dict]:
    """Validate and write each set as ``out/<name>.jsonl``; returns its utterances, speakers and hours.

    Raises:
        ManifestError: an invalid entry, named by set and utterance id.
    """
    counts = {}
    for name, utts in sets.items():
        check(utts, f"{corpus} {name}")
        write_manifest(out / f"{name}.jsonl", utts)
        counts[name] = {
            "utterances": len(utts),
            "speakers": len({u.speaker for u in utts}),
            "hours": round(sum(u.duration for u in utts) / 3600, 3),
        }
    return counts


Words = Literal["all", "task"]  # which of a pooled corpus's utterances: every one, or those made of the recipe's words
WORDS = get_args(Words)


@dataclass(frozen=True)
class PoolEntry:
    """One entry of ``prepare.pool``: a corpus, its weight and which of its utterances it lends."""

    name: str
    weight: float = 1.0
    words: Words = "all"


def pool_entries(pool: tuple[str, ...], words: str = "all") -> list[PoolEntry]:
    """``("an4", "speechocean762:0.5:task")`` -> ``[PoolEntry("an4", 1.0, words), PoolEntry("speechocean762", 0.5,
    "task")]``: each entry ``NAME[:WEIGHT][:all|task]``, ``words`` (``prepare.pool_words``) where it names none.

    Raises:
        ValueError: an unknown corpus, a corpus named twice, a weight that is not a number > 0, or an unknown part.
    """
    out: dict[str, PoolEntry] = {}
    for entry in pool:
        name, *parts = entry.split(":")
        if name not in POOLABLE + SYNTHETIC:
            raise ValueError(f"pool: unknown corpus {name!r}; what can be pooled: {list(POOLABLE + SYNTHETIC)}")
        if name in out:
            raise ValueError(f"pool: {name} is named twice")
        own = [p for p in parts if p in WORDS]
        weights = [p for p in parts if p not in WORDS]
        try:
            w = float(weights[0]) if weights else 1.0
        except ValueError:
            w = -1.0
        if not 0 < w < 1e6 or len(weights) > 1 or len(own) > 1:
            raise ValueError(
                f"pool: {entry!r} is not NAME[:WEIGHT][:all|task] with a weight > 0 (as {name}:0.5 or {name}:0.5:task)"
            )
        if own and name in SYNTHETIC:
            raise ValueError(f"pool: {name} speaks the recipe's own transcripts; {own[0]} does not apply to it")
        out[name] = PoolEntry(name, w, own[0] if own else words)
    return list(out.values())


@dataclass(frozen=True, kw_only=True)
class Pooling:
    """The pooling keys of every corpus's prepare section (after its own keys; :mod:`asr.corpora.pool`)."""

    # other corpora whose training utterances join every training set (never dev or test), each as NAME or
    # NAME:WEIGHT, the weight being how often a pass sees each of its utterances (0.5: every other pass on
    # average), and NAME:all or NAME:task to choose its utterances apart from pool_words; e.g. --set
    # prepare.pool=an4,speechocean762:0.5:task; "espeak" and "flite": eSpeak NG's or Flite's voices speaking the
    # recipe's own training transcripts (asr.corpora.synthetic), e.g. espeak:0.3,flite:0.3
    pool: tuple[str, ...] = ()
    # all: every training utterance of a pooled corpus; task: only those made of words that the recipe's own
    # training transcripts hold (digit strings for a digit recipe); for each entry of pool that does not say
    pool_words: Words = "all"
    # folder holding the pooled corpora; None: the first of corpus_dir, the folder above it and $ASR_CORPORA
    # that holds each, else its public download
    pool_dir: str | None = None
    # with espeak in pool: how many times each distinct training transcript is spoken, each time by the next of its
    # 12 voices (then again at other speeds and pitches; at most 100): 1 for sentences; a task of ten words needs
    # 12 or more
    espeak_renditions: int = 1

    def __post_init__(self):
        pool_entries(self.pool, self.pool_words)
        if not 1 <= self.espeak_renditions <= 100:
            raise ValueError(f"espeak_renditions must be 1-100, got {self.espeak_renditions}")
