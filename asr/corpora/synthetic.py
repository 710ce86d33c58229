"""Synthetic voices: the recipe's own training transcripts spoken by eSpeak NG's English voices, as extra
"speakers" a recipe can pool at a low weight (``--set prepare.pool=espeak:0.2``).

Each distinct transcript of a training set is spoken once (or ``prepare.espeak_renditions`` times, each by the
next voice), by one of :data:`VOICES` (accents of England, Scotland, the US and the Caribbean, each with a male or
female variant) at a speed and pitch, all three drawn from the transcript's hash, so a run is repeatable and a
transcript in two training sets is one file. A task with few distinct transcripts (ten digits) needs renditions
to hear every voice; read sentences need one. The audio (FLAC
at :data:`RATE`) goes into the prepare output's ``espeak/`` folder.
eSpeak NG is a formant synthesiser: clear, robotic, no room or microphone. It is Debian's ``espeak-ng`` package
(called as a program: no Python binding is kept up); MBROLA's voices, which sound more natural, are not in
Debian's main archive.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import shutil
import subprocess
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.core.errors import CorpusError
from asr.data.audio import resample
from asr.data.manifest import POOLED, Utterance

VERSION = 2  # of the voices, speeds and audio written: part of the cache key
NAME = "espeak"
RATE = 16_000
VOICES = (
    "en-us+m1",
    "en-us+f2",
    "en-gb+m3",
    "en-gb+f4",
    "en-gb-scotland+m2",
    "en-gb-x-rp+f1",
    "en-029+m4",
    "en-gb-x-gbclan+f3",
    "en-us+m5",
    "en-gb-x-gbcwmd+f5",
    "en-us+m7",
    "en-gb+f3",
)
SPEEDS = (130, 175)  # words a minute: the range drawn from
PITCHES = (30, 70)  # eSpeak's 0-99 pitch scale
MAX_TEXT = 1_000  # characters of one transcript spoken


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The installed eSpeak NG's version line.

    Raises:
        CorpusError: eSpeak NG is not installed.
    """
    program = shutil.which("espeak-ng")
    if program is None:
        raise CorpusError(
            "prepare.pool names espeak, and eSpeak NG is not installed: `apt-get install espeak-ng` "
            "(Debian/Ubuntu), or leave espeak out of prepare.pool"
        )
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().split("  Data at")[0]


def _draw(text: str, lo: int, hi: int, salt: int) -> int:
    return lo + zlib.crc32(f"{salt}:{text}".encode()) % (hi - lo + 1)


def speak(text: str, voice: str, path: Path, rendition: int = 0) -> float:
    """``text`` spoken by ``voice`` into ``path`` (FLAC at :data:`RATE`) at the speed and pitch drawn for its
    ``rendition``; returns its seconds.

    Raises:
        CorpusError: eSpeak NG failed (named with the voice and the text's start).
    """
    version()
    salt = f"{rendition}:" if rendition else ""  # the first rendition's draws are those of VERSION 2
    speed, pitch = _draw(salt + text, *SPEEDS, 1), _draw(salt + text, *PITCHES, 2)
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", "--", text[:MAX_TEXT]]
    out = subprocess.run(cmd, capture_output=True, check=False)
    if out.returncode or len(out.stdout) <= 44:
        raise CorpusError(f"espeak-ng with voice {voice} failed on {text[:40]!r}: {out.stderr.decode()[:200]}")
    wave, rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
    wave = resample(wave, rate, RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (wave / max(1e-3, float(np.abs(wave).max())) * 0.5).astype(np.float32), RATE, format="FLAC")
    return len(wave) / RATE


def utterances(texts: Iterable[str], folder: Path, weight: float, renditions: int = 1) -> list[Utterance]:
    """Each distinct transcript of ``texts`` spoken ``renditions`` times, the first by its drawn voice, each next one
    by the next voice of :data:`VOICES` (after all 12, again at other speeds and pitches), written under ``folder``
    (a file already there, a transcript of another training set, is kept): pooled utterances (speaker
    ``espeak-<voice>``, group ``pooled: espeak``, ``weight``)."""
    out = []
    for text, k in itertools.product(dict.fromkeys(t for t in texts if t.strip()), range(renditions)):
        voice = VOICES[(_draw(text, 0, len(VOICES) - 1, 0) + k) % len(VOICES)]
        uid = f"{NAME}-{hashlib.sha1(text.encode()).hexdigest()[:12]}" + (f"-{k}" if k else "")
        path = folder / voice / f"{uid}.flac"
        seconds = sf.info(str(path)).duration if path.is_file() else speak(text, voice, path, k)
        out.append(
            Utterance(
                id=uid,
                audio=str(path),
                duration=round(seconds, 3),
                text=text,
                speaker=f"{NAME}-{voice}",
                groups=((POOLED, NAME),),
                weight=weight,
            )
        )
    return out
