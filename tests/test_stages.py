import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from asr import recipe
from asr.errors import AsrError, ConfigError
from asr.stages import Pipeline, Stage

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class A:
    n: int = 3


@dataclass(frozen=True)
class B:
    scale: float = 2.0
    fail: bool = False


def stage_a(ctx):
    (ctx.out / "nums.txt").write_text("\n".join(str(i) for i in range(ctx.config.n)))
    return {"count": ctx.config.n}


def stage_b(ctx):
    nums = [int(x) for x in (ctx.inputs["a"] / "nums.txt").read_text().split()]
    (ctx.out / "scaled.txt").write_text(" ".join(str(x * ctx.config.scale) for x in nums))
    if ctx.config.fail:
        raise RuntimeError("boom")


def stage_c(ctx):
    (ctx.out / "sum.txt").write_text(str(sum(float(x) for x in (ctx.inputs["b"] / "scaled.txt").read_text().split())))


STAGES = [Stage(1, "a", stage_a), Stage(2, "b", stage_b, ("a",)), Stage(3, "c", stage_c, ("b",))]
CONFIG = {"a": A(), "b": B(), "c": A()}


def pipe(tmp_path, **over):
    cfg = dict(CONFIG)
    cfg.update(over)
    return Pipeline(STAGES, cfg, tmp_path / "work")


def test_cache_skips_and_reruns_downstream_only(tmp_path):
    assert pipe(tmp_path).run(log=lambda m: None) == [("a", "ran"), ("b", "ran"), ("c", "ran")]
    assert pipe(tmp_path).run(log=lambda m: None) == [("a", "skipped"), ("b", "skipped"), ("c", "skipped")]
    p = pipe(tmp_path, b=B(scale=3.0))
    assert [s for _, s, _ in p.status()] == ["done", "stale", "stale"]
    assert "b.scale: 2.0 -> 3.0" in p.status()[1][2] and "input 'b' changed" in p.status()[2][2]
    assert p.run(log=lambda m: None) == [("a", "skipped"), ("b", "ran"), ("c", "ran")]
    assert (tmp_path / "work/c/sum.txt").read_text() == "9.0"
    rec = json.loads((tmp_path / "work/b/record.json").read_text())
    assert rec["config"] == {"scale": 3.0, "fail": False} and rec["wall_seconds"] >= 0 and rec["peak_rss_mb"] > 0


def test_stage_range_force_and_names(tmp_path):
    p = pipe(tmp_path)
    assert p.run(stop_stage="a", log=lambda m: None) == [("a", "ran")]
    with pytest.raises(AsrError, match=r"needs the output of stage 2 \(b\), which is missing"):
        p.run(stage="c", log=lambda m: None)
    assert p.run(stage=2, stop_stage="3", log=lambda m: None) == [("b", "ran"), ("c", "ran")]
    assert p.run(stage="b", stop_stage="b", force=True, log=lambda m: None) == [("b", "ran")]
    with pytest.raises(ConfigError, match="unknown stage 'zz'; stages: 1:a, 2:b, 3:c"):
        p.run(stage="zz")


def test_failed_stage_keeps_last_good_output(tmp_path):
    pipe(tmp_path).run(log=lambda m: None)
    before = (tmp_path / "work/b/scaled.txt").read_text()
    with pytest.raises(RuntimeError, match="boom"):
        pipe(tmp_path, b=B(scale=5.0, fail=True)).run(log=lambda m: None)
    assert (tmp_path / "work/b/scaled.txt").read_text() == before
    assert [s for _, s, _ in pipe(tmp_path).status()] == ["done", "done", "done"]


def test_second_run_on_locked_work_dir_fails_clearly(tmp_path):
    p = pipe(tmp_path)
    p.work_dir.mkdir(parents=True)
    with open(p.work_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("pid 12345 (asr run other)")
        f.flush()
        with pytest.raises(AsrError, match=r"in use by pid 12345 \(asr run other\)"):
            p.run(log=lambda m: None)
    assert not (p.work_dir / "a").exists()
    assert p.run(log=lambda m: None)[0] == ("a", "ran")


def test_config_overrides_are_typed_and_checked():
    from asr.config import apply_overrides
    from asr.features import FeatureConfig

    cfg = {"features": FeatureConfig()}
    out = apply_overrides(cfg, ["features.n_mfcc=20", "features.f_max=none", "features.cmvn=global",
                                "features.speed_perturb=0.9,1.1"])
    f = out["features"]
    assert (f.n_mfcc, f.f_max, f.cmvn, f.speed_perturb) == (20, None, "global", (0.9, 1.1))
    with pytest.raises(ConfigError, match=r"unknown key 'features.nmfcc'; valid keys of 'features': \[.*'n_mfcc'"):
        apply_overrides(cfg, ["features.nmfcc=20"])
    with pytest.raises(ConfigError, match="is not a valid int"):
        apply_overrides(cfg, ["features.n_mfcc=many"])
    with pytest.raises(ConfigError, match="not one of"):
        apply_overrides(cfg, ["features.cmvn=sometimes"])
    with pytest.raises(ConfigError, match="cannot exceed n_mels"):
        apply_overrides(cfg, ["features.n_mfcc=80"])
    with pytest.raises(ConfigError, match="unknown config section 'feat'"):
        apply_overrides(cfg, ["feat.n_mfcc=2"])


# --- the real feature stage, killed with SIGKILL and re-run -----------------------------------------

SMALL = ["--set", "prepare.connected_train=40", "--set", "prepare.connected_dev=10", "--set", "prepare.connected_test=10"]


def _asr(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "asr", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _digest(folder: Path) -> dict:
    """Hash of every output file; index lines without their audio path, which names the work dir."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name == "record.json":
            continue
        data = p.read_bytes()
        if p.name.endswith(".index.jsonl"):
            rows = [json.loads(line) for line in data.decode().splitlines()]
            data = json.dumps([{k: v for k, v in r.items() if k != "audio"} for r in rows]).encode()
        out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def test_sigkill_during_features_then_rerun_matches_uninterrupted(corpora_root, tmp_path):
    ref = _asr("run", "fsdd", "--work-dir", str(tmp_path / "ref"), "--corpus-dir", str(corpora_root), *SMALL)
    out, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out

    work = tmp_path / "killed"
    proc = _asr("run", "fsdd", "--work-dir", str(work), "--corpus-dir", str(corpora_root), "--nj", "2", *SMALL,
                start_new_session=True)
    deadline = time.time() + 120
    partial = work / ".tmp-features" / "isolated" / "train.f32"
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size > 0):
        time.sleep(0.02)
    assert partial.exists(), "the features stage never started writing"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "features").exists()  # nothing half-written passes for done
    status = recipe.pipeline("fsdd", str(work), SMALL[1::2], str(corpora_root)).status()
    assert [(s.name, st) for s, st, _ in status[:2]] == [("prepare", "done"), ("features", "missing")]

    again = _asr("run", "fsdd", "--work-dir", str(work), "--corpus-dir", str(corpora_root), *SMALL)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert "stage 1 (prepare): up to date, skipped" in out
    assert _digest(work / "features") == _digest(tmp_path / "ref" / "features")
    assert len(_digest(work / "features")) > 10


def test_cli_rejects_unknown_key_with_valid_ones(corpora_root, tmp_path):
    p = _asr("run", "fsdd", "--work-dir", str(tmp_path), "--set", "features.nope=1")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 2 and "unknown key 'features.nope'" in out and "n_mfcc" in out


def test_every_subcommand_has_help():
    for cmd in ([], ["run"], ["stages"], ["convert"], ["transcribe"], ["evaluate"], ["wer"]):
        r = subprocess.run([sys.executable, "-m", "asr", *cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: asr" in r.stdout, cmd
