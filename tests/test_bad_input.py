"""Bad input a new or hostile user gives: a clear error naming the file or utterance, never a
traceback, and the rest of a batch still done. Each case here ended in a traceback or a wrong
number before."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tone, write_wav

from asr.core.config import to_dict
from asr.core.errors import AsrError, AudioError, ManifestError
from asr.core.textfiles import read_text
from asr.data.manifest import Utterance, read_kaldi_dir, read_manifest, write_manifest
from asr.features.frontend import Cmvn, FeatureConfig
from asr.model.config import ModelConfig
from asr.model.network import AcousticModel, checkpoint_dict
from asr.recognize.recognizer import load_model
from asr.text.tokenizer import CharTokenizer

REPO = Path(__file__).resolve().parent.parent
FEATS = FeatureConfig(sample_rate=8_000)
TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz")


def _ckpt() -> dict:
    torch.manual_seed(0)
    model = AcousticModel(FEATS.dim, len(TOK), ModelConfig(num_layers=1, hidden=8, dropout=0.0))
    cmvn = Cmvn("utterance", np.zeros(FEATS.dim), np.ones(FEATS.dim))
    return checkpoint_dict(model, TOK.to_dict(), to_dict(FEATS), cmvn.to_dict())


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(_ckpt(), path)
    return path


def asr(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asr", *args], cwd=REPO, capture_output=True, **kw)


def _no_traceback(r) -> None:
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
    assert "Traceback" not in err, err


# --- audio files --------------------------------------------------------------------------------------


def test_transcribe_a_non_utf8_file_name_among_others(model_file, tmp_path):
    good = write_wav(tmp_path / "good.wav", tone(0.5, 8_000), 8_000)
    odd = os.fsencode(tmp_path) + b"/caf\xe9.wav"  # Latin-1 bytes: not UTF-8
    with open(odd, "wb") as f:
        f.write(good.read_bytes())
    folder = tmp_path / "a_folder"
    folder.mkdir()
    r = asr("transcribe", str(model_file), os.fsencode(good), odd, os.fsencode(folder), os.fsencode(good))
    _no_traceback(r)
    assert r.returncode == 1  # the folder failed, the rest were transcribed
    lines = r.stdout.split(b"\n")[:-1]
    assert len(lines) == 3 and lines[1].startswith(odd + b"\t")  # the name's own bytes come back
    assert b"a_folder: a folder without audio files" in r.stderr  # a folder's audio files are inputs
    js = asr("transcribe", str(model_file), odd, "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["path"].endswith("caf\\xe9.wav")


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("chunk_seconds", 0.0, "chunk_seconds must be a positive number of seconds"),
        ("chunk_seconds", float("nan"), "chunk_seconds must be a positive number of seconds"),
        ("lm_weight", float("nan"), "must be finite numbers"),
        ("word_score", float("inf"), "must be finite numbers"),
        ("beam_threshold", float("nan"), "beam_threshold > 0"),
    ],
)
def test_nonsense_transcription_settings_are_refused_not_decoded_to_nothing(model_file, option, value, message):
    # before: chunk_seconds 0 and an LM weight of nan transcribed every file as empty text, silently
    with pytest.raises(AsrError, match=message):
        load_model(model_file, method="beam", **{option: value})


def test_a_missing_lm_is_named_as_such(model_file, tmp_path):
    for method in ("lexicon_lm", "beam_lm"):
        r = asr(
            "transcribe",
            str(model_file),
            "--method",
            method,
            "--lm",
            str(tmp_path / "nowhere"),
            str(write_wav(tmp_path / "a.wav", tone(0.5, 8_000), 8_000)),
            text=True,
        )
        _no_traceback(r)
        assert r.returncode != 0 and f"{tmp_path / 'nowhere'}: no such ARPA file" in r.stderr, r.stderr


def test_an_output_path_the_system_refuses_is_named_without_a_traceback(model_file, tmp_path):
    (tmp_path / "a_file").write_text("")
    r = asr("export", str(model_file), "--onnx", str(tmp_path / "a_file" / "model.onnx"), text=True)
    _no_traceback(r)
    assert r.returncode == 2 and f"error: {tmp_path / 'a_file'}" in r.stderr, r.stderr


def test_a_directory_or_fifo_given_as_audio_says_what_it_is(tmp_path):
    from asr.data.audio import load_audio

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="is a FIFO"):
        load_audio(fifo)  # must not block opening it
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


# --- model files --------------------------------------------------------------------------------------


def _damaged(tmp_path, name, change) -> Path:
    ckpt = _ckpt()
    change(ckpt)
    path = tmp_path / f"{name}.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("config_mismatch", lambda c: c["model"].update(hidden=16), "weights do not match its model config"),
        ("no_cmvn", lambda c: c.pop("cmvn"), r"lacks \['cmvn'\]"),
        ("bad_rate", lambda c: c["features"].update(sample_rate=0), "bad feature config.*sample_rate 0"),
        ("short_cmvn", lambda c: c["cmvn"].update(mean=[0.0] * 3), "CMVN statistics have"),
        ("bad_units", lambda c: c["tokenizer"].update(units="abc"), r"lacks \['tokenizer units'\]"),
        # the network's config is checked field by field when the file is read, not when a stream first runs
        ("fractional_chunk", lambda c: c["model"].update(chunk=1.5), r"model file's model\.chunk is 1\.5"),
        ("text_layers", lambda c: c["model"].update(num_layers="2"), r"model file's model\.num_layers is '2'"),
        ("bool_hidden", lambda c: c["model"].update(hidden=True), r"model file's model\.hidden is True"),
        ("bad_context", lambda c: c["model"].update(right_context=2), "model config is not valid.*right_context"),
    ],
)
def test_a_damaged_model_file_is_named_with_what_is_wrong(tmp_path, name, change, message):
    path = _damaged(tmp_path, name, change)
    with pytest.raises(AsrError, match=message) as e:
        load_model(path)
    assert str(path) in str(e.value)
    r = asr("transcribe", str(path), str(write_wav(tmp_path / "a.wav", tone(0.3, 8_000), 8_000)), text=True)
    _no_traceback(r)
    assert r.returncode == 2 and str(path) in r.stderr


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"format": 1, "x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(AsrError, match="refused without running it"):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


# --- text files ----------------------------------------------------------------------------------------


def test_non_utf8_listings_are_named_with_the_line(tmp_path, model_file):
    wav = write_wav(tmp_path / "a.wav", tone(0.3, 8_000), 8_000)
    good = json.dumps({"id": "u1", "audio": str(wav), "duration": 0.3, "text": "a", "speaker": "s"})
    (tmp_path / "m.jsonl").write_bytes(good.encode() + b"\n" + good.replace("u1", "u2").encode()[:-3] + b'\xe9"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl: 1 bad entry:\n  line 2: not UTF-8 text \(byte 0xe9"):
        read_manifest(tmp_path / "m.jsonl")
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"u1 {wav}\n")
    (kaldi / "utt2spk").write_text("u1 s\n")
    (kaldi / "text").write_bytes(b"u1 caf\xe9\n")
    with pytest.raises(ManifestError, match=r"text: 1 bad entry:\n  line 1: not UTF-8"):
        read_kaldi_dir(kaldi)
    (tmp_path / "ref.txt").write_text("u1 one\n")
    (tmp_path / "hyp.txt").write_bytes(b"u1 \xff\xfe\n")
    r = asr("wer", str(tmp_path / "ref.txt"), str(tmp_path / "hyp.txt"), text=True)
    _no_traceback(r)
    assert r.returncode == 2 and "hyp.txt" in r.stderr and "line 1: not UTF-8" in r.stderr
    r = asr("evaluate", str(model_file), str(tmp_path / "m.jsonl"), text=True)
    _no_traceback(r)
    assert r.returncode == 2 and "line 2: not UTF-8" in r.stderr


def test_wer_accepts_a_tab_after_the_id(tmp_path):
    (tmp_path / "ref").write_text("u1\tone two three four five six\nu2 seven\n")
    (tmp_path / "hyp").write_text("u1 one two three four five six\nu2\tseven\n")
    assert read_text(tmp_path / "ref") == {"u1": "one two three four five six", "u2": "seven"}
    r = asr("wer", str(tmp_path / "ref"), str(tmp_path / "hyp"), text=True)
    assert r.stdout.startswith("%WER 0.00 [ 0 / 7,")


# --- asr evaluate ---------------------------------------------------------------------------------------


def test_evaluate_out_naming_a_file_fails_before_decoding(model_file, tmp_path):
    (tmp_path / "report").write_text("precious")
    r = asr(
        "evaluate", str(model_file), str(tmp_path / "no_such_data.jsonl"), "--out", str(tmp_path / "report"), text=True
    )
    _no_traceback(r)
    assert r.returncode == 2 and "--out" in r.stderr and "is a file" in r.stderr
    assert (tmp_path / "report").read_text() == "precious"


def test_evaluate_scores_the_readable_files_and_lists_the_others(model_file, tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone(0.5, 8_000), 8_000)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    utts = [
        Utterance("u1", str(wav), 0.5, "abc", "s1"),
        Utterance("u2", str(junk), 0.5, "abc", "s1"),
        Utterance("u3", str(tmp_path / "gone.wav"), 0.5, "abc", "s2"),
        Utterance("u4", str(wav), 0.5, "ab9 c", "s2"),
    ]  # '9' is not one of the model's units
    write_manifest(tmp_path / "set.jsonl", utts)
    r = asr("evaluate", str(model_file), str(tmp_path / "set.jsonl"), "--out", str(tmp_path / "rep"), text=True)
    _no_traceback(r)
    assert r.returncode == 1 and r.stdout.startswith("%WER ")
    assert "u2:" in r.stderr and "not a readable audio file" in r.stderr and "u3:" in r.stderr
    assert "2 of 4 utterances could not be read and were left out" in r.stderr
    assert "1 reference word(s) in 1 utterance(s) hold characters this model cannot write" in r.stderr
    assert "u4: 'ab9'" in r.stderr
    assert sorted(read_text(tmp_path / "rep" / "hyp.txt")) == ["u1", "u4"]


@pytest.mark.parametrize("command", ["transcribe", "evaluate"])
def test_a_thread_count_that_is_no_count_is_refused(command, tmp_path):
    r = asr(command, "m.pt", str(tmp_path / "a.wav"), "--threads", "-2", text=True)
    assert r.returncode == 2 and "'-2' is no thread count" in r.stderr and "Traceback" not in r.stderr, r.stderr
