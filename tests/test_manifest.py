import dataclasses
import json

import pytest
from helpers import tone, write_wav

from asr.core.errors import ManifestError, TokenizerError
from asr.data.manifest import (
    Utterance,
    check,
    load_data,
    read_kaldi_dir,
    read_manifest,
    validate,
    write_kaldi_dir,
    write_manifest,
)
from asr.text.tokenizer import CharTokenizer


@pytest.fixture
def utts(tmp_path):
    a = write_wav(tmp_path / "a b.wav", tone(1.0, 8_000), 8_000)  # a space in the path
    b = write_wav(tmp_path / "b.wav", tone(2.0, 8_000), 8_000)
    return [
        Utterance("spk1-u1", str(a), 1.0, "one two", "spk1"),
        Utterance("spk1-u2", str(b), 0.7, "three", "spk1", offset=0.25),
        Utterance("spk2-u1", str(b), 1.0 / 3.0, "fóur five", "spk2", offset=1.1),
    ]


def test_jsonl_round_trip(tmp_path, utts):
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts
    first = json.loads((tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "offset" not in first  # optional field omitted when unset


def test_kaldi_round_trip_with_segments(tmp_path, utts):
    write_kaldi_dir(tmp_path / "kaldi", utts)
    assert (tmp_path / "kaldi" / "segments").is_file()
    assert read_kaldi_dir(tmp_path / "kaldi") == sorted(utts, key=lambda u: u.id)
    assert load_data(tmp_path / "kaldi") == sorted(utts, key=lambda u: u.id)


def test_kaldi_round_trip_whole_files(tmp_path, utts):
    whole = [u for u in utts if u.offset is None]
    write_kaldi_dir(tmp_path / "k", whole)
    assert not (tmp_path / "k" / "segments").exists()
    assert (tmp_path / "k" / "spk2utt").read_text() == "spk1 spk1-u1\n"
    assert read_kaldi_dir(tmp_path / "k") == whole


def test_groups_round_trip_through_jsonl_and_kaldi_and_bad_ones_are_named(tmp_path, utts):
    from asr.data.manifest import utterance_groups

    grouped = [dataclasses.replace(u, groups=(("age", "adult"), ("gender", "m"))) for u in utts[:1]] + utts[1:]
    write_manifest(tmp_path / "m.jsonl", grouped)
    assert read_manifest(tmp_path / "m.jsonl") == grouped
    assert '"groups": {"age": "adult", "gender": "m"}' in (tmp_path / "m.jsonl").read_text()
    groups = utterance_groups(grouped)
    assert groups["gender"][utts[0].id] == "m" and set(groups) == {"age", "gender"}
    assert all(groups["age"][u.id] == "unknown" for u in utts[1:])  # an utterance without the group
    write_kaldi_dir(tmp_path / "kaldi", grouped)  # Kaldi keeps the gender (spk2gender) only
    back = {u.id: dict(u.groups) for u in read_kaldi_dir(tmp_path / "kaldi")}
    assert back[utts[0].id] == {"gender": "m"} and (tmp_path / "kaldi" / "spk2gender").is_file()
    bad = utts[0].to_dict() | {"groups": {"age": 7}}
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ManifestError, match="groups must be an object of non-empty strings"):
        read_manifest(tmp_path / "bad.jsonl")


def test_kaldi_import_without_utt2dur_reads_header(tmp_path):
    wav = write_wav(tmp_path / "x.wav", tone(0.5, 8_000), 8_000)
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"u1 {wav}\n")
    (d / "text").write_text("u1 hello world\n")
    (d / "utt2spk").write_text("u1 s1\n")
    assert read_kaldi_dir(d) == [Utterance("u1", str(wav), 0.5, "hello world", "s1")]


def test_kaldi_import_reports_every_problem(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("u1 sox x.flac -t wav - |\nu2 /x/u2.wav\n")
    (d / "text").write_text("u1 a\nu2 b\nu3 c\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\nu4 s\n")
    with pytest.raises(ManifestError) as e:
        read_kaldi_dir(d)
    ids = [uid for uid, _ in e.value.problems]
    assert ids == ["u1", "u3", "u3", "u4"]
    assert "command pipe" in str(e.value)


def test_validation_reports_every_bad_entry(tmp_path, utts):
    bad = utts + [
        Utterance("spk1-u1", utts[0].audio, 1.0, "dup", "spk1"),
        Utterance("gone", str(tmp_path / "missing.wav"), 1.0, "one", "spk3"),
        Utterance("silent", utts[0].audio, 1.0, "  ", "spk3"),
        Utterance("odd", utts[0].audio, 1.0, "one #2", "spk3"),
    ]
    alphabet = set("abcdefghijklmnopqrstuvwxyzó")
    problems = validate(bad, alphabet=alphabet)
    assert sorted(uid for uid, _ in problems) == ["gone", "odd", "silent", "spk1-u1"]
    reasons = dict(problems)
    assert "duplicate" in reasons["spk1-u1"]
    assert "does not exist" in reasons["gone"]
    assert "empty text" in reasons["silent"]
    assert "['#', '2']" in reasons["odd"]
    with pytest.raises(ManifestError, match="4 bad entries"):
        check(bad, "test", alphabet=alphabet)


def test_bad_jsonl_lines_are_all_reported(tmp_path, utts):
    p = tmp_path / "m.jsonl"
    good = json.dumps(utts[0].to_dict())
    p.write_text(f'{good}\nnot json\n{{"id": "x"}}\n{good[:-1]}, "colour": 1}}\n')
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    text = str(e.value)
    assert "line 2" in text and "line 3 (x)" in text and "missing field" in text and "colour" in text


def test_a_kaldi_text_file_given_as_a_manifest_is_named_as_such_once(tmp_path):
    p = tmp_path / "text"
    p.write_text("u1 hello world\nu2 foo\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    assert len(e.value.problems) == 1
    assert "not a JSON Lines manifest" in str(e.value) and "Kaldi data directory" in str(e.value)


def test_tokenizer_round_trip_and_unknown_chars():
    tok = CharTokenizer.from_texts(["one two", "three"])
    assert tok.units[:2] == ["<blk>", "|"]
    ids = tok.encode("two  one ")
    assert tok.decode(ids) == "two one"
    assert CharTokenizer.from_dict(tok.to_dict()).units == tok.units
    with pytest.raises(TokenizerError, match=r"\['x', '!'\]"):
        tok.encode("onex!")
    assert tok.unknown_chars("zero") == ["z"]
