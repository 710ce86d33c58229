"""The Free Spoken Digit Dataset (FSDD): real recordings of the digits zero to nine.

Files are named ``{digit}_{speaker}_{index}.wav`` (8 kHz mono, 50 takes of each
digit per speaker). The upstream README defines the official split: indices 0-4
are the test set, 5-49 the training set. We carve the dev set from training
indices 5-9, so test stays untouched.

Two tasks are built from the same recordings:

- isolated: one digit per utterance, with the official split and a
  leave-one-speaker-out split for every speaker present;
- connected: 1-7 recordings of one speaker joined with short random pauses
  (seeded), so CTC has real sequences to decode. Train/dev draw from train/dev
  recordings, test from test recordings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import CorpusError
from asr.core.fsutil import atomic_write_text, file_stamp
from asr.data.audio import load_audio, read_info, save_audio
from asr.data.manifest import Utterance, check, write_manifest

VERSION = 1  # of the prepare stage's output: bump when the manifests it writes change

# Upstream release v1.0.9 (5 speakers, 2,500 files); checksum as published by
# TensorFlow Datasets' spoken_digit builder.
URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/v1.0.9.tar.gz"
SHA256 = "8bc44cde129d505cbbb6b365c09f80c663f2aa77578afc634e6141a2f87100c0"
ARCHIVE_NAME = "free-spoken-digit-dataset-1.0.9.tar.gz"

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NATIVE_RATE = 8_000
TEST_INDICES = range(0, 5)  # upstream README: "Recordings numbered 0-4 (inclusive) are in the test"
DEV_INDICES = range(5, 10)  # ours: carved from the official training indices 5-49
FILE_RE = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<index>[0-9]+)\.wav$")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def text(self) -> str:
        return DIGIT_WORDS[self.digit]


@dataclass(frozen=True)
class FsddConfig(corpora.Pooling):
    """Preparation settings (the ``prepare`` stage's config section)."""

    sample_rate: int = NATIVE_RATE  # rate of the connected-digit audio we write
    connected_train: int = 2000  # connected-digit utterances per split
    connected_dev: int = 200
    connected_test: int = 500
    min_digits: int = 1
    max_digits: int = 7
    min_pause: float = 0.05  # seconds of silence between (and around) the digits
    max_pause: float = 0.30
    seed: int = 0
    corpus_dir: str | None = None  # folder holding fsdd/ (--corpus-dir, else $ASR_CORPORA); None: download
    download_dir: str = "data/downloads"

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")
        if not 0 <= self.min_pause <= self.max_pause:
            raise ValueError(f"need 0 <= min_pause <= max_pause, got {self.min_pause}, {self.max_pause}")


# --- finding the corpus --------------------------------------------------------------


def _recordings_dir(folder: Path) -> Path | None:
    root = ARCHIVE_NAME.removesuffix(".tar.gz")  # the folder the upstream archive unpacks to
    for cand in (folder / "fsdd" / "recordings", folder / "recordings", folder / root / "recordings", folder):
        if cand.is_dir() and any(cand.glob("*_*_*.wav")):
            return cand
    return None


def source(url: str = URL, sha256: str = SHA256) -> corpora.Source:
    return corpora.Source("FSDD recordings", _recordings_dir, "fsdd/recordings/*.wav", url, ARCHIVE_NAME, sha256)


def stamps(recordings_dir: Path) -> dict[str, str]:
    """Size and modification time of every recording."""
    return {str(p): file_stamp(p) for p in sorted(recordings_dir.glob("*.wav"))}


def fingerprint(cfg: FsddConfig) -> dict[str, str] | None:
    """Size and modification time of every recording the prepare stage would read; None before a download."""
    return corpora.fingerprint(source(), cfg.corpus_dir, cfg.download_dir, stamps)


def scan(recordings_dir: str | Path) -> list[Recording]:
    """Parse every ``*.wav`` file name; names that do not follow the scheme are an error."""
    recordings_dir = Path(recordings_dir)
    recs, bad = [], []
    for p in sorted(recordings_dir.glob("*.wav")):
        m = FILE_RE.match(p.name)
        if m is None:
            bad.append(p.name)
        else:
            recs.append(Recording(p.resolve(), int(m["digit"]), m["speaker"], int(m["index"])))
    if bad:
        raise CorpusError(
            f"{len(bad)} file(s) in {recordings_dir} do not follow {{digit}}_{{speaker}}_{{index}}.wav: {bad[:10]}"
        )
    if not recs:
        raise CorpusError(f"no recordings in {recordings_dir}")
    return recs


# --- splits -----------------------------------------------------------------------------


def split_of(rec: Recording) -> str:
    """Official split, with dev carved from training indices."""
    if rec.index in TEST_INDICES:
        return "test"
    return "dev" if rec.index in DEV_INDICES else "train"


@functools.cache  # each recording sits in the official split and in every speaker fold: read its header once
def to_utterance(rec: Recording) -> Utterance:
    return Utterance(rec.id, str(rec.path), read_info(rec.path).duration, rec.text, rec.speaker)


def isolated_splits(recs: list[Recording]) -> dict[str, list[Utterance]]:
    out: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    for r in recs:
        out[split_of(r)].append(to_utterance(r))
    return out


def speaker_heldout_splits(recs: list[Recording], speaker: str) -> dict[str, list[Utterance]]:
    """Test on every recording of ``speaker``; train and dev on the others (dev = indices 5-9)."""
    if speaker not in {r.speaker for r in recs}:
        raise CorpusError(f"speaker {speaker!r} not in the corpus; present: {sorted({r.speaker for r in recs})}")
    out: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    for r in recs:
        split = "test" if r.speaker == speaker else ("dev" if r.index in DEV_INDICES else "train")
        out[split].append(to_utterance(r))
    return out


# --- connected digits ---------------------------------------------------------------------


def make_connected(
    recs: list[Recording], n: int, split: str, out_dir: Path, cfg: FsddConfig, seed: int
) -> tuple[list[Utterance], list[dict]]:
    """Build ``n`` connected-digit utterances from ``recs`` and write their audio.

    Each utterance takes one speaker, 1-7 of that speaker's recordings (without
    repeats inside the utterance), and puts a random pause before, between and after
    them. Returns the utterances and, per utterance, its parts and pauses in samples.
    """
    rng = random.Random(seed)
    by_speaker: dict[str, list[Recording]] = defaultdict(list)
    for r in recs:
        by_speaker[r.speaker].append(r)
    speakers = sorted(by_speaker)
    wav_dir = out_dir / "wav" / split
    wav_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, np.ndarray] = {}
    utts, layout = [], []
    for i in range(n):
        spk = rng.choice(speakers)
        pool = by_speaker[spk]
        k = min(rng.randint(cfg.min_digits, cfg.max_digits), len(pool))
        parts = rng.sample(pool, k)
        pauses = [int(round(rng.uniform(cfg.min_pause, cfg.max_pause) * cfg.sample_rate)) for _ in range(k + 1)]
        pieces = [np.zeros(pauses[0], np.float32)]
        for part, pause in zip(parts, pauses[1:]):
            if part.path not in cache:
                cache[part.path] = load_audio(part.path, cfg.sample_rate)
            pieces += [cache[part.path], np.zeros(pause, np.float32)]
        audio = np.concatenate(pieces)
        uid = f"{spk}_{split}_{i:05d}"
        path = wav_dir / f"{uid}.wav"
        save_audio(path, audio, cfg.sample_rate)
        text = " ".join(p.text for p in parts)
        # relative to the manifest (out_dir/<split>.jsonl), so the stage output can be moved
        utts.append(Utterance(uid, str(path.relative_to(out_dir)), len(audio) / cfg.sample_rate, text, spk))
        layout.append(
            {
                "id": uid,
                "parts": [p.id for p in parts],
                "part_samples": [len(cache[p.path]) for p in parts],
                "pause_samples": pauses,
            }
        )
    return utts, layout


# --- the whole preparation -------------------------------------------------------------------


def prepare(recordings_dir: str | Path, out_dir: str | Path, cfg: FsddConfig = FsddConfig()) -> dict:
    """Write every manifest of both tasks under ``out_dir``.

    Layout::

        isolated/{train,dev,test}.jsonl
        loso/<speaker>/{train,dev,test}.jsonl      one fold per speaker present
        connected/{train,dev,test}.jsonl            + connected/wav/<split>/*.wav
        connected/{train,dev,test}.layout.jsonl     parts and pauses of each utterance

    Returns:
        counts per manifest, e.g. ``{"isolated/train": 1600, ...}``.
    """
    out = Path(out_dir)
    recs = scan(recordings_dir)
    counts: dict[str, int] = {}

    def emit(name: str, utts: list[Utterance], audio_base: Path | None = None) -> None:
        resolved = [dataclasses.replace(u, audio=str(audio_base / u.audio)) for u in utts] if audio_base else utts
        check(resolved, name)
        write_manifest(out / f"{name}.jsonl", utts)
        counts[name] = len(utts)

    for split, utts in isolated_splits(recs).items():
        emit(f"isolated/{split}", utts)
    for spk in sorted({r.speaker for r in recs}):
        for split, utts in speaker_heldout_splits(recs, spk).items():
            emit(f"loso/{spk}/{split}", utts)
    sizes = {"train": cfg.connected_train, "dev": cfg.connected_dev, "test": cfg.connected_test}
    for offset, split in enumerate(SPLITS):
        pool = [r for r in recs if split_of(r) == split]
        utts, layout = make_connected(pool, sizes[split], split, out / "connected", cfg, cfg.seed * 1000 + offset)
        emit(f"connected/{split}", utts, out / "connected")
        atomic_write_text(out / "connected" / f"{split}.layout.jsonl", "".join(json.dumps(x) + "\n" for x in layout))
    return counts


def stage(ctx: StageContext) -> dict:
    """The ``prepare`` stage: find (or download) the corpus and write every manifest."""
    cfg: FsddConfig = ctx.config
    recordings = corpora.locate(source(), cfg.corpus_dir, cfg.download_dir)
    ctx.log(f"prepare: FSDD recordings from {recordings}")
    return {"counts": prepare(recordings, ctx.out, cfg), "recordings_dir": str(recordings)}
