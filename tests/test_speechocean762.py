"""speechocean762 preparation on small trees in the exact upstream layout, built from the shared
copy: `.WAV` (16-bit PCM, as upstream) and `.flac` (as our copy), and the download path against a
server on 127.0.0.1."""

import tarfile
from pathlib import Path

import pytest
import soundfile as sf

from asr import corpora
from asr.core.errors import CorpusError
from asr.core.textfiles import read_kaldi_table
from asr.corpora import speechocean762 as so
from asr.data.manifest import read_manifest
from asr.pipeline import recipe
from asr.text.lexicon import cmudict_lexicon

SPEAKERS_PER_GROUP = 4  # children and adults
UTTS_PER_SPEAKER = 3


def _small_tree(src: Path, dst: Path, ext: str) -> dict:
    """Copy 4 children and 4 adults, 3 utterances each, into dst in the upstream layout."""
    ages = read_kaldi_table(src / "train" / "spk2age")
    spk2utt = read_kaldi_table(src / "train" / "spk2utt")
    text = read_kaldi_table(src / "train" / "text")
    wav = read_kaldi_table(src / "train" / "wav.scp")
    children = sorted(s for s in spk2utt if int(ages[s]) <= so.CHILD_MAX_AGE)[:SPEAKERS_PER_GROUP]
    adults = sorted(s for s in spk2utt if int(ages[s]) > so.CHILD_MAX_AGE)[:SPEAKERS_PER_GROUP]
    rows = {n: [] for n in ("wav.scp", "text", "utt2spk", "spk2age", "spk2gender")}
    picked = {}
    for spk in children + adults:
        rows["spk2age"].append(f"{spk}\t{ages[spk]}")
        rows["spk2gender"].append(f"{spk}\tf")
        for uid in spk2utt[spk].split()[:UTTS_PER_SPEAKER]:
            rel = f"WAVE/SPEAKER{spk}/{uid}.{ext}"
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            data, rate = sf.read(str(src / wav[uid]), dtype="int16")
            sf.write(str(dst / rel), data, rate, subtype="PCM_16", format="WAV" if ext == "WAV" else "FLAC")
            rows["wav.scp"].append(f"{uid}\t{rel}")
            rows["text"].append(f"{uid}\t{text[uid]}")
            rows["utt2spk"].append(f"{uid}\t{spk}")
            picked[uid] = (spk, text[uid], len(data) / rate)
    (dst / "train").mkdir(parents=True)
    for name, lines in rows.items():
        (dst / "train" / name).write_text("\n".join(lines) + "\n")
    return {"children": children, "adults": adults, "utts": picked}


@pytest.mark.parametrize("ext", ["WAV", "flac"])
def test_prepare_an_upstream_tree(so762_root, tmp_path, ext):
    tree = _small_tree(so762_root, tmp_path / "corpus" / "speechocean762", ext)
    root = corpora.locate(so.source(), tmp_path / "corpus")
    cfg = so.So762Config(dev_speakers=2, devtest_speakers=2, seed=1)
    result = so.prepare(root, tmp_path / "out", cfg)
    assert result["counts"] == {"train": 12, "dev": 6, "devtest": 6} and not result["official_test"]
    sets = {s: read_manifest(tmp_path / "out" / f"{s}.jsonl") for s in ("train", "dev", "devtest")}
    speakers = {s: {u.speaker for u in v} for s, v in sets.items()}
    assert not (speakers["train"] & speakers["dev"]) and not (speakers["train"] & speakers["devtest"])
    assert not (speakers["dev"] & speakers["devtest"])
    for s in ("dev", "devtest"):  # one child and one adult each
        assert len(speakers[s] & set(tree["children"])) == 1 and len(speakers[s] & set(tree["adults"])) == 1
    for u in [u for v in sets.values() for u in v]:
        spk, upper, seconds = tree["utts"][u.id]
        assert u.speaker == spk and u.text == upper.lower() and u.duration == pytest.approx(seconds)
        assert u.audio.endswith(f".{ext}") and Path(u.audio).is_file()
        age = "child" if spk in tree["children"] else "adult"  # the report pages' groups
        assert dict(u.groups) == {"age": age, "gender": "f"}
    # the same seed gives the same split
    again = so.prepare(root, tmp_path / "again", cfg)
    assert (tmp_path / "again" / "dev.jsonl").read_text() == (tmp_path / "out" / "dev.jsonl").read_text()
    assert again["counts"] == result["counts"]


def test_text_normalisation():
    assert so.normalize("LET'S GO TO THE RESTROOM") == "let's go to the restroom"
    assert so.normalize("  Kate\u2019s  GOT, some grey!  ") == "kate's got some grey"
    assert so.normalize("'QUOTED' WORDS") == "quoted words"


def test_official_test_is_prepared_when_present(so762_root, tmp_path):
    tree = tmp_path / "corpus" / "speechocean762"
    _small_tree(so762_root, tree, "flac")
    (tree / "test").mkdir()
    for name in ("wav.scp", "text", "utt2spk"):  # a stand-in test split: two train utterances
        lines = (tree / "train" / name).read_text().splitlines()[:2]
        (tree / "test" / name).write_text("\n".join(lines) + "\n")
    result = so.prepare(tree, tmp_path / "out", so.So762Config(dev_speakers=2, devtest_speakers=2))
    assert result["official_test"] and result["counts"]["test"] == 2


def test_download_checked_by_size_then_by_content(so762_root, tmp_path, file_server, monkeypatch):
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    _small_tree(so762_root, tmp_path / "build" / "speechocean762", "WAV")
    archive = tmp_path / "served" / so.ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "speechocean762", arcname="speechocean762")
    size = archive.stat().st_size
    url = f"{file_server}/{so.ARCHIVE_NAME}"
    with pytest.raises(CorpusError, match="a complete copy has at least"):  # a short (cut) download
        corpora.locate(so.source(url, size + 1), None, tmp_path / "dl")
    assert not list((tmp_path / "dl").glob("*.tar.gz*"))  # nothing half-written left
    root = corpora.locate(so.source(url, size), None, tmp_path / "dl")
    assert so.read_split(root, "train")[0][0].audio.endswith(".WAV")
    assert corpora.locate(so.source(f"{file_server}/gone", size), None, tmp_path / "dl") == root  # no second download
    with tarfile.open(tmp_path / "served" / "other.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "speechocean762" / "train", arcname="unrelated/train")
    with pytest.raises(CorpusError, match="holds no speechocean762/train/wav.scp"):
        corpora.locate(so.source(f"{file_server}/other.tar.gz", 1), None, tmp_path / "dl2")


def test_the_decoding_vocabulary_never_comes_from_the_corpus_lexicon_or_held_out_text(so762_root, tmp_path):
    """Upstream's resource/lexicon.txt lists the test split's words: the recipe reads no resource/ file, and its
    lm stage spells the training words (and the extra word list) only."""
    import dataclasses

    from asr.core.context import Stage, StageContext
    from asr.lm import stage as lm
    from asr.text import stage as pronounce

    tree = _small_tree(so762_root, tmp_path / "corpus" / "speechocean762", "flac")
    (tmp_path / "corpus" / "speechocean762" / "resource").mkdir()
    (tmp_path / "corpus" / "speechocean762" / "resource" / "lexicon.txt").write_text("zqxvok Z K S V AA K\n")
    cfg = so.So762Config(dev_speakers=2, devtest_speakers=2, seed=1)
    so.prepare(corpora.locate(so.source(), tmp_path / "corpus"), tmp_path / "prepare", cfg)
    config = recipe.load("speechocean762").CONFIG
    outs = {name: tmp_path / name for name in ("lexicon", "lm")}
    for name, fn in (("lexicon", pronounce.stage), ("lm", lm.stage)):
        outs[name].mkdir()
        section = config[name] if name == "lexicon" else dataclasses.replace(config["lm"], extra_words=0, general="")
        inputs = {"prepare": tmp_path / "prepare", "lexicon": outs["lexicon"]}
        fn(StageContext(Stage(0, name, fn), section, outs[name], inputs, None))
    spelled = {line.split()[0] for line in (outs["lm"] / "lexicon.txt").read_text().splitlines()}
    train_words = {w for u in read_manifest(tmp_path / "prepare" / "train.jsonl") for w in u.text.split()}
    assert spelled == train_words and "zqxvok" not in spelled
    phones = cmudict_lexicon().phones | {"|"}
    assert all(set(line.split()[1:]) <= phones for line in (outs["lm"] / "lexicon.txt").read_text().splitlines())
    held_out = {
        w
        for s in ("dev", "devtest")
        for u in read_manifest(tmp_path / "prepare" / f"{s}.jsonl")
        for w in u.text.split()
    }
    assert held_out - train_words and not (held_out - train_words) & spelled
    assert len(tree["utts"]) == 24
