"""Reading and writing audio, from files or from bytes in memory (uploads to ``asr serve``).

Audio is read with soundfile (libsndfile: WAV, FLAC, OGG, NIST SPHERE and more at
any bit depth; MP3 with libsndfile >= 1.1, which the soundfile wheels bundle; headerless
``.raw`` files as AN4 ships them, :data:`RAW_FORMAT`), mixed down to mono, resampled with
soxr through librosa, and returned as float32 in [-1, 1]. torchaudio's own ``load`` needs TorchCodec and
FFmpeg, which we do not depend on. Paths reach libsndfile as bytes (``os.fsencode``),
so a file name that is not valid UTF-8 opens like any other.

Files and uploads pass the same checks (rate, channel count, truncation, NaN samples), and
are mixed down to mono block by block, so reading costs memory for the mono signal and one
block, whatever the channel count.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from asr.core.errors import AudioError, AudioTooLarge

# Rates outside this range are not speech audio we can resample sensibly.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
# A live stream's rate (asr transcribe --stream, /v1/stream): the highest rate sound cards and browsers capture at
MAX_STREAM_SAMPLE_RATE = 192_000
RESAMPLE_TYPE = "soxr_hq"
# More channels than this is no recording of speech; a crafted 100 KB OGG can declare 255 channels of
# 48 kHz silence (3 GB as float32): refused from its header.
MAX_CHANNELS = 32
READ_BLOCK_SAMPLES = 1 << 20  # samples (all channels together) read at a time: 4 MB as float32
# A headerless file says nothing about itself: ``.raw`` is read as CMU's AN4 corpus writes it
# (Sphinx's format: 16 kHz mono 16-bit signed big-endian), the one corpus users bring as raw.
RAW_SUFFIX = ".raw"
RAW_FORMAT = {"format": "RAW", "samplerate": 16_000, "channels": 1, "subtype": "PCM_16", "endian": "BIG"}


Source = str | Path | bytes  # a file, or a file's bytes (named separately in messages)


def is_stream_rate(rate: object) -> bool:
    """A live stream's sample rate: a whole number of Hz in ``MIN_SAMPLE_RATE`` .. ``MAX_STREAM_SAMPLE_RATE``."""
    return isinstance(rate, int) and not isinstance(rate, bool) and MIN_SAMPLE_RATE <= rate <= MAX_STREAM_SAMPLE_RATE


def _layout(path: Path) -> dict:
    """What libsndfile must be told to open ``path``: nothing, or the raw layout for a ``.raw`` file.

    Raises:
        AudioError: a ``.raw`` file whose size is not a whole number of 16-bit samples.
    """
    if path.suffix.lower() != RAW_SUFFIX:
        return {}
    if path.stat().st_size % 2:
        raise AudioError(
            path,
            "a .raw file must hold whole 16-bit samples (16 kHz big-endian, as AN4), but its size is odd",
            "re-download or re-export the file",
        )
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


def check_header(name: str | Path, info: AudioInfo) -> None:
    """The checks every reader makes on a header: a supported rate and channel count."""
    _check_rate(name, info.sample_rate, "file")
    if info.channels > MAX_CHANNELS:
        raise AudioError(
            name,
            f"{info.channels} channels is more than the {MAX_CHANNELS} accepted",
            "mix the recording down to mono or stereo",
        )


def _check_riff_truncation(source: Source, name: str | Path) -> None:
    """Raise if a RIFF/WAVE file holds fewer data bytes than its header declares.

    libsndfile quietly reads whatever is there, so a cut-off download would pass
    as a shorter recording. We walk the chunk list by hand for this one check.
    """
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
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
                        name,
                        f"truncated: the header declares {chunk_size} bytes of audio but the file holds {available}",
                        "re-download or re-export the file",
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def _open(source: Source, name: str | Path) -> sf.SoundFile:
    """libsndfile's reader of a file (checked first) or of bytes.

    Raises:
        AudioError: missing, not a regular file, or not readable audio (names ``name``).
    """
    if isinstance(source, bytes):
        if not source:
            raise AudioError(name, "the file is empty", "send an audio file (WAV, FLAC, OGG)")
        args, layout = io.BytesIO(source), {}
    else:
        path = Path(source)
        check_file(path)
        args, layout = os.fsencode(path), _layout(path)
    try:
        return sf.SoundFile(args, **layout)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        reason = str(e).strip().rsplit(": ", 1)[-1][:160]  # libsndfile's reason, without a BytesIO's repr
        raise AudioError(
            name, f"not a readable audio file, or a truncated one ({reason})", "send WAV, FLAC or OGG"
        ) from None


def _mono_blocks(f: sf.SoundFile, name: str | Path, frames: int | None = None) -> Iterator[np.ndarray]:
    """Mono float32 blocks of an open file, each mixed down as it is read (at most
    :data:`READ_BLOCK_SAMPLES` samples of all channels in memory); ``frames``: stop after so many.

    Raises:
        AudioError: corrupt data or NaN / infinite samples.
    """
    block = max(1, READ_BLOCK_SAMPLES // max(1, f.channels))
    left = f.frames - f.tell() if frames is None else frames
    try:
        while left > 0:
            data = f.read(min(block, left), dtype="float32", always_2d=True)
            if len(data) == 0:
                return
            left -= len(data)
            if not np.isfinite(data).all():
                raise AudioError(name, "holds NaN or infinite samples", "the file is corrupt; re-export it")
            yield data[:, 0].copy() if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(name, f"corrupt audio data ({e})") from None


def check_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file, saying what it is instead (never opens a FIFO, which would block).

    Raises:
        AudioError: missing, a directory, or not a regular file (FIFO, socket, device).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioError(
            path, "no such file", "check the path (on the command line, in the manifest or in wav.scp)"
        ) from None
    except OSError as e:
        raise AudioError(path, f"cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(path, "is a directory, not an audio file", "name the audio files inside it")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise AudioError(path, f"is {kind}, not an audio file", "write the audio to a file first")


def read_info(source: Source, name: str | Path | None = None) -> AudioInfo:
    """Read an audio file's header (``source``: a path, or the file's bytes named ``name``).

    Raises:
        AudioError: the file is missing or is not readable audio.
    """
    name = source if name is None and not isinstance(source, bytes) else (name or "audio")
    with _open(source, name) as f:
        return AudioInfo(sample_rate=f.samplerate, frames=f.frames, channels=f.channels)


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
    with _open(path, path) as f:
        info = AudioInfo(f.samplerate, f.frames, f.channels)
        check_header(path, info)
        if sample_rate is not None:
            _check_rate(path, sample_rate, "requested")
        _check_riff_truncation(path, path)
        start = int(round(offset * info.sample_rate))
        stop = info.frames if duration is None else start + int(round(duration * info.sample_rate))
        if start > info.frames or stop > info.frames + 1:
            raise AudioError(
                path,
                f"segment {offset:.3f}s+{duration}s lies past the end of the file ({info.duration:.3f}s)",
                "check the offset and duration in the manifest or segments file",
            )
        try:
            f.seek(start)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(path, f"corrupt audio data ({e})") from None
        blocks = list(_mono_blocks(f, path, min(stop, info.frames) - start))
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if len(mono) == 0:
        raise AudioError(path, "holds zero samples")
    if sample_rate is not None:
        mono = resample(mono, info.sample_rate, sample_rate)
    return mono


def stream_audio(
    source: Source,
    sample_rate: int,
    chunk_seconds: float,
    name: str | Path | None = None,
    max_samples: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 chunks of about ``chunk_seconds`` at ``sample_rate``.

    Memory stays bounded by the chunk size whatever the file's length and channel count (each block
    is mixed down as it is read). Each chunk is resampled on its own (soxr's edge effects at the
    seams are below 1e-3 of full scale).

    Args:
        source: a path, or a file's bytes (an upload) named ``name`` in messages.
        max_samples: refuse a file whose header declares more samples (frames x channels) than this.
    Raises:
        AudioError: as :func:`load_audio`, and over ``max_samples``.
    """
    name = source if name is None and not isinstance(source, bytes) else (name or "audio")
    _check_rate(name, sample_rate, "requested")
    with _open(source, name) as f:
        info = AudioInfo(f.samplerate, f.frames, f.channels)
        check_header(name, info)
        _check_riff_truncation(source, name)
        if info.frames == 0:
            raise AudioError(name, "holds zero samples")
        if max_samples is not None and info.frames * info.channels > max_samples:
            raise AudioTooLarge(
                name,
                f"{info.duration:.0f} s of {info.channels}-channel audio at {info.sample_rate} Hz "
                f"decodes to {info.frames * info.channels:,} samples, over the limit of "
                f"{max_samples:,}",
                "send fewer channels or a shorter file",
            )
        chunk = max(1, int(chunk_seconds * info.sample_rate))
        pending: list[np.ndarray] = []
        held = 0
        for block in _mono_blocks(f, name):
            pending.append(block)
            held += len(block)
            while held >= chunk:
                joined = np.concatenate(pending)
                yield resample(joined[:chunk], info.sample_rate, sample_rate)
                pending, held = [joined[chunk:]], held - chunk
        if held:
            yield resample(np.concatenate(pending), info.sample_rate, sample_rate)


LIVE_BLOCK_SECONDS = 0.1  # what a live source gives at a time (a microphone's buffer)


def live_audio(
    source: str | Path, raw_rate: int = 16_000, stdin: BinaryIO | None = None
) -> tuple[int, Iterator[np.ndarray]]:
    """Audio as it arrives, for a stream: a file (any format, mixed down) or ``-``, standard input holding
    WAV or, without a RIFF header, raw 16-bit little-endian mono PCM at ``raw_rate`` (what ``arecord -f S16_LE``
    and ``sox -t raw`` write). Returns the rate and mono float32 blocks of :data:`LIVE_BLOCK_SECONDS`.

    Raises:
        AudioError: an unreadable file or a WAV header on standard input that is not 16-bit PCM.
    """
    if str(source) != "-":
        f = _open(source, source)
        check_header(source, AudioInfo(f.samplerate, f.frames, f.channels))
        block = max(1, round(f.samplerate * LIVE_BLOCK_SECONDS))

        def blocks() -> Iterator[np.ndarray]:
            with f:
                while f.tell() < f.frames:
                    yield from _mono_blocks(f, source, min(block, f.frames - f.tell()))

        return f.samplerate, blocks()
    pipe = stdin if stdin is not None else sys.stdin.buffer
    head = pipe.read(4)
    rate, channels = raw_rate, 1
    if head == b"RIFF":  # a WAV stream: its header (the sizes in it mean nothing on a pipe)
        rest = pipe.read(8)
        if rest[4:] != b"WAVE":
            raise AudioError("standard input", "a RIFF stream that is not WAV", "send WAV or raw 16-bit PCM")
        while True:
            chunk = pipe.read(8)
            if len(chunk) < 8:
                raise AudioError("standard input", "a WAV header without its data chunk", "send a whole WAV header")
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"data":
                break
            body = pipe.read(size + size % 2)
            if kind == b"fmt " and len(body) < 16:
                raise AudioError("standard input", "a WAV header with a cut fmt chunk", "send a whole WAV header")
            if kind == b"fmt ":
                fmt, channels, rate = struct.unpack("<HHI", body[:8])
                bits = struct.unpack("<H", body[14:16])[0]
                if not 1 <= channels <= MAX_CHANNELS:  # as a file's header is checked (check_header)
                    raise AudioError(
                        "standard input",
                        f"a WAV header declaring {channels} channels",
                        f"stream 1 to {MAX_CHANNELS} channels (arecord -c 1)",
                    )
                if fmt not in (1, 0xFFFE) or bits != 16:
                    raise AudioError(
                        "standard input", f"WAV of format {fmt}, {bits} bits", "stream 16-bit PCM (arecord -f S16_LE)"
                    )
        head = b""
    _check_rate("standard input", rate, "stream")
    size = 2 * channels * max(1, round(rate * LIVE_BLOCK_SECONDS))

    def pcm() -> Iterator[np.ndarray]:
        left = head
        while True:
            got = pipe.read(size - len(left))
            if not got:
                return  # the end (a last partial sample, if any, is no sample)
            data = left + got
            whole = len(data) - len(data) % (2 * channels)
            data, left = data[:whole], data[whole:]
            if data:
                x = np.frombuffer(data, "<i2").astype(np.float32).reshape(-1, channels) / 32768.0
                yield x.mean(axis=1, dtype=np.float32)

    return rate, pcm()


def save_audio(path: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a mono float signal as WAV (16-bit PCM by default)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"save_audio expects a mono (n,) signal, got shape {samples.shape}")
    sf.write(os.fsencode(path), samples, sample_rate, subtype=subtype)
