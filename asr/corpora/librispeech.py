"""LibriSpeech (OpenSLR 12) and Mini LibriSpeech (OpenSLR 31): read audiobooks, 16 kHz FLAC.

Each subset is one archive that unpacks to the upstream tree::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt id> TEXT" per line
    LibriSpeech/{SPEAKERS,CHAPTERS,BOOKS}.TXT, LICENSE.TXT, README.TXT          (metadata, not needed here)

Subsets: train-clean-100/360, train-other-500, dev-clean/other, test-clean/other (OpenSLR
12, SHA-256 as torchaudio lists them); train-clean-5 and dev-clean-2 (Mini LibriSpeech,
OpenSLR 31, which publishes no checksum: a download is checked by its size and, once
unpacked, by its content). Transcripts are upper case with apostrophes; :func:`normalize`
lower-cases them, for training text and references alike. Each subset becomes the set
``<role>/<subset>`` (role: train, dev or test), so the standard stages address them as
``train/*``, ``dev/*`` and ``test/*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import CorpusError, ManifestError
from asr.core.fsutil import file_stamp, sha256sum
from asr.corpora.textnorm import normalize
from asr.data.audio import read_info
from asr.data.manifest import Utterance

VERSION = 1  # of the prepare stage's output: bump when the manifests it writes change
SAMPLE_RATE = 16_000
OPENSLR = "https://www.openslr.org/resources"
SHA256 = {  # OpenSLR 12, as torchaudio.datasets.librispeech lists them
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
MINI = ("train-clean-5", "dev-clean-2")  # OpenSLR 31: no published checksum
MINI_MIN_BYTES = 50_000_000  # both archives are larger (about 330 and 125 MB): a smaller file is an error page
SUBSETS = (*SHA256, *MINI)
UTT_RE = re.compile(r"^(?P<speaker>[0-9]+)-(?P<chapter>[0-9]+)-(?P<n>[0-9]+)$")


@dataclass(frozen=True)
class LibriSpeechConfig(corpora.Pooling):
    """The ``prepare`` stage's config section: which subsets play which role."""

    train: tuple[str, ...] = ("train-clean-100",)  # add train-clean-360, train-other-500 for 960 hours
    dev: tuple[str, ...] = ("dev-clean",)  # tunes decoding and stops training
    test: tuple[str, ...] = ("test-clean", "test-other")
    corpus_dir: str | None = None  # folder holding LibriSpeech/ (--corpus-dir, else $ASR_CORPORA); None: download
    download_dir: str = "data/downloads"

    def __post_init__(self):
        super().__post_init__()
        unknown = [s for s in (*self.train, *self.dev, *self.test) if s not in SUBSETS]
        if unknown:
            raise ValueError(f"unknown LibriSpeech subset(s) {unknown}; subsets: {list(SUBSETS)}")
        if not self.train or not self.dev:
            raise ValueError("need at least one train and one dev subset")
        every = [*self.train, *self.dev, *self.test]
        twice = sorted({s for s in every if every.count(s) > 1})
        if twice:
            raise ValueError(
                f"subset(s) {twice} given more than one role (train, dev, test): "
                "a set cannot tune or score a model that trained on it"
            )

    def roles(self) -> dict[str, str]:
        """Subset -> role, in the order train, dev, test."""
        return {**{s: "test" for s in self.test}, **{s: "dev" for s in self.dev}, **{s: "train" for s in self.train}}


# --- finding the corpus ------------------------------------------------------------------------


def _probe(subset: str):
    def probe(folder: Path) -> Path | None:
        for cand in (folder / "LibriSpeech" / subset, folder / subset):
            if cand.is_dir() and any(cand.glob("*/*/*.trans.txt")):
                return cand
        return None

    return probe


def source(subset: str, url: str | None = None) -> corpora.Source:
    resource = 31 if subset in MINI else 12
    return corpora.Source(
        f"LibriSpeech {subset}",
        _probe(subset),
        f"LibriSpeech/{subset}/<speaker>/<chapter>/",
        url or f"{OPENSLR}/{resource}/{subset}.tar.gz",
        f"{subset}.tar.gz",
        SHA256.get(subset),
        MINI_MIN_BYTES if subset in MINI else 0,
    )


def fingerprint(cfg: LibriSpeechConfig) -> dict[str, str] | None:
    """Transcripts (hashed) and audio (size, modification time) of every subset; None before a download."""
    out: dict[str, str] = {}
    for subset in cfg.roles():
        try:
            d = corpora.find_local(source(subset), cfg.corpus_dir, cfg.download_dir)
        except CorpusError:
            return {}  # the stage itself reports the bad folder
        if d is None:
            return None
        for f in sorted(d.glob("*/*/*")):
            out[str(f)] = f"sha256 {sha256sum(f)}" if f.name.endswith(".trans.txt") else file_stamp(f)
    return out


# --- parsing ------------------------------------------------------------------------------------


def read_subset(subset_dir: Path) -> list[Utterance]:
    """Every utterance of one subset folder, sorted by id, text normalised.

    Raises:
        ManifestError: transcript lines without audio, audio without a transcript line,
            names outside the ``<speaker>-<chapter>-<n>`` scheme (every problem, by file).
    """
    utts, problems = [], []
    for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        if trans.name != f"{speaker}-{chapter}.trans.txt":
            problems.append(
                (str(trans), f"a transcript in {speaker}/{chapter}/ must be named {speaker}-{chapter}.trans.txt")
            )
            continue
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            problems.append((str(trans), f"not UTF-8 text ({e.reason} at byte {e.start})"))
            continue
        listed = set()
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            m = UTT_RE.match(uid)
            if m is None or (m["speaker"], m["chapter"]) != (speaker, chapter):
                problems.append((f"{trans}:{i}", f"utterance id {uid!r} is not {speaker}-{chapter}-<n>"))
                continue
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                problems.append((f"{trans}:{i}", f"no audio file {audio.name}"))
                continue
            listed.add(audio.name)
            utts.append(Utterance(uid, str(audio), read_info(audio).duration, normalize(text), speaker))
        problems += [
            (str(f), "audio without a line in the transcript")
            for f in sorted(trans.parent.glob("*.flac"))
            if f.name not in listed
        ]
    if problems:
        raise ManifestError(str(subset_dir), problems)
    if not utts:
        raise CorpusError(f"{subset_dir}: no utterances (expected <speaker>/<chapter>/*.trans.txt and .flac files)")
    return sorted(utts, key=lambda u: u.id)


def prepare(subset_dirs: dict[str, Path], out: Path, cfg: LibriSpeechConfig) -> dict:
    """Write ``<role>/<subset>.jsonl`` for every configured subset.

    Returns:
        utterances, speakers and hours per set.
    """
    roles = cfg.roles()
    return corpora.write_sets(out, {f"{roles[s]}/{s}": read_subset(d) for s, d in subset_dirs.items()}, "LibriSpeech")


def stage(ctx: StageContext) -> dict:
    """The ``prepare`` stage: find (or download) each subset and write its manifest."""
    cfg: LibriSpeechConfig = ctx.config
    dirs = {}
    for subset in cfg.roles():
        dirs[subset] = corpora.locate(source(subset), cfg.corpus_dir, cfg.download_dir)
        ctx.log(f"prepare: LibriSpeech {subset} from {dirs[subset]}")
    return {"counts": prepare(dirs, ctx.out, cfg)}
