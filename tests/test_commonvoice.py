"""Common Voice preparation on a small release tree in the exact upstream layout (real speech from
the shared speechocean762 copy encoded as MP3 clips by libsndfile, the release's TSV files), per-language
normalisation, and the download path against a server on 127.0.0.1."""

import hashlib
import tarfile
from pathlib import Path

import pytest
import soundfile as sf
from helpers import asr

from asr.core.errors import CorpusError, ManifestError
from asr.core.textfiles import read_kaldi_table
from asr.corpora import commonvoice as cv
from asr.data.manifest import read_manifest

COLUMNS = "client_id path sentence_id sentence sentence_domain up_votes down_votes age gender accents variant locale"
HEADER = "\t".join([*COLUMNS.split(), "segment"])
SPEAKERS = {"train": ("a1b2", "c3d4"), "dev": ("e5f6",), "test": ("0789",)}


def _build(so762_root: Path, dst: Path, durations: bool = False) -> dict:
    """cv-corpus-17.0-2024-03-15/en/{clips/*.mp3, train/dev/test/validated.tsv}.

    Returns id -> (split, sentence, seconds, spk)."""
    text = read_kaldi_table(so762_root / "train" / "text")
    wav = read_kaldi_table(so762_root / "train" / "wav.scp")
    sources = iter(sorted(wav))
    root = dst / "cv-corpus-17.0-2024-03-15" / "en"
    (root / "clips").mkdir(parents=True)
    made, every, clip_ms = {}, [], []
    n = 1000
    for split, speakers in SPEAKERS.items():
        rows = []
        for spk in speakers:
            for _ in range(2):
                src, n = next(sources), n + 1
                clip = f"common_voice_en_{n}.mp3"
                data, rate = sf.read(str(so762_root / wav[src]), dtype="float32")
                sf.write(str(root / "clips" / clip), data, rate, format="MP3")
                words = text[src].capitalize().split()
                sentence = (
                    f"\u201c{' '.join(words[:-1])}, {words[-1]}!\u201d Don\u2019t."  # punctuation as users type it
                )
                rows.append(f"{spk * 16}\t{clip}\tsid{n}\t{sentence}\t\t2\t0\t\t\t\t\ten\t")
                made[Path(clip).stem] = (split, sentence, len(data) / rate, spk * 16)
                clip_ms.append(f"{clip}\t{round(len(data) / rate * 1000)}")
        (root / f"{split}.tsv").write_text("\n".join([HEADER, *rows]) + "\n")
        every += rows
    (root / "validated.tsv").write_text("\n".join([HEADER, *every]) + "\n")
    if durations:
        (root / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + "\n".join(clip_ms) + "\n")
    return made


@pytest.mark.parametrize("durations", [False, True], ids=["mp3-headers", "clip_durations"])
def test_prepare_a_release_through_the_recipe(so762_root, tmp_path, durations):
    made = _build(so762_root, tmp_path / "corpora", durations)
    asr(
        "run",
        "commonvoice",
        "--work-dir",
        str(tmp_path / "w"),
        "--corpus-dir",
        str(tmp_path / "corpora"),
        "--stop-stage",
        "prepare",
    )
    for split in cv.SPLITS:
        utts = read_manifest(tmp_path / "w" / "prepare" / f"{split}.jsonl")
        assert sorted(u.id for u in utts) == sorted(k for k, v in made.items() if v[0] == split)
        assert {u.speaker for u in utts} == {s * 16 for s in SPEAKERS[split]}
        for u in utts:
            _, sentence, seconds, spk = made[u.id]
            assert u.speaker == spk and Path(u.audio).name == f"{u.id}.mp3"
            assert u.text == cv.normalize(sentence, "en") and u.text.endswith(" don't")
            assert not set(u.text) - set("abcdefghijklmnopqrstuvwxyz' ")
            # MP3 frames pad the start and end: the header's length is within 0.1 s of the source
            assert u.duration == pytest.approx(seconds, abs=1e-3 if durations else 0.1)


def test_max_train_hours_keeps_the_first_utterances_up_to_the_limit(so762_root, tmp_path):
    made = _build(so762_root, tmp_path / "corpora", durations=True)
    root = cv.locate(cv.CommonVoiceConfig(corpus_dir=str(tmp_path / "corpora")))
    train = sorted((k, v[2]) for k, v in made.items() if v[0] == "train")
    limit = (train[0][1] + train[1][1] / 2) / 3600  # reached inside the second utterance
    counts = cv.prepare(root, tmp_path / "out", cv.CommonVoiceConfig(max_train_hours=limit))
    assert [u.id for u in read_manifest(tmp_path / "out" / "train.jsonl")] == [train[0][0], train[1][0]]
    assert counts["train"]["utterances"] == 2 and counts["dev"]["utterances"] == 2  # dev and test untouched


def test_normalisation_per_language():
    assert cv.normalize("\u201cHello,\u201d she said \u2014 it\u2019s 42 km!", "en") == "hello she said it's 42 km"
    assert cv.normalize("Stra\u00dfe \u00c4RGER \uff21", "de") == "stra\u00dfe \u00e4rger a"  # NFKC folds the wide A
    assert cv.normalize("IRMAK \u0130stanbul", "tr") == "\u0131rmak istanbul"
    assert cv.normalize("\u4f60\u597d\uff0c\u4e16\u754c\u3002", "zh-CN") == "\u4f60\u597d \u4e16\u754c"
    assert cv.normalize("'quoted' l'homme", "fr") == "quoted l'homme"


def test_problems_are_named_by_file_and_line(so762_root, tmp_path):
    _build(so762_root, tmp_path)
    root = tmp_path / "cv-corpus-17.0-2024-03-15" / "en"
    lines = (root / "train.tsv").read_text().splitlines()
    lines[2] = lines[2].replace("common_voice_en_1002.mp3", "common_voice_en_9999.mp3")
    lines[3] = "\t".join(lines[3].split("\t")[:3])
    lines[4] = lines[4].split("\t")[0] + "\t" + lines[4].split("\t")[1] + "\tsid\t?!\t" + "\t" * 8
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as e:
        cv.read_split(root, "train", "en")
    msg = str(e.value)
    assert "train.tsv:3: no clip clips/common_voice_en_9999.mp3" in msg
    assert "train.tsv:4: 3 fields, the header has 13" in msg
    assert "train.tsv:5: common_voice_en_1004.mp3: the sentence '?!' is empty once normalised" in msg
    # a clip that is a link out of the release (before: followed, and read as the corpus's audio)
    outside = tmp_path / "elsewhere.mp3"
    (root / "clips" / "common_voice_en_1001.mp3").rename(outside)
    (root / "clips" / "common_voice_en_1001.mp3").symlink_to(outside)
    with pytest.raises(ManifestError, match="clips/common_voice_en_1001.mp3 links to a file outside the release"):
        cv.read_split(root, "train", "en")
    (root / "dev.tsv").write_text("path\tsentence\n")
    with pytest.raises(ManifestError, match="dev.tsv:1: header lacks column.*client_id"):
        cv.read_split(root, "dev", "en")


def test_no_copy_says_how_to_get_one_and_bad_settings_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    with pytest.raises(CorpusError, match="commonvoice.mozilla.org/datasets.*prepare.url"):
        cv.locate(cv.CommonVoiceConfig(download_dir=str(tmp_path)))
    with pytest.raises(CorpusError, match=r"no Common Voice \(de\) under"):
        cv.locate(cv.CommonVoiceConfig(language="de", corpus_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="needs prepare.sha256"):
        cv.CommonVoiceConfig(url="https://example.org/cv.tar.gz")
    with pytest.raises(ValueError, match="not a Common Voice language code"):
        cv.CommonVoiceConfig(language="../en")


def test_download_verify_extract(so762_root, tmp_path, file_server, monkeypatch):
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    _build(so762_root, tmp_path / "tree")
    archive = tmp_path / "served" / "cv-corpus-17.0-2024-03-15-en.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # as Mozilla's: cv-corpus-<version>/<language>/ at the top
        tar.add(tmp_path / "tree" / "cv-corpus-17.0-2024-03-15", arcname="cv-corpus-17.0-2024-03-15")
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    url = f"{file_server}/{archive.name}"
    bad = cv.CommonVoiceConfig(download_dir=str(tmp_path / "dl"), url=url, sha256="0" * 64)
    with pytest.raises(CorpusError, match="checksum mismatch"):
        cv.locate(bad)
    assert not list((tmp_path / "dl").iterdir())
    root = cv.locate(cv.CommonVoiceConfig(download_dir=str(tmp_path / "dl"), url=url, sha256=good))
    assert root.name == "en" and len(cv.read_split(root, "test", "en")) == 2
