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


# --- output paths: nothing but a file (or a new name in a folder) is replaced ----------------------


def test_export_writes_only_to_a_file_or_a_new_name_and_cleans_up(model, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # as /dev/null: before, os.replace turned it into a regular file (as root, the device too)
    folder = tmp_path / "folder"
    folder.mkdir()
    for out, words in [(fifo, "is not a regular file"), (folder, "is a folder"), ("", "the file name is empty"),
                       (tmp_path / "missing" / "m.onnx", "no such folder")]:
        r = asr("export", str(model), "--onnx", str(out), check=False)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (out, r.stderr)
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder"]
    assert list(folder.iterdir()) == []  # before: a 2.6 MB .folder.tmp was left beside it
    old = tmp_path / "old.onnx"
    old.write_text("an older export")
    asr("export", str(model), "--onnx", str(old))
    assert old.stat().st_size > 10_000 and sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder", "old.onnx"]


def test_evaluate_writes_a_report_only_where_asked(model, fsdd_work, tmp_path):
    import tempfile
    from pathlib import Path

    manifest = tmp_path / "two.jsonl"
    lines = (fsdd_work / "prepare" / "isolated" / "test.jsonl").read_text().splitlines()[:2]
    manifest.write_text("\n".join(lines) + "\n")
    before = set(Path(tempfile.gettempdir()).glob("asr-evaluate-*"))
    r = asr("evaluate", str(model), str(manifest))
    assert "WER" in r.stdout and "give --out DIR for a report" in r.stderr
    assert set(Path(tempfile.gettempdir()).glob("asr-evaluate-*")) == before  # before: one more folder a run
    r = asr("evaluate", str(model), str(manifest), "--out", "", check=False)
    assert r.returncode == 2 and "--out: the folder name is empty" in r.stderr
    r = asr("run", "fsdd", "--work-dir", "", "--show-config", check=False)
    assert r.returncode == 2 and "--work-dir: the folder name is empty" in r.stderr


def test_a_kill_between_publishing_and_copying_is_repaired_by_the_next_run(fsdd_work, corpora_root):
    """The score stage copies RESULTS.md into the work directory after publishing its output: killed in that
    window, the copy stayed missing for good ("up to date, skipped") until --force."""
    import subprocess
    import sys

    from conftest import REPO, SHORT

    results = fsdd_work / "RESULTS.md"
    results.unlink()
    sets = [a for s in SHORT for a in ("--set", s)]
    args = [sys.executable, "-m", "asr", "run", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir",
            str(corpora_root), *sets]
    killed = subprocess.run([*args, "--stage", "score", "--stop-stage", "score", "--force"], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "ASR_TEST_STOP_AT": "stages.published:1"})
    assert killed.returncode == -9, killed.stderr
    assert not results.exists()
    status = asr("stages", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir", str(corpora_root), *sets).stdout
    assert "RESULTS.md in the work directory is missing or old" in status, status
    r = asr("run", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir", str(corpora_root), *sets)
    assert "stage 6 (score): up to date, skipped" in r.stdout and "restored RESULTS.md" in r.stdout, r.stdout
    assert results.read_bytes() == (fsdd_work / "score" / "RESULTS.md").read_bytes()
    (fsdd_work / "model.pt").write_bytes(b"an older model")
    r = asr("run", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir", str(corpora_root), *sets)
    assert "restored model.pt" in r.stdout
    assert (fsdd_work / "model.pt").read_bytes() == (fsdd_work / "export" / "model.pt").read_bytes()
