import os
import random
import re
import shutil
import subprocess
import sys

import jiwer
import pytest

from asr.core.errors import AsrError
from asr.core.textfiles import read_text, write_text
from asr.score.report import write_report
from asr.score.wer import compare, score

VOCAB = "zero one two three four five six seven eight nine oh".split()


def _random_pairs(n, seed):
    rng = random.Random(seed)
    refs, hyps = {}, {}
    for i in range(n):
        ref = [rng.choice(VOCAB) for _ in range(rng.randint(0, 8))]
        hyp = [w if rng.random() > 0.3 else rng.choice(VOCAB) for w in ref]
        if rng.random() < 0.3 and hyp:
            del hyp[rng.randrange(len(hyp))]
        if rng.random() < 0.3:
            hyp.insert(rng.randint(0, len(hyp)), rng.choice(VOCAB))
        refs[f"spk{i % 3}_u{i:03d}"] = " ".join(ref)
        hyps[f"spk{i % 3}_u{i:03d}"] = " ".join(hyp)
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wer_equals_jiwer_on_random_pairs(seed):
    refs, hyps = _random_pairs(80, seed)
    refs["spk0_empty"] = "seven"  # a reference with an empty hypothesis ...
    hyps["spk0_empty"] = ""
    ids = sorted(refs)
    s = score(refs, hyps)
    r, h = [refs[i] for i in ids], [hyps[i] for i in ids]
    assert s.words.rate == pytest.approx(jiwer.wer(r, h))
    assert s.chars.rate == pytest.approx(jiwer.cer(r, h))
    out = jiwer.process_words(r, h)
    assert (s.words.substitutions, s.words.deletions, s.words.insertions) == (
        out.substitutions,
        out.deletions,
        out.insertions,
    )
    assert s.utt_errors.sum() == s.words.errors and s.utt_ref_len.sum() == s.words.ref_len
    assert s.utt_char_errors.sum() == s.chars.errors and s.utt_ref_chars.sum() == s.chars.ref_len


def test_empty_references_and_hypotheses_follow_jiwer():
    # an empty reference: its hypothesis words are insertions
    s = score({"a": "", "b": "one two"}, {"a": "three", "b": "one two"})
    assert s.words.rate == pytest.approx(jiwer.wer(["", "one two"], ["three", "one two"])) == 0.5
    assert score({"a": ""}, {"a": ""}).words.rate == jiwer.wer([""], [""]) == 0.0
    assert score({"a": ""}, {"a": "x"}).words.rate == jiwer.wer([""], ["x"]) == 1.0


def test_kaldi_style_line_and_mismatched_ids(tmp_path):
    write_text(tmp_path / "ref", {"u1": "one two three", "u2": "four five", "u3": "six"})
    write_text(tmp_path / "hyp", {"u1": "one too three four", "u2": "four", "u4": "seven"})
    with pytest.raises(AsrError, match=r"1 id\(s\) in .*ref but not in .*hyp: \['u3'\]; 1 id\(s\) in .*hyp but not"):
        score(
            read_text(tmp_path / "ref"),
            read_text(tmp_path / "hyp"),
            ref_name=str(tmp_path / "ref"),
            hyp_name=str(tmp_path / "hyp"),
        )
    write_text(tmp_path / "hyp", {"u1": "one too three four", "u2": "four"})
    with pytest.raises(AsrError, match="missing-as-deletions"):
        score(read_text(tmp_path / "ref"), read_text(tmp_path / "hyp"))
    s = score(read_text(tmp_path / "ref"), read_text(tmp_path / "hyp"), missing_as_deletions=True)
    assert s.words.line() == "%WER 66.67 [ 4 / 6, 1 ins, 2 del, 1 sub ]"


def test_cli_wer_bootstrap_and_compare(tmp_path):
    refs, hyps = _random_pairs(200, 5)
    write_text(tmp_path / "ref", refs)
    write_text(tmp_path / "hyp", hyps)
    write_text(tmp_path / "perfect", refs)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "asr",
            "wer",
            str(tmp_path / "ref"),
            str(tmp_path / "perfect"),
            "--bootstrap",
            "--compare",
            str(tmp_path / "hyp"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("%WER 0.00 [ 0 / ")
    assert "95% confidence interval of the WER: [0.00, 0.00]" in r.stdout
    assert re.search(r"improves on .*hyp: 1\.000", r.stdout)
    s = score(refs, hyps)
    lo, hi = s.bootstrap()
    assert lo < s.words.rate < hi
    assert compare(s, s) == 0.0  # never strictly better than itself


def _sclite_wer(ref_trn, hyp_trn):
    out = subprocess.run(
        ["sctk", "sclite", "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-o", "sum", "stdout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line for line in out.splitlines() if "Sum/Avg" in line)
    nums = [float(x) for x in re.findall(r"[\d.]+", row)]
    # | Sum/Avg | #Snt #Wrd | Corr Sub Del Ins Err S.Err |
    return nums[1], nums[6]


def test_our_wer_equals_sclite_on_trn_files(tmp_path):
    if shutil.which("sctk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sctk (NIST sclite) is not installed; .ci/run installs it")
        pytest.skip("sctk not installed (apt-get install sctk)")
    refs, hyps = _random_pairs(150, 9)
    refs = {k: v for k, v in refs.items() if v}  # sclite drops empty reference lines' words anyway
    s = score(refs, {k: hyps[k] for k in refs})
    write_report(tmp_path, s, {k: k.split("_")[0] for k in refs})
    words, err = _sclite_wer(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    assert words == s.words.ref_len
    assert err == pytest.approx(round(100 * s.words.rate, 1), abs=0.05)


def test_report_files(tmp_path):
    s = score({"a_1": "one two three", "b_1": "four"}, {"a_1": "one too three", "b_1": ""})
    summary = write_report(tmp_path, s, {"a_1": "a", "b_1": "b"}, "set")
    assert summary.startswith("set: %WER 50.00 [ 2 / 4, 0 ins, 1 del, 1 sub ]")
    assert "   1  two -> too" in (tmp_path / "confusions.txt").read_text()
    ali = (tmp_path / "alignments.txt").read_text()
    assert "a_1 ref  one two three" in ali and "a_1 op       S" in ali
    spk = (tmp_path / "speakers.txt").read_text().splitlines()
    assert spk[1].split()[:5] == ["a", "1", "3", "1", "33.33"] and spk[2].split()[:5] == ["b", "1", "1", "1", "100.00"]
    assert (tmp_path / "hyp.trn").read_text() == "one too three (a_a_1)\n (b_b_1)\n"


def test_speakers_are_never_guessed_from_the_id(tmp_path):
    s = score({"7_jackson_32": "seven", "3_theo_1": "three"}, {"7_jackson_32": "seven", "3_theo_1": "tree"})
    write_report(tmp_path, s, {"3_theo_1": "theo"})
    rows = [line.split()[0] for line in (tmp_path / "speakers.txt").read_text().splitlines()[1:]]
    assert rows == ["theo", "unknown"]  # not "7" from the id's prefix


@pytest.mark.parametrize("samples", [0, 17])
def test_score_stage_with_any_number_of_bootstrap_samples(tmp_path, samples):
    import json
    from types import SimpleNamespace

    from asr.score import stage as scoring

    dec, trn = tmp_path / "decode", tmp_path / "train"
    for name in ("hyp.txt", "greedy.txt", "ref.txt"):
        write_text(dec / "set" / name, {"u1": "one two", "u2": "three"})
    write_text(dec / "set" / "utt2spk", {"u1": "a", "u2": "b"})
    (dec / "settings.json").write_text(
        json.dumps({"tuned_on": ["dev"], "method": "greedy", "beam_size": 16, "lm_weight": 0, "word_score": 0})
    )
    trn.mkdir()
    out = tmp_path / "score"
    ctx = SimpleNamespace(
        config=scoring.ScoreConfig(bootstrap_samples=samples),
        out=out,
        inputs={"decode": dec, "train": trn},
        log=lambda m: None,
    )
    metrics = scoring.stage(ctx)["metrics"]["set"]
    results = (out / "RESULTS.md").read_text()
    assert metrics["wer"] == 0.0
    if samples:
        assert "(17 resamples)" in results and metrics["wer_ci"] == [0.0, 0.0]
    else:
        assert "confidence intervals: none" in results and "wer_ci" not in metrics and "resamples" not in results
