"""Synthetic voices: the recipe's own training transcripts spoken by the text-to-speech voices of Debian's main
archive, as extra "speakers" a recipe can pool at a low weight (``--set prepare.pool=espeak:0.3,flite:0.3``).

Two synthesisers (:data:`SYNTHESIZERS`), each called as a program (no Python binding of either is kept up):

- ``espeak``: eSpeak NG (Debian's ``espeak-ng``), a formant synthesiser: 12 voices, accents of England, Scotland,
  the US and the Caribbean, each with a male or female variant; clear, robotic.
- ``flite``: CMU's Flite (Debian's ``flite``), a small Festival: one diphone voice (kal16) and three statistical
  parametric (clustergen) voices trained on CMU ARCTIC recordings (awb: Scottish male, rms: US male, slt: US
  female); smoother, nearer a human voice, another way of making speech than eSpeak NG's.

MBROLA's voices, which the issue behind this module also named, are not in Debian's main archive.

Each distinct transcript of a training set is spoken once (or ``prepare.espeak_renditions`` times by eSpeak NG,
each by the next voice), by one of the synthesiser's voices at a speed and pitch, all three drawn from the
transcript's hash, so a run is repeatable and a transcript in two training sets is one file. A task with few
distinct transcripts (ten digits) needs renditions to hear every voice; read sentences need one. The audio (FLAC
at :data:`RATE`, no room or microphone) goes into the prepare output's folder named after the synthesiser.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.core.errors import CorpusError
from asr.data.audio import resample
from asr.data.manifest import POOLED, Utterance

RATE = 16_000
MAX_TEXT = 1_000  # characters of one transcript spoken


@dataclass(frozen=True)
class Synthesizer:
    """A text-to-speech program and its voices."""

    name: str  # prepare.pool's name for it, the prefix of its speakers and the folder of its audio
    title: str  # the program's name for people
    package: str  # Debian's package (and the program's name)
    voices: tuple[str, ...]
    version: int  # of the voices, draws and audio written: part of the cache key
    speeds: tuple[int, int]  # the range a speed is drawn from, in the program's unit
    pitches: tuple[int, int]  # the range a pitch is drawn from, in the program's unit
    # (text, voice, speed, pitch) -> the command writing the spoken text as WAV to stdout
    command: Callable[[str, str, int, int], list[str]]
    version_line: Callable[[str], str]  # the program's --version output -> one line naming it and its version


def _espeak(text: str, voice: str, speed: int, pitch: int) -> list[str]:
    # speed in words a minute, pitch on eSpeak's 0-99 scale
    return ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", "--", text]


# each Flite voice's own median pitch (Hz, measured on one sentence): its pitch is drawn around it, not at a
# level that would turn a man's voice into a woman's (rms keeps its own: its model ignores the target)
FLITE_F0 = {"kal16": 95, "awb": 130, "rms": 100, "slt": 170}


def _flite(text: str, voice: str, speed: int, pitch: int) -> list[str]:
    # speed: the duration stretch in percent (above 100 is slower); pitch: percent of the voice's own
    stretch, f0 = speed / 100, FLITE_F0[voice] * pitch / 100
    stretch_f0 = ["--setf", f"duration_stretch={stretch:g}", "--setf", f"int_f0_target_mean={f0:.0f}"]
    return ["flite", "-voice", voice, "-t", text, "-o", "/dev/stdout", *stretch_f0]


SYNTHESIZERS = {
    s.name: s
    for s in (
        Synthesizer(
            name="espeak",
            title="eSpeak NG",
            package="espeak-ng",
            voices=(
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
            ),
            version=2,
            speeds=(130, 175),
            pitches=(30, 70),
            command=_espeak,
            version_line=lambda out: out.strip().split("  Data at")[0],
        ),
        Synthesizer(
            name="flite",
            title="Flite",
            package="flite",
            voices=tuple(FLITE_F0),
            version=1,
            speeds=(85, 120),
            pitches=(85, 115),
            command=_flite,
            version_line=lambda out: (
                "Flite text-to-speech: "
                + next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if "version:" in ln), "unknown version")
            ),
        ),
    )
}


@functools.lru_cache(maxsize=None)
def version(name: str) -> str:
    """The installed synthesiser's version line.

    Raises:
        CorpusError: the synthesiser is not installed.
    """
    synth = SYNTHESIZERS[name]
    program = shutil.which(synth.package)
    if program is None:
        raise CorpusError(
            f"prepare.pool names {name}, and {synth.title} is not installed: `apt-get install {synth.package}` "
            f"(Debian/Ubuntu), or leave {name} out of prepare.pool"
        )
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    return synth.version_line(out.stdout + out.stderr)


def _draw(text: str, lo: int, hi: int, salt: int) -> int:
    return lo + zlib.crc32(f"{salt}:{text}".encode()) % (hi - lo + 1)


def speak(name: str, text: str, voice: str, path: Path, rendition: int = 0) -> float:
    """``text`` spoken by synthesiser ``name``'s ``voice`` into ``path`` (FLAC at :data:`RATE`) at the speed and
    pitch drawn for its ``rendition``; returns its seconds.

    Raises:
        CorpusError: the synthesiser failed (named with the voice and the text's start).
    """
    synth = SYNTHESIZERS[name]
    version(name)
    salt = f"{rendition}:" if rendition else ""  # the first rendition's draws are those of espeak's version 2
    speed, pitch = _draw(salt + text, *synth.speeds, 1), _draw(salt + text, *synth.pitches, 2)
    out = subprocess.run(synth.command(text[:MAX_TEXT], voice, speed, pitch), capture_output=True, check=False)
    if out.returncode or len(out.stdout) <= 44:
        raise CorpusError(f"{synth.package} with voice {voice} failed on {text[:40]!r}: {out.stderr.decode()[:200]}")
    wave, rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
    wave = resample(wave, rate, RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (wave / max(1e-3, float(np.abs(wave).max())) * 0.5).astype(np.float32), RATE, format="FLAC")
    return len(wave) / RATE


def utterances(name: str, texts: Iterable[str], folder: Path, weight: float, renditions: int = 1) -> list[Utterance]:
    """Each distinct transcript of ``texts`` spoken by synthesiser ``name`` ``renditions`` times, the first by its
    drawn voice, each next one by the next voice (after all of them, again at other speeds and pitches), written
    under ``folder`` (a file already there, a transcript of another training set, is kept): pooled utterances
    (speaker ``<name>-<voice>``, group ``pooled: <name>``, ``weight``)."""
    voices = SYNTHESIZERS[name].voices
    out = []
    for text, k in itertools.product(dict.fromkeys(t for t in texts if t.strip()), range(renditions)):
        voice = voices[(_draw(text, 0, len(voices) - 1, 0) + k) % len(voices)]
        uid = f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:12]}" + (f"-{k}" if k else "")
        path = folder / voice / f"{uid}.flac"
        seconds = sf.info(str(path)).duration if path.is_file() else speak(name, text, voice, path, k)
        out.append(
            Utterance(
                id=uid,
                audio=str(path),
                duration=round(seconds, 3),
                text=text,
                speaker=f"{name}-{voice}",
                groups=((POOLED, name),),
                weight=weight,
            )
        )
    return out
