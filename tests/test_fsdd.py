import hashlib
import io
import json
import tarfile
from collections import Counter

import pytest
import soundfile as sf

from asr import corpora
from asr.core.download import download, extract_tar
from asr.core.errors import CorpusError
from asr.corpora import fsdd
from asr.data.manifest import read_manifest


@pytest.fixture(scope="module")
def prepared(fsdd_recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdd_prep")
    cfg = fsdd.FsddConfig(connected_train=30, connected_dev=10, connected_test=10, seed=3)
    counts = fsdd.prepare(fsdd_recordings, out, cfg)
    return out, counts, cfg


def test_official_split(prepared, fsdd_recordings, fsdd_counts):
    out, counts, _ = prepared
    splits = {s: read_manifest(out / "isolated" / f"{s}.jsonl") for s in fsdd.SPLITS}
    n_files = len(list(fsdd_recordings.glob("*.wav")))
    assert n_files == fsdd_counts["files"] and n_files >= 2000  # 4 speakers x 500 in the shared copy
    assert sum(len(v) for v in splits.values()) == n_files
    ids = {s: {u.id for u in v} for s, v in splits.items()}
    assert not (ids["train"] & ids["dev"]) and not (ids["train"] & ids["test"]) and not (ids["dev"] & ids["test"])
    n_spk = len(fsdd_counts["speakers"])
    assert len(splits["test"]) == len(splits["dev"]) == 50 * n_spk and len(splits["train"]) == 400 * n_spk
    assert all(int(u.id.rsplit("_", 1)[1]) <= 4 for u in splits["test"])
    u = splits["test"][0]
    assert u.text == fsdd.DIGIT_WORDS[int(u.id[0])] and u.speaker == u.id.split("_")[1]
    assert 0.1 < u.duration < 3.0


def test_speaker_heldout_splits(prepared, fsdd_counts):
    out, counts, _ = prepared
    folds = sorted(p.name for p in (out / "loso").iterdir())
    assert folds == fsdd_counts["speakers"]
    for spk in folds:
        s = {k: read_manifest(out / "loso" / spk / f"{k}.jsonl") for k in fsdd.SPLITS}
        assert {u.speaker for u in s["test"]} == {spk}
        assert spk not in {u.speaker for u in s["train"] + s["dev"]}
        assert len(s["test"]) == fsdd_counts["per_speaker"][spk]
        assert len(s["train"]) + len(s["dev"]) == fsdd_counts["files"] - fsdd_counts["per_speaker"][spk]
        ids = [u.id for v in s.values() for u in v]
        assert len(ids) == len(set(ids))


def test_connected_digits(prepared):
    out, counts, cfg = prepared
    iso_split = {u.id: s for s in fsdd.SPLITS for u in read_manifest(out / "isolated" / f"{s}.jsonl")}
    for split in fsdd.SPLITS:
        utts = read_manifest(out / "connected" / f"{split}.jsonl")
        layout = [json.loads(line) for line in (out / "connected" / f"{split}.layout.jsonl").read_text().splitlines()]
        assert len(utts) == counts[f"connected/{split}"] == len(layout)
        for u, lay in zip(utts, layout):
            info = sf.info(u.audio)
            assert info.samplerate == cfg.sample_rate
            # length = parts + pauses, to the sample
            assert info.frames == sum(lay["part_samples"]) + sum(lay["pause_samples"])
            assert len(lay["pause_samples"]) == len(lay["parts"]) + 1
            assert all(cfg.min_pause * 8000 - 1 <= p <= cfg.max_pause * 8000 + 1 for p in lay["pause_samples"])
            assert 1 <= len(lay["parts"]) <= 7
            words = u.text.split()
            assert words == [fsdd.DIGIT_WORDS[int(p[0])] for p in lay["parts"]]
            assert {p.split("_")[1] for p in lay["parts"]} == {u.speaker}
            assert {iso_split[p] for p in lay["parts"]} == {split}  # test audio never leaks into train
    lengths = Counter(len(u.text.split()) for u in read_manifest(out / "connected" / "train.jsonl"))
    assert len(lengths) >= 4  # a spread of sequence lengths, not one


def test_connected_is_reproducible(fsdd_recordings, tmp_path):
    recs = [r for r in fsdd.scan(fsdd_recordings) if fsdd.split_of(r) == "dev"]
    cfg = fsdd.FsddConfig(seed=5)
    a, la = fsdd.make_connected(recs, 5, "dev", tmp_path / "a", cfg, seed=11)
    b, lb = fsdd.make_connected(recs, 5, "dev", tmp_path / "b", cfg, seed=11)
    assert la == lb and [u.text for u in a] == [u.text for u in b]
    assert (tmp_path / "a/wav/dev" / f"{a[0].id}.wav").read_bytes() == (
        tmp_path / "b/wav/dev" / f"{b[0].id}.wav"
    ).read_bytes()


def test_locate_local_copy(corpora_root, fsdd_recordings, monkeypatch, tmp_path):
    assert corpora.locate(fsdd.source(), corpora_root) == fsdd_recordings
    assert corpora.locate(fsdd.source(), corpora_root / "fsdd") == fsdd_recordings
    monkeypatch.setenv("ASR_CORPORA", str(corpora_root))
    assert corpora.locate(fsdd.source(), None) == fsdd_recordings
    with pytest.raises(CorpusError, match="no FSDD recordings"):
        corpora.locate(fsdd.source(), tmp_path)


def test_bad_file_names_are_reported(tmp_path):
    (tmp_path / "1_alice_0.wav").write_bytes(b"")
    (tmp_path / "alice.wav").write_bytes(b"")
    with pytest.raises(CorpusError, match="alice.wav"):
        fsdd.scan(tmp_path)


# --- download against a server on 127.0.0.1 -----------------------------------------------------


def _fake_archive(fsdd_recordings, tmp_path):
    """A tarball laid out like the upstream release, with a handful of real recordings."""
    path = tmp_path / "served" / fsdd.ARCHIVE_NAME
    path.parent.mkdir(exist_ok=True)
    root = fsdd.ARCHIVE_NAME.removesuffix(".tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for wav in sorted(fsdd_recordings.glob("*_theo_1*.wav"))[:12]:
            tar.add(wav, arcname=f"{root}/recordings/{wav.name}")
    return path


def test_download_verify_extract(fsdd_recordings, tmp_path, file_server, monkeypatch):
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    archive = _fake_archive(fsdd_recordings, tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    url = f"{file_server}/{archive.name}"
    rec = corpora.locate(fsdd.source(url, digest), None, tmp_path / "dl")
    assert len(fsdd.scan(rec)) == 12
    # a second call reuses the unpacked copy without the server
    assert corpora.locate(fsdd.source(f"{file_server}/gone", digest), None, tmp_path / "dl") == rec
    # a wrong checksum leaves nothing behind that could pass for the archive
    with pytest.raises(CorpusError, match="checksum mismatch"):
        download(url, tmp_path / "x" / "a.tar.gz", "0" * 64)
    assert not list((tmp_path / "x").iterdir())
    with pytest.raises(CorpusError, match="cannot download"):
        download(f"{file_server}/missing.tar.gz", tmp_path / "y.tar.gz", digest)


def test_extract_refuses_path_traversal(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(CorpusError, match="cannot safely extract"):
        extract_tar(evil, tmp_path / "out" / "x")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "x").exists()
