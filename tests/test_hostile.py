"""Input a hostile or careless user would send (issue 23, round two): the service, model files,
exports, the cache's copies in the work directory, corpus listings. Each test failed on the code
before its fix."""

from __future__ import annotations

import json
import os
import re
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from helpers import asr

import asr as asr_pkg
from asr.core.errors import AudioError
from asr.data.audio import MAX_CHANNELS, resample, stream_audio


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
    for chunk in (1.0, 2.0, 3.3):  # fixed chunks (vad=False): a seam inside the word
        t = asr_pkg.load_model(model, chunk_seconds=chunk, vad=False).transcribe(path)
        # before: "six one four nine" with 1 or 2 s chunks (the seam cut "seven" in two)
        assert t.text == whole.text, chunk
        ends = [(w.start, w.end) for w in t.words]
        assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:])), ends
        for w, v in zip(t.words, whole.words):
            assert abs(w.start - v.start) < 0.05 and abs(w.end - v.end) < 0.05
        # cut at the pauses instead (the default past chunk_seconds): segments of up to 10 s, the same words
        assert asr_pkg.load_model(model, chunk_seconds=chunk).transcribe(path).text == whole.text, chunk


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
    for out, words in [
        (fifo, "is not a regular file"),
        (folder, "is a folder"),
        ("", "the file name is empty"),
        (tmp_path / "missing" / "m.onnx", "no such folder"),
    ]:
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

    from helpers import REPO, SHORT

    results = fsdd_work / "RESULTS.md"
    results.unlink()
    sets = [a for s in SHORT for a in ("--set", s)]
    args = [
        sys.executable,
        "-m",
        "asr",
        "run",
        "fsdd",
        "--work-dir",
        str(fsdd_work),
        "--corpus-dir",
        str(corpora_root),
        *sets,
    ]
    killed = subprocess.run(
        [*args, "--stage", "score", "--stop-stage", "score", "--force"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "ASR_TEST_STOP_AT": "stages.published:1"},
    )
    assert killed.returncode == -9, killed.stderr
    assert not results.exists()
    status = asr("stages", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir", str(corpora_root), *sets).stdout
    assert "RESULTS.md in the work directory is missing or old" in status, status
    r = asr("run", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir", str(corpora_root), *sets)
    assert "stage 7 (score): up to date, skipped" in r.stdout and "restored RESULTS.md" in r.stdout, r.stdout
    assert results.read_bytes() == (fsdd_work / "score" / "RESULTS.md").read_bytes()
    (fsdd_work / "model.pt").write_bytes(b"an older model")
    r = asr("run", "fsdd", "--work-dir", str(fsdd_work), "--corpus-dir", str(corpora_root), *sets)
    assert "restored model.pt" in r.stdout
    assert (fsdd_work / "model.pt").read_bytes() == (fsdd_work / "export" / "model.pt").read_bytes()


# --- model files: plain data checked once, on load, with the field named -----------------------------


def _crafted(model, tmp_path, change):
    import torch

    ckpt = torch.load(model, weights_only=True)
    change(ckpt)
    path = tmp_path / "crafted.pt"
    torch.save(ckpt, path)
    return path


def _lexicon_of_another_model(c):
    c["lm_files"]["lexicon.txt"] = "seven\tQ Q Q |\n"


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda c: c.update(results="x"), "results is a str"),
        (lambda c: c.update(results={"test": {"wer": "low"}}), "results['test'] is not a result"),
        (
            lambda c: c.update(results={"test": {"wer": 0.1, "cer": 0.1, "greedy_wer": 0.2, "wer_ci": [1]}}),
            "results['test'].wer_ci is [1]",
        ),
        (lambda c: c.update(training=[1]), "training is a list"),
        (lambda c: c.update(training={"updates": "many"}), "training.updates is 'many'"),
        (lambda c: c.update(training={"schedule": {"hours": "2"}}), "training.schedule.hours is '2'"),
        (lambda c: c.update(train_config={"train_sets": [1]}), "train_config.train_sets holds"),
        (lambda c: c.update(decoding="greedy"), "decoding is a str"),
        (lambda c: c["decoding"].update(beam_size="16"), "decoding.beam_size is '16'"),
        (lambda c: c["decoding"].update(beam_size=10**9), "(both at most 10000)"),
        (lambda c: c.update(lm_files=["lm.arpa"]), "lm_files is a list"),
        (
            lambda c: c["lm_files"].update({"evil.bin": "x" * 1000}),
            "lm_files['evil.bin'] is none of the lm stage's files",
        ),
        (lambda c: c["lm_files"].update({"lm.arpa\0": "x"}), "is none of the lm stage's files"),
        (lambda c: c["lm_files"].update({"lm.arpa": 5}), "lm_files['lm.arpa'] is not text"),
        (lambda c: c["tokenizer"].update(units=[0, 1, 2]), "tokenizer units are not distinct non-empty strings"),
        (lambda c: c.update(git_commit=["x"]), "git_commit is ['x']"),
        (lambda c: c.update(inter_tokenizer="x"), "inter_tokenizer is a str, not a mapping"),  # was a traceback
        (lambda c: c.update(inter_tokenizer=[1]), "inter_tokenizer is a list, not a mapping"),
        (lambda c: c["model"].update(rnn=3), "rnn must be 'lstm' or 'gru', got 3"),
        (lambda c: c["model"].update(bidirectional="no"), "model.bidirectional is 'no'"),
        (lambda c: c["model"].update(right_context=1.5), "model.right_context is 1.5"),
        (  # before: transcribed to "" without a word of warning
            lambda c: next(v for v in c["state_dict"].values() if v.is_floating_point()).fill_(float("nan")),
            "network gives NaN or infinite values",
        ),
    ],
)
def test_crafted_model_metadata_is_refused_on_load_naming_the_field(model, tmp_path, change, field):
    """Before, each of these was a traceback in ``asr info``, ``asr transcribe`` or the decoder."""
    from asr.core.errors import AsrError
    from asr.model.info import describe

    path = _crafted(model, tmp_path, change)
    for load in (asr_pkg.load_model, describe):
        with pytest.raises(AsrError) as e:
            load(path)
        assert str(path) in str(e.value) and field in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "change, words",
    [
        (_lexicon_of_another_model, "(its embedded LM): the lexicon spells 1 word(s) in units the model lacks"),
        (lambda c: c["features"].update(win_ms=1e7), "win_ms <= 100"),  # before: 22 GiB allocated on first use
        (lambda c: c["features"].update(f_max=1e6), "f_max <= 4000 Hz"),
        (lambda c: c["features"].update(n_mels=100_000), "n_mels <= 256"),
    ],
)
def test_a_model_file_that_does_not_fit_together_is_named(model, tmp_path, change, words):
    path = _crafted(model, tmp_path, change)
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(8_000, np.float32), 8_000)
    r = asr("transcribe", str(path), str(wav), check=False)
    assert r.returncode == 2 and str(path) in r.stderr and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "asr-model-lm-" not in r.stderr  # a temporary folder gone by the time the message is read


def test_extra_lm_files_are_never_written_out(model, tmp_path, monkeypatch):
    """Only the files the decoding reads are written to a temporary folder (before: every entry, on every load,
    in every server worker)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    written = []
    real = tempfile.TemporaryDirectory

    class Spy(real):
        def cleanup(self):
            written.extend(sorted(p.name for p in __import__("pathlib").Path(self.name).iterdir()))
            super().cleanup()

    monkeypatch.setattr(tempfile, "TemporaryDirectory", Spy)
    path = _crafted(model, tmp_path, lambda c: c["lm_files"].update({"tokens.arpa": "\\data\\\n" * 10_000}))
    asr_pkg.load_model(path)  # lexicon_lm: reads lexicon, words, lm.arpa
    assert "tokens.arpa" not in written and "lexicon.txt" in written
    written.clear()
    asr_pkg.load_model(path, method="greedy")
    assert written == []


def test_an_onnx_network_wider_or_narrower_than_the_units_is_refused(model, tmp_path):
    import onnx

    from asr.core.errors import AsrError
    from asr.model.onnxrt import META_KEY

    path = tmp_path / "m.onnx"
    asr("export", str(model), "--onnx", str(path))
    graph = onnx.load(str(path))
    entry = next(p for p in graph.metadata_props if p.key == META_KEY)
    meta = json.loads(entry.value)
    meta["tokenizer"]["units"].append("\u00ff")  # one unit more than the network's outputs
    entry.value = json.dumps(meta)
    onnx.save(graph, str(path))
    with pytest.raises(AsrError, match="the network gives 17 values per frame for 18 units"):
        asr_pkg.load_model(path)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda m: m["model"].update(stack=1), "gives (3, 17) log-probabilities where its metadata means (8, 17)"),
        (lambda m: m["model"].update(chunk=4), "not a streaming network's"),  # an offline graph said to stream
    ],
)
def test_onnx_metadata_that_does_not_fit_the_graph_is_refused(model, tmp_path, change, words):
    """Before: stack=1 on a graph stacking 3 frames gave the same text with every word time divided by 3, and a
    streaming server started, said ``streaming: true``, then failed every request with a traceback."""
    import onnx

    from asr.model.onnxrt import META_KEY

    path = tmp_path / "m.onnx"
    asr("export", str(model), "--onnx", str(path))
    graph = onnx.load(str(path))
    entry = next(p for p in graph.metadata_props if p.key == META_KEY)
    meta = json.loads(entry.value)
    change(meta)
    entry.value = json.dumps(meta)
    onnx.save(graph, str(path))
    for command in (["info", str(path)], ["serve", str(path), "--port", "0"]):
        r = asr(*command, check=False)
        assert r.returncode == 2 and str(path) in r.stderr and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "listening" not in r.stdout


# --- corpus listings --------------------------------------------------------------------------------


def test_kaldi_listings_with_bad_numbers_or_fields_are_named_by_utterance(tmp_path):
    from asr.core.errors import ManifestError
    from asr.data.manifest import read_kaldi_dir

    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(16_000, np.float32), 16_000)
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"\ufeffrec1 {wav}\n")  # a byte-order mark, as Windows editors write it
    (d / "text").write_text("\ufeffu1 hello\nu2 world\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\n")
    (d / "segments").write_text("u1 rec1 0.0 0.5\nu2 rec1 0.5\n")  # before: ValueError traceback
    (d / "utt2dur").write_text("u1 half\nu2 0.5\n")  # before: ValueError traceback
    with pytest.raises(ManifestError) as e:
        read_kaldi_dir(d)
    problems = dict(e.value.problems)
    assert (
        "'half' is no duration" in problems["u1"]
        and "expected '<utterance> <recording> <start> <end>'" in problems["u2"]
    )
    (d / "segments").write_text("u1 rec1 0.0 0.5\nu2 rec1 0.5 1.0\n")
    (d / "utt2dur").write_text("u1 0.5\nu2 0.5\n")
    utts = read_kaldi_dir(d)
    assert [u.id for u in utts] == ["u1", "u2"]  # before: the first id was "\ufeffu1", in no other file


def test_jsonl_fields_are_not_coerced_and_deep_nesting_is_named(tmp_path):
    from asr.core.errors import ManifestError
    from asr.data.manifest import read_manifest

    m = tmp_path / "m.jsonl"
    good = {"id": "u1", "audio": "a.wav", "duration": 1.0, "text": "a", "speaker": "s"}
    m.write_text(
        "\n".join(
            [
                json.dumps({**good, "text": ["a"]}),
                json.dumps({**good, "id": "u2", "duration": "3"}),
                "[" * 100_000 + "]" * 100_000,
            ]
        )
        + "\n"
    )
    with pytest.raises(ManifestError) as e:
        read_manifest(m)
    text = str(e.value)
    assert "text must be a string, got list" in text  # before: the text "['a']"
    assert "duration must be a number of seconds >= 0, got '3'" in text
    assert "line 3" in text and "nested too deeply" in text  # before: a RecursionError traceback


def _cv_release(root, rows: dict, durations: str | None = None):
    from test_commonvoice import HEADER

    (root / "clips").mkdir(parents=True)
    sf.write(
        str(root / "clips" / "c1.mp3"), (0.1 * np.sin(np.arange(16_000) / 5)).astype(np.float32), 16_000, format="MP3"
    )
    for split, paths in rows.items():
        lines = [f"{'ab' * 8}\t{p}\tsid\thello there\t\t2\t0\t\t\t\t\ten\t" for p in paths]
        (root / f"{split}.tsv").write_text("\n".join([HEADER, *lines]) + "\n")
    if durations:
        (root / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + durations)


@pytest.mark.parametrize(
    "rows, durations, words",
    [
        (
            {"train": ["/etc/hostname"], "dev": ["c1.mp3"], "test": ["c1.mp3"]},
            None,
            "points outside the release's clips/",
        ),
        ({"train": ["../../secret.mp3"], "dev": ["c1.mp3"], "test": ["c1.mp3"]}, None, "points outside"),
        ({"train": ["c1.mp3"], "dev": [], "test": ["c1.mp3"]}, None, "in train.tsv and in dev.tsv or test.tsv"),
        ({"train": ["c1.mp3"], "dev": [], "test": []}, "c1.mp3\t3000000000\n", "3,000,000,000 ms is no clip's length"),
    ],
)
def test_common_voice_listings_stay_inside_the_release(tmp_path, rows, durations, words):
    from asr.core.errors import AsrError
    from asr.corpora import commonvoice as cv

    root = tmp_path / "cv" / "en"
    _cv_release(root, rows, durations)
    with pytest.raises(AsrError, match=re.escape(words)):
        cv.prepare(root, tmp_path / "out", cv.CommonVoiceConfig())


def test_an4_fileids_stay_inside_the_corpus(tmp_path):
    from asr.core.errors import ManifestError
    from asr.corpora import an4

    root = tmp_path / "an4"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.fileids").write_text("/etc/hostname\n")
    (root / "etc" / "an4_train.transcription").write_text("<s> YES </s> (hostname)\n")
    with pytest.raises(ManifestError, match="points outside the corpus's wav/ folder"):
        an4.read_split(root, "train")


# --- a full disk --------------------------------------------------------------------------------------


@pytest.fixture
def small_file_limit():
    """Writes past 1 MB fail as on a full disk (EFBIG rather than ENOSPC: the same failed write)."""
    import resource
    import signal

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing pytest
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, old_limit[1]))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


def test_a_checkpoint_that_cannot_be_written_is_named_and_leaves_no_tmp(tmp_path, small_file_limit):
    import torch

    from asr.core.errors import AsrError
    from asr.train.trainer import save_atomic

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(AsrError) as e:
        save_atomic({"w": torch.zeros(1_000_000)}, path)  # 4 MB
    assert str(path) in str(e.value) and "MB are free on its disk" in str(e.value)  # before: "unexpected pos"
    assert list(tmp_path.iterdir()) == []  # before: checkpoint.pt.tmp was left


def test_a_stage_file_that_cannot_be_written_names_its_path(tmp_path, small_file_limit):
    from asr.core.fsutil import atomic_write_bytes

    path = tmp_path / "features.f32"
    with pytest.raises(OSError) as e:
        atomic_write_bytes(path, b"\0" * 2_000_000)
    assert e.value.filename == str(path) and list(tmp_path.iterdir()) == []


# --- messages that say what is wrong ------------------------------------------------------------------


def test_training_names_the_utterance_holding_the_word_separator_and_an_empty_train_set(fsdd_utts, tmp_path):
    import dataclasses

    from helpers import build_features
    from test_train import TINY

    from asr.core.errors import AsrError
    from asr.train.stage import train

    utts = [dataclasses.replace(u, text="seven|eight") if i == 2 else u for i, u in enumerate(fsdd_utts[:4])]
    feats = build_features(tmp_path / "a", {"tiny": utts})
    with pytest.raises(AsrError, match=re.escape(f"it is in the transcript(s) of ['{utts[2].id}']")):
        train(TINY, feats, tmp_path / "out", tmp_path / "partial", log=lambda m: None)
    feats = build_features(tmp_path / "b", {"tiny": fsdd_utts[:2], "empty": []})
    cfg = dataclasses.replace(TINY, train_sets=("empty",))
    with pytest.raises(AsrError, match=re.escape("the train sets ['empty'] hold no utterances")):
        train(cfg, feats, tmp_path / "out", tmp_path / "partial", log=lambda m: None)


def test_wer_names_a_folder_or_fifo_for_what_it_is(tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("u1 a b\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for hyp, words in [(tmp_path, "is a folder, not a file"), (fifo, "is not a regular file")]:
        r = asr("wer", str(ref), str(hyp), check=False)
        assert r.returncode == 2 and words in r.stderr, r.stderr  # before: "no such file"


def test_fsdd_loso_finds_its_pooled_corpora_by_their_own_setting(corpora_root, an4_root, tmp_path):
    """``--corpus-dir`` naming the FSDD folder itself: a pooled corpus was looked up inside it ("no
    speechocean762 under .../fsdd"); the pooled corpora are found beside it, or in ``prepare.pool_dir``."""
    import subprocess
    import sys

    from helpers import REPO

    env = {k: v for k, v in os.environ.items() if k != "ASR_CORPORA"}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "asr", "run", "fsdd_loso", "--stop-stage", "prepare", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    r = run("--work-dir", str(tmp_path / "a"), "--corpus-dir", str(corpora_root / "fsdd"))
    assert r.returncode == 0 and "+ an4: 948 utterances" in r.stdout, r.stdout + r.stderr
    lone = tmp_path / "lone"
    (lone / "fsdd").mkdir(parents=True)
    (lone / "fsdd" / "recordings").symlink_to(corpora_root / "fsdd" / "recordings")
    r = run("--work-dir", str(tmp_path / "b"), "--corpus-dir", str(lone / "fsdd"))
    assert r.returncode == 2 and "--set prepare.pool_dir=DIR" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run(
        "--work-dir",
        str(tmp_path / "b"),
        "--corpus-dir",
        str(lone / "fsdd"),
        "--set",
        f"prepare.pool_dir={corpora_root}",
    )
    assert r.returncode == 0, r.stderr


def test_a_manifest_number_too_long_to_read_is_named(tmp_path):
    from asr.core.errors import ManifestError
    from asr.data.manifest import read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "u", "audio": "a.wav", "duration": 1' + "0" * 5_000 + ', "text": "a", "speaker": "s"}\n')
    with pytest.raises(ManifestError, match="line 1.*a value JSON readers cannot take"):  # was a ValueError
        read_manifest(path)
    r = asr("convert", str(path), str(tmp_path / "out"), check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr) < 1_000, r.stderr


def test_words_too_long_for_the_g2p_and_bad_lexicon_lines_are_named_briefly(tmp_path):
    from asr.text.lexicon import Lexicon, LexiconError, read_lexicon
    from asr.text.stage import Pronouncer

    with pytest.raises(LexiconError, match=r"1 transcript word\(s\) of more than 64 letters.*100000 letters") as e:
        Pronouncer(Lexicon({"a": [("ah",)]})).lexicon(["a", "x" * 100_000])  # before: 700 MB more, then a guess
    assert len(str(e.value)) < 500
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("seven s eh v ah n\n" + "w" * 10_000_000 + "\nsev\0en s eh v\nthe dh\0\n")
    with pytest.raises(LexiconError) as e:
        read_lexicon(lexicon)
    message = str(e.value)
    assert len(message) < 1_000 and "(10000000 characters) has no pronunciation" in message, message[:300]
    assert "line 3: a NUL character" in message and "line 4: a NUL character" in message
