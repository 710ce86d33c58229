"""LibriSpeech preparation on small trees in the exact upstream layout (real speech from the
shared speechocean762 copy, written as 16 kHz FLAC under LibriSpeech's names), and the download
path against a server on 127.0.0.1."""

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import soundfile as sf
from helpers import asr

from asr import corpora
from asr.core.errors import CorpusError, ManifestError
from asr.core.textfiles import read_kaldi_table
from asr.corpora import librispeech as ls
from asr.data.manifest import read_manifest

# subset -> {speaker: chapter}; 2 utterances per chapter
TREE = {
    "train-clean-100": {"19": "198", "26": "496"},
    "dev-clean": {"84": "121123"},
    "test-clean": {"121": "127105"},
    "test-other": {"1688": "142285"},
}


def _build(so762_root: Path, dst: Path) -> dict:
    """LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac + .trans.txt.

    Returns id -> (subset, text, seconds)."""
    text = read_kaldi_table(so762_root / "train" / "text")
    wav = read_kaldi_table(so762_root / "train" / "wav.scp")
    sources = iter(sorted(wav))
    made = {}
    for subset, chapters in TREE.items():
        for spk, chapter in chapters.items():
            d = dst / "LibriSpeech" / subset / spk / chapter
            d.mkdir(parents=True)
            lines = []
            for n in range(2):
                src = next(sources)
                uid = f"{spk}-{chapter}-{n:04d}"
                data, rate = sf.read(str(so762_root / wav[src]), dtype="int16")
                sf.write(str(d / f"{uid}.flac"), data, rate, subtype="PCM_16", format="FLAC")
                words = text[src].upper().split()
                words[0] = words[0] + "'S"  # LibriSpeech keeps apostrophes, upper case
                lines.append(f"{uid} {' '.join(words)}")
                made[uid] = (subset, " ".join(words), len(data) / rate, spk)
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    (dst / "LibriSpeech" / "SPEAKERS.TXT").write_text(
        ";ID  |SEX| SUBSET | MINUTES | NAME\n19 | F | train-clean-100 | 25.19 | Kara\n"
    )
    return made


def test_prepare_an_upstream_tree_through_the_recipe(so762_root, tmp_path):
    made = _build(so762_root, tmp_path / "corpora")
    asr(
        "run",
        "librispeech",
        "--work-dir",
        str(tmp_path / "w"),
        "--corpus-dir",
        str(tmp_path / "corpora"),
        "--stop-stage",
        "prepare",
    )
    prep = tmp_path / "w" / "prepare"
    sets = {p.relative_to(prep).with_suffix("").as_posix(): read_manifest(p) for p in prep.rglob("*.jsonl")}
    assert sorted(sets) == ["dev/dev-clean", "test/test-clean", "test/test-other", "train/train-clean-100"]
    for name, utts in sets.items():
        subset = name.split("/")[1]
        assert sorted(u.id for u in utts) == sorted(k for k, v in made.items() if v[0] == subset)
        for u in utts:
            _, text, seconds, spk = made[u.id]
            assert u.speaker == spk and u.duration == pytest.approx(seconds, abs=1e-3)
            assert u.text == text.lower() and "'s" in u.text  # lower case, apostrophes kept
            assert Path(u.audio).is_file()
    summary = json.loads((tmp_path / "w" / "prepare" / "record.json").read_text())
    assert "train/train-clean-100" in json.dumps(summary)


def test_problems_in_a_tree_are_named_by_file(so762_root, tmp_path):
    _build(so762_root, tmp_path)
    chapter = tmp_path / "LibriSpeech" / "train-clean-100" / "19" / "198"
    (chapter / "19-198-0001.flac").unlink()
    (chapter / "19-198-0007.flac").write_bytes((chapter / "19-198-0000.flac").read_bytes())
    with pytest.raises(ManifestError) as e:
        ls.read_subset(tmp_path / "LibriSpeech" / "train-clean-100")
    msg = str(e.value)
    assert "19-198.trans.txt:2: no audio file 19-198-0001.flac" in msg
    assert "19-198-0007.flac: audio without a line in the transcript" in msg
    with pytest.raises(CorpusError, match="no LibriSpeech dev-other under"):
        corpora.locate(ls.source("dev-other"), tmp_path)


def test_bad_subset_settings_are_refused():
    with pytest.raises(ValueError, match="unknown LibriSpeech subset"):
        ls.LibriSpeechConfig(train=("train-clean-1000",))
    with pytest.raises(ValueError, match="more than one role"):
        ls.LibriSpeechConfig(dev=("dev-clean",), test=("dev-clean",))


def test_download_verify_extract(so762_root, tmp_path, file_server, monkeypatch):
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    _build(so762_root, tmp_path / "tree")
    archive = tmp_path / "served" / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # as OpenSLR's: LibriSpeech/<subset>/... at the top
        tar.add(tmp_path / "tree" / "LibriSpeech" / "dev-clean", arcname="LibriSpeech/dev-clean")
    monkeypatch.setitem(ls.SHA256, "dev-clean", hashlib.sha256(archive.read_bytes()).hexdigest())
    d = corpora.locate(ls.source("dev-clean", f"{file_server}/dev-clean.tar.gz"), None, tmp_path / "dl")
    assert [u.id for u in ls.read_subset(d)] == ["84-121123-0000", "84-121123-0001"]
    monkeypatch.setitem(ls.SHA256, "test-clean", "0" * 64)
    with pytest.raises(CorpusError, match="checksum mismatch"):
        corpora.locate(ls.source("test-clean", f"{file_server}/dev-clean.tar.gz"), None, tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "test-clean").exists()
