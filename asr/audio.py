"""Reading and writing audio.

Audio is read with soundfile (libsndfile: WAV, FLAC, OGG, NIST SPHERE and more at
any bit depth; MP3 with libsndfile >= 1.1, which the soundfile wheels bundle; headerless
``.raw`` files as AN4 ships them, :data:`RAW_FORMAT`), mixed down to mono, resampled with
soxr through librosa, and returned as float32 in [-1, 1]. torchaudio's own ``load`` needs TorchCodec and
FFmpeg, which we do not depend on. Paths reach libsndfile as bytes (``os.fsencode``),
so a file name that is not valid UTF-8 opens like any other.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.errors import AudioError

# Rates outside this range are not speech audio we can resample sensibly.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
RESAMPLE_TYPE = "soxr_hq"
# A headerless file says nothing about itself: ``.raw`` is read as CMU's AN4 corpus writes it
# (Sphinx's format: 16 kHz mono 16-bit signed big-endian), the one corpus users bring as raw.
RAW_SUFFIX = ".raw"
RAW_FORMAT = {"format": "RAW", "samplerate": 16_000, "channels": 1, "subtype": "PCM_16", "endian": "BIG"}


def _layout(path: Path) -> dict:
    """What libsndfile must be told to open ``path``: nothing, or the raw layout for a ``.raw`` file.

    Raises:
        AudioError: a ``.raw`` file whose size is not a whole number of 16-bit samples.
    """
    if path.suffix.lower() != RAW_SUFFIX:
        return {}
    if path.stat().st_size % 2:
        raise AudioError(path, "a .raw file must hold whole 16-bit samples (16 kHz big-endian, as AN4), "
                               "but its size is odd", "re-download or re-export the file")
    return RAW_FORMAT


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _check_rate(path: str | Path, rate: int, what: str) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            path,
            f"{what} sample rate {rate} Hz is not supported",
            f"use a rate between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz",
        )


def _check_riff_truncation(path: Path) -> None:
    """Raise if a RIFF/WAVE file holds fewer data bytes than its header declares.

    libsndfile quietly reads whatever is there, so a cut-off download would pass
    as a shorter recording. We walk the chunk list by hand for this one check.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = size - pos - 8
                # 0 and 0xFFFFFFFF mark a stream whose length was never filled in.
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise AudioError(
                        path,
                        f"truncated: the header declares {chunk_size} bytes of audio "
                        f"but the file holds {available}",
                        "re-download or re-export the file",
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def check_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file, saying what it is instead (never opens a FIFO, which would block).

    Raises:
        AudioError: missing, a directory, or not a regular file (FIFO, socket, device).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioError(path, "no such file",
                         "check the path (on the command line, in the manifest or in wav.scp)") from None
    except OSError as e:
        raise AudioError(path, f"cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(path, "is a directory, not an audio file", "name the audio files inside it")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise AudioError(path, f"is {kind}, not an audio file", "write the audio to a file first")


def read_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header.

    Raises:
        AudioError: the file is missing or is not readable audio.
    """
    path = Path(path)
    check_file(path)
    layout = _layout(path)
    try:
        with sf.SoundFile(os.fsencode(path), **layout) as f:
            return AudioInfo(sample_rate=f.samplerate, frames=f.frames, channels=f.channels)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"not a readable audio file ({e})") from None


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono float signal; returns it unchanged when the rates agree.

    Args:
        samples: ``(n,)`` float32.
    Returns:
        ``(round(n * target_rate / orig_rate),)`` float32.
    """
    if orig_rate == target_rate:
        return samples
    import librosa  # imported here: librosa's import costs ~0.5 s and most callers never resample

    out = librosa.resample(samples, orig_sr=orig_rate, target_sr=target_rate, res_type=RESAMPLE_TYPE)
    return out.astype(np.float32, copy=False)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Load audio as mono float32 at ``sample_rate``.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, NIST SPHERE, ...).
        sample_rate: target rate in Hz; ``None`` keeps the file's rate.
        offset: start of the segment, in seconds.
        duration: length of the segment in seconds; ``None`` reads to the end.

    Returns:
        ``(samples,)`` float32, channels averaged to mono.

    Raises:
        AudioError: missing file, unreadable / corrupt / truncated data, zero
            samples, NaN or infinite samples, or an unsupported sample rate.
    """
    path = Path(path)
    info = read_info(path)
    _check_rate(path, info.sample_rate, "file")
    if sample_rate is not None:
        _check_rate(path, sample_rate, "requested")
    _check_riff_truncation(path)

    start = int(round(offset * info.sample_rate))
    stop = None if duration is None else start + int(round(duration * info.sample_rate))
    if start > info.frames or (stop is not None and stop > info.frames + 1):
        raise AudioError(
            path,
            f"segment {offset:.3f}s+{duration}s lies past the end of the file ({info.duration:.3f}s)",
            "check the offset and duration in the manifest or segments file",
        )
    try:
        data, rate = sf.read(os.fsencode(path), start=start, stop=stop, dtype="float32", always_2d=True,
                             **_layout(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"corrupt audio data ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "holds zero samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "holds NaN or infinite samples", "the file is corrupt; re-export it")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if sample_rate is not None:
        mono = resample(mono, rate, sample_rate)
    return mono


def stream_audio(path: str | Path, sample_rate: int, chunk_seconds: float) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 chunks of about ``chunk_seconds`` at ``sample_rate``.

    Memory stays bounded by the chunk size whatever the file's length. Each chunk is
    resampled on its own (soxr's edge effects at the seams are below 1e-3 of full scale).

    Raises:
        AudioError: as :func:`load_audio`.
    """
    path = Path(path)
    info = read_info(path)
    _check_rate(path, info.sample_rate, "file")
    _check_rate(path, sample_rate, "requested")
    _check_riff_truncation(path)
    if info.frames == 0:
        raise AudioError(path, "holds zero samples")
    block = max(1, int(chunk_seconds * info.sample_rate))
    try:
        for data in sf.blocks(os.fsencode(path), blocksize=block, dtype="float32", always_2d=True, **_layout(path)):
            if not np.isfinite(data).all():
                raise AudioError(path, "holds NaN or infinite samples", "the file is corrupt; re-export it")
            mono = np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
            yield resample(mono, info.sample_rate, sample_rate)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"corrupt audio data ({e})") from None


def save_audio(path: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a mono float signal as WAV (16-bit PCM by default)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"save_audio expects a mono (n,) signal, got shape {samples.shape}")
    sf.write(os.fsencode(path), samples, sample_rate, subtype=subtype)
