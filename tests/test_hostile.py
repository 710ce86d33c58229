"""Input a hostile or careless user would send (issue 23, round two): the service, model files,
exports, the cache's copies in the work directory, corpus listings. Each test failed on the code
before its fix."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

import asr as asr_pkg
from asr.audio import MAX_CHANNELS, resample, stream_audio
from asr.errors import AudioError
from conftest import asr


@pytest.fixture(scope="module")
def model(fsdd_work):
    return fsdd_work / "model.pt"


# --- audio: one check for files and uploads, memory bounded by the mono signal ---------------------


def _ogg(channels: int, seconds: float, rate: int = 48_000) -> bytes:
    import io

    buf = io.BytesIO()
    second = np.zeros((rate, channels), np.float32)
    with sf.SoundFile(buf, "w", samplerate=rate, channels=channels, format="OGG") as f:
        for _ in range(int(seconds)):
            f.write(second)
    return buf.getvalue()


def test_a_small_upload_declaring_255_channels_is_refused_from_its_header():
    data = _ogg(255, 3)  # 14 KB (60 s: 100 KB, which the service decoded as float32 at once: 2.9 GB)
    assert len(data) < 100_000
    tracemalloc.start()
    with pytest.raises(AudioError, match=f"255 channels is more than the {MAX_CHANNELS} accepted"):
        next(stream_audio(data, 16_000, 30.0, name="upload.ogg"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6


def test_many_channels_are_mixed_down_block_by_block():
    """8 channels of 48 kHz for 20 s: 30.7 MB as float32 at once; read in blocks, the peak is the mono
    signal at the model's rate and one block."""
    data = _ogg(8, 20)
    resample(np.zeros(100, np.float32), 48_000, 16_000)  # librosa's import is no part of the peak
    tracemalloc.start()
    chunks = list(stream_audio(data, 16_000, 30.0, name="upload.ogg"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sum(len(c) for c in chunks) == 320_000
    assert peak < 20e6, peak  # before: over 60 MB (all channels, then their mean)


def test_the_decoded_sample_limit_counts_channels():
    data = _ogg(4, 10)
    with pytest.raises(AudioError, match="over the limit of"):
        next(stream_audio(data, 16_000, 30.0, name="u.ogg", max_samples=4 * 48_000 * 10 - 1))
    assert next(stream_audio(data, 16_000, 30.0, name="u.ogg", max_samples=4 * 48_000 * 10)).size


# --- chunked decoding: no word twice at a seam, no nonsense chunk lengths ---------------------------


def test_a_word_across_a_chunk_seam_comes_out_once(model, fsdd_recordings, tmp_path):
    digits = [sf.read(str(fsdd_recordings / f"{d}_theo_3.wav"), dtype="float32")[0] for d in (7, 4, 9)]
    rate = 8_000
    gap = np.zeros(rate, np.float32)
    # the first digit starts at 1.8 s, so a 2 s chunk's seam falls inside it
    audio = np.concatenate([np.zeros(int(1.8 * rate), np.float32), digits[0], gap, digits[1], gap, digits[2], gap])
    path = tmp_path / "seam.wav"
    sf.write(str(path), audio, rate)
    whole = asr_pkg.load_model(model).transcribe(path)
    assert whole.text == "seven four nine"
    for chunk in (1.0, 2.0, 3.3):
        t = asr_pkg.load_model(model, chunk_seconds=chunk).transcribe(path)
        assert t.text == whole.text, chunk  # before: "seven seven four nine" with 2 s chunks
        ends = [(w.start, w.end) for w in t.words]
        assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:])), ends
        for w, v in zip(t.words, whole.words):
            assert abs(w.start - v.start) < 0.05 and abs(w.end - v.end) < 0.05


@pytest.mark.parametrize("value", ["0.01", "0.0001", "0.5"])
def test_chunks_shorter_than_a_second_are_refused(model, tmp_path, value):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(8_000, np.float32), 8_000)
    r = asr("transcribe", str(model), str(wav), "--chunk-seconds", value, check=False)
    assert r.returncode == 2 and "at least 1" in r.stderr and "Traceback" not in r.stderr, r.stderr
