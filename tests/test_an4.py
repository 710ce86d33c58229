"""AN4 preparation on small trees in CMU's exact layout (real speech from the shared speechocean762
copy, written as headerless 16 kHz big-endian .raw files or NIST SPHERE .sph), and the download path
against a server on 127.0.0.1, including a download cut off mid-body."""

import http.server
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import asr

from asr import corpora
from asr.core.errors import AudioError, CorpusError, ManifestError
from asr.core.textfiles import read_kaldi_table
from asr.corpora import an4
from asr.data.audio import load_audio, read_info
from asr.data.manifest import read_manifest

TRAIN_SPEAKERS = ("fash", "fbbh", "mblw", "mcen", "fcjf", "mcsc")
TEST_SPEAKERS = ("fcaw",)


def _build(so762_root: Path, dst: Path, suffix: str = ".raw", test: bool = True) -> dict:
    """an4/wav/{an4_clstk,an4test_clstk}/<spk>/<prompt>-<spk>-b<suffix> + etc/ (``test=False``: the training split
    alone, as the shared copy holds it).

    Returns id -> (split, text, seconds, spk)."""
    text = read_kaldi_table(so762_root / "train" / "text")
    wav = read_kaldi_table(so762_root / "train" / "wav.scp")
    sources = iter(sorted(wav))
    root, made = dst / "an4", {}
    (root / "etc").mkdir(parents=True)
    splits = (("train", "an4_clstk", TRAIN_SPEAKERS), ("test", "an4test_clstk", TEST_SPEAKERS))
    for split, folder, speakers in splits[: 2 if test else 1]:
        fileids, lines = [], []
        for spk in speakers:
            (root / "wav" / folder / spk).mkdir(parents=True)
            for prompt in ("an251", "cen3"):
                src = next(sources)
                uid, fileid = f"{prompt}-{spk}-b", f"{folder}/{spk}/{prompt}-{spk}-b"
                data, rate = sf.read(str(so762_root / wav[src]), dtype="int16")
                assert rate == an4.SAMPLE_RATE
                if suffix == ".raw":  # the Sphinx format: no header, 16-bit big-endian
                    data.astype(">i2").tofile(root / "wav" / f"{fileid}.raw")
                elif suffix == ".flac":  # the shared copy: the raw samples, lossless
                    sf.write(str(root / "wav" / f"{fileid}.flac"), data, rate, format="FLAC", subtype="PCM_16")
                else:
                    sf.write(str(root / "wav" / f"{fileid}.sph"), data, rate, format="NIST", subtype="PCM_16")
                words = text[src].upper()
                fileids.append(fileid)
                lines.append(f"<s> {words} </s> ({uid})")
                made[uid] = (split, words.lower(), len(data) / rate, spk)
        (root / "etc" / f"an4_{split}.fileids").write_text("\n".join(fileids) + "\n")
        (root / "etc" / f"an4_{split}.transcription").write_text("\n".join(lines) + "\n")
    return made


@pytest.mark.parametrize("suffix", [".raw", ".sph"])
def test_prepare_an_upstream_tree_through_the_recipe(so762_root, tmp_path, suffix):
    made = _build(so762_root, tmp_path / "corpora", suffix)
    asr(
        "run",
        "an4",
        "--work-dir",
        str(tmp_path / "w"),
        "--corpus-dir",
        str(tmp_path / "corpora"),
        "--set",
        "prepare.dev_speakers=2",
        "--set",
        "prepare.pool=",  # the upstream tree alone (the recipe pools synthetic voices: tests/test_pool.py)
        "--stop-stage",
        "prepare",
    )
    sets = {name: read_manifest(tmp_path / "w" / "prepare" / f"{name}.jsonl") for name in ("train", "dev", "test")}
    assert sorted(u.id for s in sets.values() for u in s) == sorted(made)
    spk = {name: {u.speaker for u in utts} for name, utts in sets.items()}
    assert spk["test"] == set(TEST_SPEAKERS) and spk["train"] | spk["dev"] == set(TRAIN_SPEAKERS)
    assert len(spk["dev"]) == 2 and not spk["dev"] & spk["train"]
    assert {s[0] for s in spk["dev"]} == {"f", "m"}  # a woman and a man
    for name, utts in sets.items():
        for u in utts:
            split, text, seconds, speaker = made[u.id]
            assert (split == "test") == (name == "test") and u.speaker == speaker
            assert u.text == text and "<s>" not in u.text and u.text == u.text.lower()
            assert u.duration == pytest.approx(seconds, abs=1e-3) and u.audio.endswith(suffix)


def test_the_shared_flac_copy_of_the_training_split_gets_its_own_test(so762_root, tmp_path, monkeypatch):
    """The shared copy: FLAC files in the upstream layout, no official test. Dev and devtest are carved from the
    training speakers, disjoint, women and men in each; with the official test there is no devtest by default."""
    made = _build(so762_root, tmp_path / "corpora", ".flac", test=False)
    root = tmp_path / "corpora" / "an4"
    counts = an4.prepare(root, tmp_path / "p", an4.An4Config(dev_speakers=2, devtest_speakers=2))
    assert set(counts) == {"train", "dev", "devtest"}  # no test.jsonl: the copy has none
    sets = {name: read_manifest(tmp_path / "p" / f"{name}.jsonl") for name in counts}
    spk = {name: {u.speaker for u in utts} for name, utts in sets.items()}
    assert len(spk["dev"]) == len(spk["devtest"]) == 2 and len(spk["train"]) == len(TRAIN_SPEAKERS) - 4
    assert not (spk["dev"] & spk["devtest"] or spk["dev"] & spk["train"] or spk["devtest"] & spk["train"])
    assert {s[0] for s in spk["devtest"]} == {"f", "m"}
    assert sorted(u.id for s in sets.values() for u in s) == sorted(made)
    assert all(
        u.audio.endswith(".flac") and u.duration == pytest.approx(made[u.id][2], abs=1e-3)
        for s in sets.values()
        for u in s
    )
    # -1 (the default): devtest speakers (8 of AN4's 74; 2 of these 6) only when the copy lacks the official test
    monkeypatch.setattr(an4, "DEFAULT_DEVTEST_SPEAKERS", 2)
    assert an4.prepare(root, tmp_path / "p2", an4.An4Config(dev_speakers=2))["devtest"]["speakers"] == 2
    with pytest.raises(CorpusError, match="nothing would be scored"):
        an4.prepare(root, tmp_path / "p3", an4.An4Config(dev_speakers=2, devtest_speakers=0))
    with pytest.raises(CorpusError, match="leave none of the 6 training speakers"):
        an4.prepare(root, tmp_path / "p4", an4.An4Config(dev_speakers=3, devtest_speakers=3))
    full = _build(so762_root, tmp_path / "full", ".flac")
    assert set(an4.prepare(tmp_path / "full" / "an4", tmp_path / "p5", an4.An4Config(dev_speakers=2))) == {
        "train",
        "dev",
        "test",
    }
    assert len(full) == 2 * (len(TRAIN_SPEAKERS) + len(TEST_SPEAKERS))


def test_raw_audio_reads_as_big_endian_16khz(so762_root, tmp_path):
    _build(so762_root, tmp_path)
    raw = next((tmp_path / "an4" / "wav").rglob("*.raw"))
    samples = np.fromfile(raw, dtype=">i2")
    info = read_info(raw)
    assert (info.sample_rate, info.frames, info.channels) == (16_000, len(samples), 1)
    np.testing.assert_allclose(load_audio(raw), samples / 32768.0, atol=1e-6)
    odd = tmp_path / "odd.raw"
    odd.write_bytes(raw.read_bytes()[:1001])
    with pytest.raises(AudioError, match="odd.raw.*whole 16-bit samples"):
        read_info(odd)


def test_problems_are_named_by_file_and_line(so762_root, tmp_path):
    _build(so762_root, tmp_path)
    etc = tmp_path / "an4" / "etc"
    lines = (etc / "an4_train.transcription").read_text().splitlines()
    lines[1] = "<s> NO ID HERE </s>"
    lines.append("<s> EXTRA </s> (an9-fash-b)")
    (etc / "an4_train.transcription").write_text("\n".join(lines) + "\n")
    next((tmp_path / "an4" / "wav" / "an4_clstk" / "mcen").glob("cen3-*")).unlink()
    with pytest.raises(ManifestError) as e:
        an4.read_split(tmp_path / "an4", "train")
    msg = str(e.value)
    assert "an4_train.transcription:2: expected '<s> TEXT </s> (utterance-id)'" in msg
    assert "an4_train.fileids:2: cen3-fash-b has no line in an4_train.transcription" in msg
    assert "an4_train.fileids:8: no audio wav/an4_clstk/mcen/cen3-mcen-b" in msg
    assert "an4_train.transcription:13: an9-fash-b is not in an4_train.fileids" in msg
    with pytest.raises(CorpusError, match="no AN4 under"):
        corpora.locate(an4.source(), tmp_path / "an4" / "wav")
    with pytest.raises(ValueError, match="dev_speakers must be >= 1"):
        an4.An4Config(dev_speakers=0)


class _CutOnce(http.server.SimpleHTTPRequestHandler):
    """Serves files, but the first request for each is cut off after half its body (the
    Content-Length announces all of it), as a dropped connection does."""

    cut: set = set()

    def copyfile(self, source, outputfile):
        if self.path in self.cut:
            return super().copyfile(source, outputfile)
        self.cut.add(self.path)
        data = source.read()
        outputfile.write(data[: len(data) // 2])
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_download_cut_off_then_restarted(so762_root, tmp_path, monkeypatch):
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    _build(so762_root, tmp_path / "tree")
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / an4.ARCHIVE_NAME, "w:gz") as tar:  # as CMU's: an4/ at the top
        tar.add(tmp_path / "tree" / "an4", arcname="an4")
    size = (served / an4.ARCHIVE_NAME).stat().st_size
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_CutOnce, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{an4.ARCHIVE_NAME}"
        dl = tmp_path / "dl"
        with pytest.raises(CorpusError, match="cannot download .*cut off after .* bytes.*run again to restart it"):
            corpora.locate(an4.source(url, size), None, dl)
        assert not list(dl.iterdir())  # nothing half-written left behind
        root = corpora.locate(an4.source(url, size), None, dl)  # the second try restarts and completes
        assert len(an4.read_split(root, "test")) == 2
        assert sorted(p.name for p in dl.iterdir()) == ["an4_raw.bigendian", an4.ARCHIVE_NAME]
        with pytest.raises(CorpusError, match="a complete copy has at least"):
            corpora.locate(an4.source(url, size + 1), None, tmp_path / "dl2")
        assert not (tmp_path / "dl2" / an4.ARCHIVE_NAME).exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
