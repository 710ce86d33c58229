"""The stage runner: numbered, named, cached stages whose outputs appear atomically.

A stage is a function ``run(ctx) -> dict | None`` that reads only the output
directories of the stages it names as inputs and writes only ``ctx.out``. Its
cache key hashes its name, its code version (a constant next to its code), its
config section, the keys of its inputs and, for a stage that reads data from
outside the work directory (preparation), a fingerprint of that data: the listing
files' content and each audio file's size and modification time. Changing any of
them re-runs that stage and everything downstream and nothing upstream. Work
happens in a temporary directory that is renamed into place after ``record.json``
(written last) is in it: a killed run leaves the previous complete output or none.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from asr.core import cores
from asr.core.config import Config, flatten, to_dict
from asr.core.context import Stage, StageContext
from asr.core.errors import AsrError, ConfigError
from asr.core.fsutil import atomic_copy, atomic_write_text, same_file_content
from asr.core.layout import DATA_STAMPS, RECORD
from asr.core.procs import stop_point
from asr.core.provenance import __version__, command_line, git_commit

# --- peak memory of one stage -------------------------------------------------------------------


def _reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux: ``5`` to ``/proc/self/clear_refs`` resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _own_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # lifetime peak elsewhere


def _children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# --- the lock on a work directory ----------------------------------------------------------------

_HELD: list = []  # lock files this process holds


def _close_inherited_locks() -> None:
    """In a forked child: close the copies of the parent's lock files. A flock lives as long as any
    copy of its file is open, so without this, workers orphaned by a killed run kept the work
    directory locked."""
    for f in _HELD:
        try:
            f.close()
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holders(path: Path) -> list[int]:
    """Processes with ``path`` open (Linux ``/proc``), this one excepted."""
    target, found = str(path.resolve()), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == target for fd in (d / "fd").iterdir()):
                found.append(int(d.name))
        except OSError:
            continue
    return sorted(found)


# --- the pipeline ---------------------------------------------------------------------------------


class Pipeline:
    """A recipe's stages with their config, bound to a work directory.

    Raises:
        ConfigError: duplicate stage names/numbers, an input that is not an
            earlier stage, a stage without a config section, or settings a stage refuses.
    """

    def __init__(self, stages: Sequence[Stage], config: Config, work_dir: str | Path):
        self.stages = sorted(stages, key=lambda s: s.number)
        self.config = dict(config)
        self.work_dir = Path(work_dir)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names) or len({s.number for s in self.stages}) != len(names):
            raise ConfigError(f"stage names and numbers must be unique: {[(s.number, s.name) for s in self.stages]}")
        for i, s in enumerate(self.stages):
            for inp in s.inputs:
                if inp not in names[:i]:
                    raise ConfigError(f"stage {s.name!r} reads {inp!r}, which is not an earlier stage")
            if s.name not in self.config:
                raise ConfigError(f"stage {s.name!r} has no config section")
            if s.check is not None:
                s.check(self.config[s.name])
        self.data: dict[str, dict[str, str] | None] = {
            s.name: s.data(self.config[s.name]) for s in self.stages if s.data is not None
        }
        self._rekey()

    # --- keys and records -----------------------------------------------------------

    def _rekey(self) -> None:
        self.keys: dict[str, str] = {}
        for s in self.stages:
            self.keys[s.name] = self._key(s)

    def _data_digest(self, s: Stage) -> str | None:
        if s.data is None:
            return None
        stamps = self.data.get(s.name)
        if stamps is None:
            return "pending"  # not there yet (to be downloaded): the key is fixed once the stage ran
        if not stamps:
            return None  # no files read this time (e.g. a lexicon stage on CMUdict): the key of a stage without data
        return hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()[:16]

    def _key_material(self, s: Stage) -> dict:
        return {
            "stage": s.name,
            "version": s.version,
            "config": to_dict(self.config[s.name]),
            "inputs": {i: self.keys[i] for i in s.inputs},
            "data": self._data_digest(s),
        }

    def _key(self, s: Stage) -> str:
        blob = json.dumps(self._key_material(s), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def out_dir(self, name: str) -> Path:
        return self.work_dir / name

    def record(self, name: str) -> dict | None:
        path = self.out_dir(name) / RECORD
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def resolve(self, ref: str | int | None, default: int) -> int:
        """A ``--stage`` value (number or name) -> stage number."""
        if ref is None:
            return default
        text = str(ref)
        for s in self.stages:
            if text == s.name or text == str(s.number):
                return s.number
        raise ConfigError(f"unknown stage {ref!r}; stages: " + ", ".join(f"{s.number}:{s.name}" for s in self.stages))

    def status(self) -> list[tuple[Stage, str, str]]:
        """Each stage as ``(stage, 'done' | 'stale' | 'missing', why)``."""
        rows = []
        for s in self.stages:
            rec = self.record(s.name)
            if rec is None:
                rows.append((s, "missing", "never run" if not self.out_dir(s.name).exists() else "no record"))
            elif rec.get("key") == self.keys[s.name]:
                stale = [n for n in s.exports if not same_file_content(self.out_dir(s.name) / n, self.work_dir / n)]
                rows.append(
                    (
                        s,
                        "done",
                        f"{rec.get('wall_seconds', 0):.1f}s on {rec.get('end', '?')}"
                        + (
                            f"; its copy {', '.join(stale)} in the work directory is missing or old "
                            "(`asr run` restores it)"
                            if stale
                            else ""
                        ),
                    )
                )
            else:
                rows.append((s, "stale", self._why_stale(s, rec)))
        return rows

    def _why_stale(self, s: Stage, rec: dict) -> str:
        now = self._key_material(s)
        reasons = []
        if str(rec.get("version")) != str(s.version):
            reasons.append(
                f"done by an older version of this stage (version {rec.get('version')}, "
                f"now {s.version}: the code that writes it changed)"
            )
        old_cfg, new_cfg = flatten(rec.get("config", {})), flatten(now["config"])
        for k in sorted(set(old_cfg) | set(new_cfg)):
            if old_cfg.get(k) != new_cfg.get(k):
                reasons.append(f"{s.name}.{k}: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}")
        for inp, key in now["inputs"].items():
            if rec.get("inputs", {}).get(inp) != key:
                reasons.append(f"input {inp!r} changed")
        if rec.get("data") != now["data"]:
            reasons.append(self._data_changes(s))
        return "; ".join(reasons) or "cache key differs"

    def _data_changes(self, s: Stage) -> str:
        """Which files of the stage's data changed since its record, by name."""
        try:
            old = json.loads((self.out_dir(s.name) / DATA_STAMPS).read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        new = self.data.get(s.name) or {}
        changed = [
            f"{p} ({'deleted' if new[p] == 'missing' else 'edited or replaced'})"
            for p in sorted(set(old) & set(new))
            if old[p] != new[p]
        ]
        changed += [f"{p} (new)" for p in sorted(set(new) - set(old))]
        changed += [f"{p} (gone)" for p in sorted(set(old) - set(new))]
        if not changed:
            return "its data changed"
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        return f"data changed: {', '.join(changed[:5])}{more}"

    # --- running --------------------------------------------------------------------

    def _lock(self):
        path = self.work_dir / ".lock"
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")
        except OSError as e:
            raise AsrError(
                f"cannot write in the work directory {self.work_dir} ({e.strerror}); "
                "give one you can write to with --work-dir"
            ) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            m = re.match(r"pid (\d+)", holder)
            if m and not _alive(int(m.group(1))):
                left = _holders(path)
                raise AsrError(
                    f"{self.work_dir} was locked by pid {m.group(1)}, which has exited, but "
                    f"process(es) {left or '(not visible to this user)'} it left behind still hold the "
                    f"lock: stop them (kill {' '.join(map(str, left)) or 'PID'}) and run again"
                ) from None
            raise AsrError(
                f"{self.work_dir} is in use by {holder}; wait for that run to finish "
                "or give this one another --work-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({command_line()})")
        f.flush()
        _HELD.append(f)
        return f

    def _unlock(self, f) -> None:
        if f in _HELD:
            _HELD.remove(f)
        f.close()

    def _recover(self, name: str) -> None:
        """Undo a kill between the two renames of a replacement (see ``_publish``)."""
        final, old = self.out_dir(name), self.work_dir / f".old-{name}"
        if old.exists():
            if final.exists():
                shutil.rmtree(old)
            else:
                os.replace(old, final)

    def _publish(self, tmp: Path, name: str) -> None:
        final, old = self.out_dir(name), self.work_dir / f".old-{name}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def run(
        self,
        stage: str | int | None = None,
        stop_stage: str | int | None = None,
        force: bool = False,
        nj: int = 1,
        log: Callable[[str], None] | None = None,
        threads: int = 0,
    ) -> list[tuple[str, str]]:
        """Run stages ``stage..stop_stage``; returns ``(name, 'ran' | 'skipped')`` per stage. ``threads``: CPU threads
        of a stage's own computation (0: its share of the cores among the machine's runs, at each stage's start,
        :mod:`asr.core.cores`).

        Raises:
            AsrError: the work directory is locked, or a stage needs an input that
                is missing or stale and outside the requested range.
        """
        log = log or logging.getLogger("asr.run").info  # the CLI shows it on stdout
        first = self.resolve(stage, self.stages[0].number)
        last = self.resolve(stop_stage, self.stages[-1].number)
        if first > last:
            raise AsrError(f"--stage {stage} comes after --stop-stage {stop_stage}: nothing to run")
        if nj < 1:
            raise AsrError(f"--nj must be at least 1, got {nj}")
        lock = self._lock()
        try:
            with cores.running():
                return self._run_range(first, last, force, nj, threads, log)
        finally:
            self._unlock(lock)

    def _run_range(
        self, first: int, last: int, force: bool, nj: int, threads: int, log: Callable[[str], None]
    ) -> list[tuple[str, str]]:
        done: list[tuple[str, str]] = []
        for s in self.stages:
            self._recover(s.name)
            if not first <= s.number <= last:
                continue
            rec = self.record(s.name)
            if not force and rec is not None and rec.get("key") == self.keys[s.name]:
                log(f"stage {s.number} ({s.name}): up to date, skipped")
                restored = self._copy_exports(s)
                if restored:
                    log(f"stage {s.number} ({s.name}): restored {', '.join(restored)} in {self.work_dir}")
                done.append((s.name, "skipped"))
                continue
            self._check_inputs(s)
            share = threads or cores.fair_share()
            if share < cores.usable_cores() and not threads:
                log(f"stage {s.number} ({s.name}): {share} thread(s): {cores.live_runs()} asr runs share the cores")
            self._run_one(s, nj, share, log)
            done.append((s.name, "ran"))
        return done

    def _check_inputs(self, s: Stage) -> None:
        for inp in s.inputs:
            rec = self.record(inp)
            if rec is None or rec.get("key") != self.keys[inp]:
                state = "missing" if rec is None else "stale"
                n = next(x.number for x in self.stages if x.name == inp)
                raise AsrError(
                    f"stage {s.name!r} needs the output of stage {n} ({inp}), which is {state}; run from --stage {n}"
                )

    def _run_one(self, s: Stage, nj: int, threads: int, log: Callable[[str], None]) -> None:
        key = self.keys[s.name]
        tmp = self.work_dir / f".tmp-{s.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        partial = self.work_dir / f".partial-{s.name}"
        if partial.is_dir() and (not (partial / "KEY").is_file() or (partial / "KEY").read_text() != key):
            shutil.rmtree(partial)  # checkpoints of another configuration, or of nobody we know
        partial.mkdir(exist_ok=True)
        atomic_write_text(partial / "KEY", key)

        ctx = StageContext(
            stage=s,
            config=self.config[s.name],
            out=tmp,
            inputs={i: self.out_dir(i) for i in s.inputs},
            partial=partial,
            nj=nj,
            threads=threads,
            log=log,
        )
        log(f"stage {s.number} ({s.name}): running")
        start, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
        _reset_peak_rss()
        children_before = _children_peak_mb()
        result = s.run(ctx) or {}
        wall = time.perf_counter() - t0
        peak = _own_peak_mb()
        if _children_peak_mb() > children_before:  # a worker of this stage set a new high
            peak = max(peak, _children_peak_mb())
        if s.data is not None and self.data.get(s.name) is None:
            self.data[s.name] = s.data(self.config[s.name])  # the data it fetched: fixes its key
            self._rekey()
            key = self.keys[s.name]
        if s.data is not None:
            atomic_write_text(tmp / DATA_STAMPS, json.dumps(self.data[s.name] or {}, indent=0, sort_keys=True) + "\n")
        material = self._key_material(s)
        record = {
            "stage": s.name,
            "number": s.number,
            "version": s.version,
            "key": key,
            "config": material["config"],
            "inputs": material["inputs"],
            "data": material["data"],
            "asr_version": __version__,
            "git_commit": git_commit(),
            "start": start,
            "end": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_seconds": round(wall, 3),
            "peak_rss_mb": round(peak, 1),
            **result,
        }
        atomic_write_text(tmp / RECORD, json.dumps(record, indent=2, default=str) + "\n")  # written last
        self._publish(tmp, s.name)
        shutil.rmtree(partial, ignore_errors=True)
        stop_point("stages.published")
        self._copy_exports(s)
        log(f"stage {s.number} ({s.name}): done in {wall:.1f}s")

    def _copy_exports(self, s: Stage) -> list[str]:
        """Copy the stage's exports into the work directory where the copy is missing or differs (a kill or a
        full disk between publishing and copying left it so); returns the names copied."""
        copied = []
        for name in s.exports:
            src = self.out_dir(s.name) / name
            if src.is_file() and not same_file_content(src, self.work_dir / name):
                atomic_copy(src, self.work_dir / name)
                copied.append(name)
        return copied


def config_summary(config: Config) -> str:
    """``section.key = value`` lines (``section.group.key`` for nested groups), for ``--show-config``."""
    lines = []
    for section, obj in config.items():
        lines += [f"{section}.{k} = {v!r}" for k, v in flatten(obj).items()]
    return "\n".join(lines)
