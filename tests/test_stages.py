import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from asr.core.context import Stage
from asr.core.errors import AsrError, ConfigError
from asr.pipeline import recipe
from asr.pipeline.runner import Pipeline

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
    # before: a reversed range ran nothing and said nothing, --nj 0 was taken, an unwritable work dir a traceback
    with pytest.raises(AsrError, match="--stage c comes after --stop-stage a: nothing to run"):
        p.run(stage="c", stop_stage="a")
    with pytest.raises(AsrError, match="--nj must be at least 1, got 0"):
        p.run(nj=0)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(AsrError, match="cannot write in the work directory"):
        Pipeline(STAGES, CONFIG, tmp_path / "a_file" / "work").run(log=lambda m: None)


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
        f.write(f"pid {os.getpid()} (asr run other)")
        f.flush()
        with pytest.raises(AsrError, match=rf"in use by pid {os.getpid()} \(asr run other\)"):
            p.run(log=lambda m: None)
    assert not (p.work_dir / "a").exists()
    assert p.run(log=lambda m: None)[0] == ("a", "ran")


def test_lock_left_by_a_dead_run_names_the_processes_still_holding_it(tmp_path):
    p = pipe(tmp_path)
    p.work_dir.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()  # a pid that has exited
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import fcntl, sys
f = open({str(p.work_dir / ".lock")!r}, "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.write("pid {dead} (asr run killed)"); f.flush()
print("locked", flush=True)
sys.stdin.read()
""",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(AsrError) as e:
            p.run(log=lambda m: None)
        msg = str(e.value)
        assert f"locked by pid {dead}, which has exited" in msg and f"kill {holder.pid}" in msg
        assert "in use by" not in msg
    finally:
        holder.stdin.close()
        holder.wait()
    assert p.run(log=lambda m: None)[0] == ("a", "ran")


def test_forked_children_do_not_keep_the_work_dir_locked(tmp_path):
    # a child forked while a run holds the lock (a feature or decode worker) closes its copy of
    # the lock file, so the lock dies with the run even if the child lives on
    r, w = os.pipe()

    def stage_forks(ctx):
        pid = os.fork()
        if pid == 0:  # the child: wait until the parent is done, then exit
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        ctx.out.joinpath("child").write_text(str(pid))

    p = Pipeline([Stage(1, "a", stage_forks)], {"a": A()}, tmp_path / "work")
    p.run(log=lambda m: None)
    child = int((tmp_path / "work/a/child").read_text())
    try:
        with open(tmp_path / "work/.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the child still held it
    finally:
        os.close(w)
        os.waitpid(child, 0)
        os.close(r)


def test_data_fingerprint_names_the_changed_file(tmp_path):
    text, wav = tmp_path / "text", tmp_path / "a.wav"
    text.write_text("u1 hello\n")
    wav.write_bytes(b"RIFF....")

    def data(cfg):
        from asr.core.fsutil import file_stamp, sha256sum

        return {str(text): sha256sum(text), str(wav): file_stamp(wav)}

    stages = [Stage(1, "a", stage_a, data=data), Stage(2, "b", stage_b, ("a",))]
    make = lambda: Pipeline(stages, {"a": A(), "b": B()}, tmp_path / "work")  # noqa: E731
    assert make().run(log=lambda m: None) == [("a", "ran"), ("b", "ran")]
    assert [st for _, st, _ in make().status()] == ["done", "done"]
    text.write_text("u1 goodbye\n")  # an edited transcript
    rows = make().status()
    assert [st for _, st, _ in rows] == ["stale", "stale"]
    assert f"data changed: {text} (edited or replaced)" in rows[0][2] and str(wav) not in rows[0][2]
    assert make().run(log=lambda m: None) == [("a", "ran"), ("b", "ran")]
    os.utime(wav, ns=(1, 1))  # audio replaced at the same path (new modification time)
    assert f"{wav} (edited or replaced)" in make().status()[0][2]
    assert make().run(log=lambda m: None)[0] == ("a", "ran")
    assert make().run(log=lambda m: None)[0] == ("a", "skipped")
    wav.unlink()  # before: listed as "edited or replaced"
    assert f"{wav} (deleted)" in make().status()[0][2]


def test_data_that_appears_during_the_stage_fixes_the_key(tmp_path):
    # a corpus the stage downloads: no fingerprint before the run, the files' after it
    corpus = tmp_path / "corpus.txt"

    def fetch(ctx):
        corpus.write_text("downloaded")

    def data(cfg):
        return {str(corpus): corpus.read_text()} if corpus.exists() else None

    make = lambda: Pipeline([Stage(1, "a", fetch, data=data)], {"a": A()}, tmp_path / "w")  # noqa: E731
    assert make().run(log=lambda m: None) == [("a", "ran")]
    assert make().run(log=lambda m: None) == [("a", "skipped")]


def test_older_stage_version_is_stale_and_records_say_which_code(tmp_path):
    pipe(tmp_path).run(log=lambda m: None)
    rec = json.loads((tmp_path / "work/a/record.json").read_text())
    from asr import __version__

    assert rec["asr_version"] == __version__ and rec["git_commit"] and rec["version"] == 1
    newer = [Stage(1, "a", stage_a, version=2), *STAGES[1:]]
    rows = Pipeline(newer, CONFIG, tmp_path / "work").status()
    assert rows[0][1] == "stale" and "done by an older version of this stage (version 1, now 2" in rows[0][2]
    assert Pipeline(newer, CONFIG, tmp_path / "work").run(log=lambda m: None)[0] == ("a", "ran")


def test_each_stage_records_its_own_peak_memory(tmp_path):
    import numpy as np

    def big(ctx):
        a = np.ones(400 * 2**20 // 8)  # 400 MB, touched
        ctx.out.joinpath("n").write_text(str(a.sum()))

    def small(ctx):
        ctx.out.joinpath("n").write_text("1")

    Pipeline([Stage(1, "a", big), Stage(2, "b", small, ("a",))], {"a": A(), "b": A()}, tmp_path / "w").run(
        log=lambda m: None
    )
    peak = {n: json.loads((tmp_path / "w" / n / "record.json").read_text())["peak_rss_mb"] for n in "ab"}
    assert peak["a"] > 400 and peak["b"] < peak["a"] - 300


def test_stage_outputs_honour_the_umask(tmp_path):
    from asr.core.fsutil import atomic_write_text

    for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            atomic_write_text(tmp_path / f"f{umask}", "x")
        finally:
            os.umask(old)
        assert (tmp_path / f"f{umask}").stat().st_mode & 0o777 == mode


def test_a_stage_refuses_settings_it_would_overwrite(corpora_root, tmp_path):
    with pytest.raises(ConfigError, match="train.train_sets cannot be set"):
        recipe.pipeline("fsdd_loso", str(tmp_path), ["train.train_sets=isolated/train"], str(corpora_root))
    with pytest.raises(ConfigError, match="decode.sets cannot be set"):
        recipe.pipeline("fsdd_loso", str(tmp_path), ["decode.sets=x"], str(corpora_root))


def test_config_overrides_are_typed_and_checked():
    from asr.core.config import apply_overrides
    from asr.features.frontend import FeatureConfig

    cfg = {"features": FeatureConfig()}
    out = apply_overrides(
        cfg, ["features.n_mfcc=20", "features.f_max=none", "features.cmvn=global", "features.speed_perturb=0.9,1.1"]
    )
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
    # nested groups: train.model.hidden
    from asr.pipeline.runner import config_summary
    from asr.train.stage import TrainConfig

    out = apply_overrides({"train": TrainConfig()}, ["train.model.hidden=64", "train.lr=0.01"])
    assert out["train"].model.hidden == 64 and out["train"].lr == 0.01
    assert "train.model.hidden = 64" in config_summary(out).splitlines()
    with pytest.raises(
        ConfigError, match=r"unknown key 'train.model.hiden'; valid keys of 'train.model': \[.*'hidden'"
    ):
        apply_overrides({"train": TrainConfig()}, ["train.model.hiden=3"])
    with pytest.raises(ConfigError, match="train.model is a group of keys"):
        apply_overrides({"train": TrainConfig()}, ["train.model=3"])
    # a NaN in the decoder's tuning grid decoded every utterance to nothing before
    from asr.decode.stage import DecodeConfig

    with pytest.raises(ConfigError, match="must be finite numbers"):
        apply_overrides({"decode": DecodeConfig()}, ["decode.lm_weights=0.5,nan"])
    with pytest.raises(ConfigError, match="must be finite numbers"):
        apply_overrides({"decode": DecodeConfig()}, ["decode.search.word_score=inf"])


# --- the real feature stage, killed with SIGKILL and re-run -----------------------------------------

# with augmented copies: their features too must be the same after a kill, over 2 workers
SMALL = [
    "--stop-stage",
    "features",
    "--set",
    "prepare.connected_train=40",
    "--set",
    "prepare.connected_dev=10",
    "--set",
    "prepare.connected_test=10",
    "--set",
    "features.augment.copies=1",
]


def _asr(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "asr", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


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


def _session_members(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and os.getsid(int(d.name)) == sid:
                out.append(int(d.name))
        except OSError:
            continue
    return out


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait (not poll) for a process that is not our child to exit; True if it did."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


@pytest.mark.slow
def test_sigkill_during_features_then_rerun_matches_uninterrupted(corpora_root, tmp_path):
    ref = _asr("run", "fsdd", "--work-dir", str(tmp_path / "ref"), "--corpus-dir", str(corpora_root), *SMALL)
    out, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out

    work = tmp_path / "killed"
    # the main process kills itself (SIGKILL, as the OOM killer would) after the 2nd chunk of features,
    # while its 2 feature workers are busy: a chosen point, never a time
    proc = _asr(
        "run",
        "fsdd",
        "--work-dir",
        str(work),
        "--corpus-dir",
        str(corpora_root),
        "--nj",
        "2",
        *SMALL,
        start_new_session=True,
        env={**os.environ, "ASR_TEST_STOP_AT": "features.chunk:2"},
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out
    # its workers die with it (PR_SET_PDEATHSIG): wait for each, bounded, instead of sleeping
    orphans = _session_members(proc.pid)
    assert all(_wait_exit(pid, 30) for pid in orphans), orphans
    assert (work / ".tmp-features" / "isolated" / "train.f32").stat().st_size > 0  # it was killed mid-stage
    assert not (work / "features").exists()  # nothing half-written passes for done
    status = recipe.pipeline("fsdd", str(work), SMALL[3::2], str(corpora_root)).status()
    assert [(s.name, st) for s, st, _ in status[:2]] == [("prepare", "done"), ("features", "missing")]

    again = _asr("run", "fsdd", "--work-dir", str(work), "--corpus-dir", str(corpora_root), *SMALL)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out  # not refused as "in use" by the dead run's workers
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


@pytest.mark.slow
def test_an_installed_wheel_finds_its_recipes(tmp_path):
    # a non-editable install (no checkout around it) must still run `asr run fsdd`
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (target / "asr" / "recipes" / "fsdd" / "recipe.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-m", "asr", "run", "fsdd", "--show-config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "train.model.hidden = 128" in out.stdout.splitlines()
    where = subprocess.run(
        [sys.executable, "-c", "import asr; print(asr.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True
    ).stdout
    assert where.startswith(str(target))  # the installed copy ran, not the checkout


RUNTIME_CHOICE = {
    ("asr.recognize.recognizer", ("asr.model.network",)),
    ("asr.recognize.recognizer", ("asr.model.onnxrt",)),
    ("asr.text.stage", ("asr.text.g2p",)),  # the G2P's torch only when a word lacks a pronunciation (not when decoding)
}


def test_the_package_import_graph_has_no_cycle():
    """Imports form a graph without cycles, counting imports inside functions as edges; such
    hidden imports are only allowed in the CLI and the package face (they keep start-up fast),
    where ``load_model`` picks the network's runtime (an ONNX model must not load torch), and where the
    lexicon stage loads the G2P."""
    import ast

    root = REPO / "asr"

    def name(p):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    mods = {name(p): p for p in root.rglob("*.py")}
    deps, hidden = {m: set() for m in mods}, []
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found = {t for t in targets if t in mods and t != m and t != "asr"}
            deps[m] |= found
            if (
                found
                and id(node) not in top
                and p.name not in ("cli.py", "__init__.py", "__main__.py")
                and (m, tuple(sorted(found))) not in RUNTIME_CHOICE
            ):
                hidden.append((m, sorted(found)))
    assert not hidden, f"asr imports inside functions (move them to the top): {hidden}"
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(deps[m]):
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path[path.index(d) :] + [d]) if d in path else d}"
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [m])


def test_a_stage_takes_its_share_of_the_cores_among_the_machines_runs(tmp_path, monkeypatch):
    """Two trainings at one thread per core each, side by side, ran ten times slower than one after the other:
    a stage starting beside another ``asr run`` takes half the cores, and ``--threads`` sets the count."""
    import tempfile

    from asr.core import cores

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own folder of runs
    seen = []

    def stage_threads(ctx):
        seen.append(ctx.threads)

    def run(**kw):
        Pipeline([Stage(1, "a", stage_threads)], {"a": A()}, tmp_path / "work").run(
            force=True, log=lambda m: None, **kw
        )
        return seen[-1]

    (tmp_path / f"asr-runs-{os.getuid()}").mkdir()
    (tmp_path / f"asr-runs-{os.getuid()}" / "999999999").write_text("")  # left by a run that died: not counted
    assert run() == cores.usable_cores()
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom asr.core import cores\nwith cores.running():\n"
            "    print('held', flush=True)\n    sys.stdin.read()",
        ],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "held"  # the other run holds its lock from here on
        assert run() == max(1, cores.usable_cores() // 2)
        assert run(threads=3) == 3
    finally:
        other.stdin.close()
        other.wait(timeout=60)
    assert run() == cores.usable_cores()
    assert os.listdir(tmp_path / f"asr-runs-{os.getuid()}") == []
