"""AN4 (CMU's "alphanumeric" census database, 1991): spoken names, addresses, numbers and
spelled letters; 948 training and 130 test utterances, about 50 minutes, 16 kHz.

CMU ships it as ``an4_raw.bigendian.tar.gz`` (headerless 16 kHz 16-bit big-endian ``.raw``
files, the Sphinx format) or ``an4_sphere.tar.gz`` (the same audio as NIST SPHERE ``.sph``);
either unpacks to::

    an4/wav/an4_clstk/<speaker>/<utt>.raw|.sph        training speakers (close-talking microphone)
    an4/wav/an4test_clstk/<speaker>/<utt>.raw|.sph    test speakers
    an4/etc/an4_{train,test}.fileids                  "an4_clstk/fash/an251-fash-b" per line
    an4/etc/an4_{train,test}.transcription            "<s> YES </s> (an251-fash-b)" per line

Utterance ids are ``<prompt>-<speaker>-b``; a speaker id's first letter is its gender (f/m).
:func:`normalize` lower-cases the words and drops the sentence marks, for training text and
references alike (numbers stay written as words, spelled letters as single letters, as AN4
writes them). ``dev`` is carved from the training speakers (``dev_speakers``, women and men
alternating), speaker-disjoint from train; ``test`` is the official test.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import CorpusError, ManifestError
from asr.core.fsutil import file_stamp, sha256sum
from asr.core.textfiles import read_lines
from asr.data.audio import read_info
from asr.data.manifest import Utterance

VERSION = 2  # of the prepare stage's output: bump when the manifests it writes change
SAMPLE_RATE = 16_000
# CMU publishes no checksum for either archive: a download is checked by its size (the raw
# archive is about 64 MB) and, once unpacked, by its content (fileids and transcription agree).
URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_raw.bigendian.tar.gz"
ARCHIVE_NAME = "an4_raw.bigendian.tar.gz"
MIN_ARCHIVE_BYTES = 50_000_000
UPSTREAM_SPLITS = ("train", "test")
# the raw archive, the SPHERE archive, a lossless FLAC copy (the shared one), a converted copy
AUDIO_SUFFIXES = (".raw", ".sph", ".flac", ".wav")
_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()\s]+)\)\s*$")
_MARK = re.compile(r"</?s>|<sil>|\+\+[^+]*\+\+", re.IGNORECASE)


@dataclass(frozen=True)
class An4Config(corpora.Pooling):
    """The ``prepare`` stage's config section."""

    corpus_dir: str | None = None  # folder holding an4/ (--corpus-dir, else $ASR_CORPORA); None: download
    download_dir: str = "data/downloads"
    dev_speakers: int = 8  # training speakers held out for dev (women and men alternating), of 74
    # training speakers held out as our own test set ``devtest``, scored with the official ``test``; -1: 8 when
    # the copy lacks the official test (a copy of the training split alone), else none (train on the rest)
    devtest_speakers: int = -1
    seed: int = 0  # which speakers go to dev and devtest

    def __post_init__(self):
        super().__post_init__()
        if self.dev_speakers < 1 or self.devtest_speakers < -1:
            raise ValueError(
                "dev_speakers must be >= 1 (dev tunes decoding and stops training) and devtest_speakers >= 0 "
                "(or -1: 8 when the copy has no official test)"
            )


def normalize(text: str) -> str:
    """Scoring form of a transcript: sentence and silence marks dropped, lower case, single spaces."""
    return " ".join(_MARK.sub(" ", text).lower().split())


# --- finding the corpus ------------------------------------------------------------------------


def _root_in(folder: Path) -> Path | None:
    for cand in (folder / "an4", folder):
        if (cand / "etc" / "an4_train.transcription").is_file():
            return cand
    return None


def source(url: str = URL, min_bytes: int = MIN_ARCHIVE_BYTES) -> corpora.Source:
    return corpora.Source("AN4", _root_in, "an4/etc/an4_train.transcription", url, ARCHIVE_NAME, None, min_bytes)


def fingerprint(cfg: An4Config) -> dict[str, str] | None:
    """Listing files (hashed) and audio (size, modification time); None before a download."""
    return corpora.fingerprint(source(), cfg.corpus_dir, cfg.download_dir, stamps)


def stamps(root: Path) -> dict[str, str]:
    out = {str(f): f"sha256 {sha256sum(f)}" for f in sorted((root / "etc").glob("an4_*.*"))}
    out.update({str(f): file_stamp(f) for f in sorted((root / "wav").glob("*/*/*"))})
    return out


# --- parsing ------------------------------------------------------------------------------------


def _audio(root: Path, fileid: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = corpora.inside(root / "wav", f"{fileid}{suffix}")
        if p is not None and p.is_file():
            return p
    return None


def read_split(root: Path, split: str) -> list[Utterance]:
    """The utterances of ``etc/an4_<split>.fileids`` with their transcripts, sorted by id.

    Raises:
        ManifestError: a transcription line without an ``(id)``, ids in one listing and not the
            other, a listed file without audio (every problem, by file and line).
    """
    fileids_path, trans_path = (root / "etc" / f"an4_{split}.{kind}" for kind in ("fileids", "transcription"))
    problems, texts = [], {}
    for n, line in read_lines(trans_path):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            problems.append((f"{trans_path}:{n}", "expected '<s> TEXT </s> (utterance-id)'"))
            continue
        texts[m["id"]] = (normalize(m["text"]), n)
    utts, seen = [], set()
    for n, fileid in read_lines(fileids_path):
        fileid = fileid.strip()
        if not fileid:
            continue
        uid, speaker = Path(fileid).name, Path(fileid).parent.name
        seen.add(uid)
        if uid not in texts:
            problems.append((f"{fileids_path}:{n}", f"{uid} has no line in {trans_path.name}"))
            continue
        if corpora.inside(root / "wav", fileid) is None:
            problems.append((f"{fileids_path}:{n}", f"{fileid} points outside the corpus's wav/ folder"))
            continue
        audio = _audio(root, fileid)
        if audio is None:
            problems.append((f"{fileids_path}:{n}", f"no audio wav/{fileid}{{{','.join(AUDIO_SUFFIXES)}}}"))
            continue
        utts.append(Utterance(uid, str(audio), read_info(audio).duration, texts[uid][0], speaker))
    problems += [
        (f"{trans_path}:{n}", f"{uid} is not in {fileids_path.name}")
        for uid, (_, n) in texts.items()
        if uid not in seen
    ]
    if problems:
        raise ManifestError(str(root / "etc"), problems)
    if not utts:
        raise CorpusError(f"{fileids_path}: lists no utterances")
    return sorted(utts, key=lambda u: u.id)


def dev_speakers(speakers: set[str], n: int, seed: int = 0) -> set[str]:
    """``n`` speakers drawn with ``seed``, women (ids starting with ``f``) and men alternating."""
    rng = random.Random(seed)
    groups = [sorted(s for s in speakers if s.startswith("f")), sorted(s for s in speakers if not s.startswith("f"))]
    for g in groups:
        rng.shuffle(g)
    out = set()
    for k in range(min(n, len(speakers))):
        g = groups[k % 2] if groups[k % 2] else groups[1 - k % 2]
        out.add(g.pop())
    return out


DEFAULT_DEVTEST_SPEAKERS = 8  # devtest_speakers=-1 on a copy without the official test


def has_test(root: Path) -> bool:
    """Whether the copy holds the official test split (CMU's archives do; the shared copy is the training split)."""
    return (root / "etc" / "an4_test.fileids").is_file()


def prepare(root: Path, out: Path, cfg: An4Config = An4Config()) -> dict:
    """Write ``train.jsonl`` and ``dev.jsonl``, ``devtest.jsonl`` (speakers carved from training, see
    :class:`An4Config`) and ``test.jsonl`` when the copy has the official test.

    Returns:
        utterances, speakers and hours per set.
    """
    train = read_split(root, "train")
    official = has_test(root)
    n_devtest = cfg.devtest_speakers if cfg.devtest_speakers >= 0 else (0 if official else DEFAULT_DEVTEST_SPEAKERS)
    speakers = {u.speaker for u in train}
    held = dev_speakers(speakers, cfg.dev_speakers + n_devtest, cfg.seed)
    if held == speakers:
        raise CorpusError(
            f"dev_speakers={cfg.dev_speakers} and {n_devtest} devtest speakers leave none of the {len(speakers)} "
            "training speakers to train on; lower prepare.dev_speakers or prepare.devtest_speakers"
        )
    devtest = dev_speakers(held, n_devtest, cfg.seed + 1) if n_devtest else set()
    sets = {
        "train": [u for u in train if u.speaker not in held],
        "dev": [u for u in train if u.speaker in held - devtest],
        **({"devtest": [u for u in train if u.speaker in devtest]} if devtest else {}),
        **({"test": read_split(root, "test")} if official else {}),
    }
    if not devtest and not official:
        raise CorpusError(
            f"{root} holds no official test split and prepare.devtest_speakers=0: nothing would be scored; "
            "set prepare.devtest_speakers (or -1)"
        )
    return corpora.write_sets(out, sets, "AN4")


def stage(ctx: StageContext) -> dict:
    """The ``prepare`` stage: find (or download) AN4 and write the manifests."""
    cfg: An4Config = ctx.config
    root = corpora.locate(source(), cfg.corpus_dir, cfg.download_dir)
    ctx.log(f"prepare: AN4 from {root}")
    return {"counts": prepare(root, ctx.out, cfg), "corpus": str(root)}
