"""TIMIT on small trees in the LDC layout (real speech from the shared speechocean762 copy written as
NIST SPHERE, .PHN files from its lexicon's pronunciations in TIMIT's labels, upper- or lower-case names):
the standard splits, 61 -> 48 -> 39 folding, the phone tokenizer, and a phone model through every stage
to a phone error rate."""

import json
import re
from pathlib import Path

import pytest
import soundfile as sf
from helpers import asr

from asr.core.errors import CorpusError, ManifestError, TokenizerError
from asr.core.textfiles import read_kaldi_table
from asr.corpora import timit
from asr.data.manifest import read_manifest
from asr.score.stage import ScoreConfig
from asr.score.wer import score
from asr.text.phones import fold_text, fold_timit, timit_phones
from asr.text.tokenizer import PhoneTokenizer, tokenizer_from_dict

# part -> dialect region -> speaker -> sentences (SA1 is read by everyone and left out)
TREE = {
    "TRAIN": {
        "DR1": {"FCJF0": ("SA1", "SI1027", "SX127", "SX217"), "MDPK0": ("SA1", "SI552", "SX153", "SX333")},
        "DR2": {"FAEM0": ("SA1", "SI1392", "SX42", "SX132")},
    },
    "TEST": {
        "DR1": {
            "FAKS0": ("SA1", "SI943", "SX43"),  # dev (Kaldi's list)
            "MDAB0": ("SA1", "SI1039", "SX139"),  # core test
            "MJSW0": ("SA1", "SX20"),
        },  # dev
        "DR3": {"MADC0": ("SA1", "SX17")},
    },  # neither: left out
}
SPLIT = {"FCJF0": "train", "MDPK0": "train", "FAEM0": "train", "FAKS0": "dev", "MJSW0": "dev", "MDAB0": "test"}


def _pronounce(so762_root: Path) -> dict[str, str]:
    lex = {}
    for line in (so762_root / "resource" / "lexicon.txt").read_text().splitlines():
        word, _, phones = line.partition("\t")
        lex.setdefault(word.lower(), re.sub(r"\d", "", phones).lower())  # ARPAbet without stress = TIMIT labels
    return lex


def _build(so762_root: Path, dst: Path, lower: bool = False) -> dict:
    """The TIMIT tree; returns id -> (split, 61 phones, words, seconds, speaker) for the kept sentences."""
    text = read_kaldi_table(so762_root / "train" / "text")
    wav = read_kaldi_table(so762_root / "train" / "wav.scp")
    lex = _pronounce(so762_root)
    sources = iter(u for u in sorted(wav) if all(w in lex for w in text[u].lower().split()))
    name = str.lower if lower else str
    made = {}
    for part, regions in TREE.items():
        for dr, speakers in regions.items():
            for spk, sentences in speakers.items():
                d = dst / name("TIMIT") / name(part) / name(dr) / name(spk)
                d.mkdir(parents=True)
                for sent in sentences:
                    src = next(sources)
                    data, rate = sf.read(str(so762_root / wav[src]), dtype="int16")
                    sf.write(str(d / name(f"{sent}.WAV")), data, rate, format="NIST", subtype="PCM_16")
                    words = text[src].lower().split()
                    # TIMIT-style detail: silence at the edges, a closure before the first phone, a glottal stop
                    phones = [
                        "h#",
                        "pcl",
                        *lex[words[0]].split(),
                        "q",
                        *" ".join(lex[w] for w in words[1:]).split(),
                        "h#",
                    ]
                    edges = [round(i * len(data) / len(phones)) for i in range(len(phones) + 1)]
                    (d / name(f"{sent}.PHN")).write_text(
                        "".join(f"{a} {b} {p}\n" for a, b, p in zip(edges, edges[1:], phones))
                    )
                    (d / name(f"{sent}.TXT")).write_text(f"0 {len(data)} {text[src].capitalize()}.\n")
                    if spk in SPLIT and not sent.startswith("SA"):
                        made[f"{spk.lower()}_{sent.lower()}"] = (
                            SPLIT[spk],
                            phones,
                            " ".join(words),
                            len(data) / rate,
                            spk.lower(),
                        )
    return made


@pytest.mark.parametrize("lower", [False, True], ids=["upper-case", "lower-case"])
def test_prepare_the_standard_splits_through_the_recipe(so762_root, tmp_path, lower):
    made = _build(so762_root, tmp_path / "corpora", lower)
    asr(
        "run",
        "timit",
        "--work-dir",
        str(tmp_path / "w"),
        "--corpus-dir",
        str(tmp_path / "corpora"),
        "--stop-stage",
        "prepare",
    )
    p48 = timit_phones(48)
    for split in timit.SPLITS:
        utts = read_manifest(tmp_path / "w" / "prepare" / f"{split}.jsonl")
        assert sorted(u.id for u in utts) == sorted(k for k, v in made.items() if v[0] == split)
        for u in utts:
            _, phones, _, seconds, spk = made[u.id]
            assert u.speaker == spk and u.duration == pytest.approx(seconds, abs=1e-3)
            folded = u.text.split()
            assert folded == fold_timit(phones, 48) and set(folded) <= p48
            assert folded[0] == "sil" and folded[1] == "cl" and "q" not in folded  # h# -> sil, pcl -> cl, q dropped
            assert len(folded) == len(phones) - 1
    rec = json.loads((tmp_path / "w" / "prepare" / "record.json").read_text())
    assert '"train": {"utterances": 9, "speakers": 3' in json.dumps(rec)


def test_words_and_problems(so762_root, tmp_path, monkeypatch):
    made = _build(so762_root, tmp_path)
    root = timit.locate(tmp_path)
    sets = timit.read_sets(root, timit.TimitConfig(text="words"))
    assert {u.id: u.text for u in sets["test"]} == {k: v[2] for k, v in made.items() if v[0] == "test"}
    spk = tmp_path / "TIMIT" / "TRAIN" / "DR1" / "FCJF0"
    lines = (spk / "SX127.PHN").read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + " xy"
    lines[3] = "12 k"
    (spk / "SX127.PHN").write_text("\n".join(lines) + "\n")
    (spk / "SX217.PHN").unlink()
    with pytest.raises(ManifestError) as e:
        timit.read_sets(root, timit.TimitConfig())
    msg = str(e.value)
    assert "SX127.PHN:3: 'xy' is not one of TIMIT's 61 phones" in msg
    assert "SX127.PHN:4: expected '<first sample> <last sample> <phone>'" in msg
    assert "SX217.WAV: no SX217.PHN beside it" in msg
    monkeypatch.delenv("ASR_CORPORA", raising=False)
    with pytest.raises(CorpusError, match="licensed by the LDC"):
        timit.locate(None)
    with pytest.raises(ValueError, match="phone_set must be one of"):
        timit.TimitConfig(phone_set=40)


def test_folding_phone_tokens_and_phone_error_rate():
    assert len(timit_phones(61)) == 61 and len(timit_phones(48)) == 48 and len(timit_phones(39)) == 39
    assert fold_timit(["h#", "ax-h", "q", "zh", "bcl", "en"], 48) == ["sil", "ax", "zh", "vcl", "en"]
    assert fold_timit(["h#", "ax-h", "q", "zh", "bcl", "en"], 39) == ["sil", "ah", "sh", "sil", "n"]
    # every label of the 61 and of the 48 folds to the same 39 label either way
    for p in timit_phones(61) - {"q"}:
        assert fold_text(p, "timit39") == fold_text(fold_timit([p], 48)[0], "timit39") == fold_timit([p], 39)[0]
    tok = PhoneTokenizer.from_texts(["sil dh ax k ae t sil", "sil ix z sil"])
    assert tok.units[0] == "<blk>" and len(tok) == 9
    ids = tok.encode("sil k ae t  sil")
    assert tok.decode(ids) == "sil k ae t sil" and tok.decode([0, *ids, 0]) == "sil k ae t sil"
    assert tok.words(ids, list(range(5)))[1][1] == ("k", 1, 1)  # every phone a word of its own
    assert tokenizer_from_dict(tok.to_dict()).units == tok.units
    with pytest.raises(TokenizerError, match=r"outside the phone set: \['zz'\]"):
        tok.encode("sil zz sil")
    # PER: a 48-phone hypothesis that differs from the reference only within 39-phone classes scores 0
    ref, hyp = "sil dh ax cl k ae t sil", "sil dh ah vcl k ae t sil"
    assert score({"u": fold_text(ref, "timit39")}, {"u": fold_text(hyp, "timit39")}).words.errors == 0
    assert score({"u": ref}, {"u": hyp}).words.errors == 2
    with pytest.raises(ValueError, match="unknown phone_map"):
        ScoreConfig(phone_map="timit40")


def test_a_phone_model_through_every_stage(so762_root, tmp_path):
    _build(so762_root, tmp_path / "corpora")
    work = tmp_path / "w"
    sets = [
        "train.model.hidden=32",
        "train.model.num_layers=1",
        "train.epochs=3",
        "train.batch_frames=3000",
        "train.spec_augment=false",
        "train.early_stop=0",
        "decode.lm_weights=0,0.5",
    ]
    asr(
        "run",
        "timit",
        "--work-dir",
        str(work),
        "--corpus-dir",
        str(tmp_path / "corpora"),
        *[a for s in sets for a in ("--set", s)],
    )
    unigrams = (work / "lm" / "tokens.arpa").read_text().split("\\2-grams:")[0].split()
    assert "sil" in unigrams and "cl" in unigrams and "|" not in unigrams  # beam_lm's n-gram is over phones
    results = (work / "RESULTS.md").read_text()
    assert "PER % [95% CI]" in results and "Phones folded by timit39" in results and "| phones |" in results
    hyp = " ".join(read_kaldi_table(work / "decode" / "test" / "hyp.txt").values()).split()
    assert hyp and set(hyp) <= timit_phones(48)  # the model speaks the 48 phones it was trained on ...
    scored = " ".join(read_kaldi_table(work / "score" / "test" / "ref.txt").values()).split()
    assert "sil" in scored and set(scored) <= timit_phones(39)  # ... and is scored on the 39 (cl -> sil)
    r = asr("transcribe", str(work / "model.pt"), next((tmp_path / "corpora").rglob("SX139.WAV")).as_posix())
    said = r.stdout.split("\t")[1].split()
    assert said and set(said) <= timit_phones(48)
    # the shipped model and `asr evaluate --phone-map` reproduce the recipe's phone error rate
    per = json.loads((work / "score" / "record.json").read_text())["metrics"]["test"]["wer"]
    r = asr("evaluate", str(work / "model.pt"), str(work / "prepare" / "test.jsonl"), "--phone-map", "timit39")
    assert r.stdout.startswith(f"%PER {100 * per:.2f} [")
