"""The stage runner: numbered, named, cached stages whose outputs appear atomically.

A stage is a function ``run(ctx) -> dict | None`` that reads only the output
directories of the stages it names as inputs and writes only ``ctx.out``. Its
cache key hashes its name, version, config section and the keys of its inputs,
so changing one parameter re-runs that stage and everything downstream and
nothing upstream. Work happens in a temporary directory that is renamed into
place after ``record.json`` (written last) is in it: a killed run leaves the
previous complete output or none.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.config import Config, to_dict
from asr.errors import AsrError, ConfigError
from asr.fsutil import atomic_write_text

RECORD = "record.json"


@dataclass(frozen=True)
class Stage:
    """One step of a recipe.

    Attributes:
        number: position shown to users (``--stage 3``).
        name: directory name and ``--stage`` alias; also the config section it reads.
        run: the work; returns counts/metrics to store in the record.
        inputs: names of the stages whose outputs it reads.
        version: bump when the code changes what the stage writes.
        exports: files of its output copied into the work directory when it finishes
            (e.g. ``RESULTS.md``).
    """

    number: int
    name: str
    run: Callable[[StageContext], dict | None]
    inputs: tuple[str, ...] = ()
    version: int = 1
    exports: tuple[str, ...] = ()


@dataclass
class StageContext:
    """What a running stage sees."""

    stage: Stage
    config: Any  # this stage's config section (a frozen dataclass)
    out: Path  # the temporary output directory to write into
    inputs: dict[str, Path]  # input stage name -> its finished output directory
    partial: Path  # survives a kill when the key is unchanged (checkpoints)
    nj: int = 1
    log: Callable[[str], None] = field(default=print)


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)  # Linux reports KiB


class Pipeline:
    """A recipe's stages with their config, bound to a work directory.

    Raises:
        ConfigError: duplicate stage names/numbers, an input that is not an
            earlier stage, or a stage without a config section.
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
        self.keys: dict[str, str] = {}
        for s in self.stages:
            self.keys[s.name] = self._key(s)

    # --- keys and records -----------------------------------------------------------

    def _key_material(self, s: Stage) -> dict:
        return {"stage": s.name, "version": s.version, "config": to_dict(self.config[s.name]),
                "inputs": {i: self.keys[i] for i in s.inputs}}

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
                rows.append((s, "done", f"{rec.get('wall_seconds', 0):.1f}s on {rec.get('end', '?')}"))
            else:
                rows.append((s, "stale", self._why_stale(s, rec)))
        return rows

    def _why_stale(self, s: Stage, rec: dict) -> str:
        now = self._key_material(s)
        reasons = []
        if rec.get("version") != s.version:
            reasons.append(f"stage version {rec.get('version')} -> {s.version}")
        old_cfg = rec.get("config", {})
        for k in sorted(set(old_cfg) | set(now["config"])):
            if old_cfg.get(k) != now["config"].get(k):
                reasons.append(f"{s.name}.{k}: {old_cfg.get(k)!r} -> {now['config'].get(k)!r}")
        for inp, key in now["inputs"].items():
            if rec.get("inputs", {}).get(inp) != key:
                reasons.append(f"input {inp!r} changed")
        return "; ".join(reasons) or "cache key differs"

    # --- running --------------------------------------------------------------------

    def _lock(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.work_dir / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise AsrError(f"{self.work_dir} is in use by {holder}; wait for that run to finish "
                           "or give this one another --work-dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({' '.join(sys.argv)})")
        f.flush()
        return f

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

    def run(self, stage: str | int | None = None, stop_stage: str | int | None = None, force: bool = False,
            nj: int = 1, log: Callable[[str], None] = print) -> list[tuple[str, str]]:
        """Run stages ``stage..stop_stage``; returns ``(name, 'ran' | 'skipped')`` per stage.

        Raises:
            AsrError: the work directory is locked, or a stage needs an input that
                is missing or stale and outside the requested range.
        """
        first = self.resolve(stage, self.stages[0].number)
        last = self.resolve(stop_stage, self.stages[-1].number)
        lock = self._lock()
        try:
            done: list[tuple[str, str]] = []
            for s in self.stages:
                self._recover(s.name)
                if not first <= s.number <= last:
                    continue
                rec = self.record(s.name)
                if not force and rec is not None and rec.get("key") == self.keys[s.name]:
                    log(f"stage {s.number} ({s.name}): up to date, skipped")
                    done.append((s.name, "skipped"))
                    continue
                self._check_inputs(s)
                self._run_one(s, nj, log)
                done.append((s.name, "ran"))
            return done
        finally:
            lock.close()

    def _check_inputs(self, s: Stage) -> None:
        for inp in s.inputs:
            rec = self.record(inp)
            if rec is None or rec.get("key") != self.keys[inp]:
                state = "missing" if rec is None else "stale"
                n = next(x.number for x in self.stages if x.name == inp)
                raise AsrError(f"stage {s.name!r} needs the output of stage {n} ({inp}), which is {state}; "
                               f"run from --stage {n}")

    def _run_one(self, s: Stage, nj: int, log: Callable[[str], None]) -> None:
        key = self.keys[s.name]
        tmp = self.work_dir / f".tmp-{s.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        partial = self.work_dir / f".partial-{s.name}"
        if (partial / "KEY").is_file() and (partial / "KEY").read_text() != key:
            shutil.rmtree(partial)  # checkpoints of another configuration
        partial.mkdir(exist_ok=True)
        (partial / "KEY").write_text(key)

        ctx = StageContext(stage=s, config=self.config[s.name], out=tmp,
                           inputs={i: self.out_dir(i) for i in s.inputs}, partial=partial, nj=nj, log=log)
        log(f"stage {s.number} ({s.name}): running")
        start, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
        result = s.run(ctx) or {}
        wall = time.perf_counter() - t0
        material = self._key_material(s)
        record = {"stage": s.name, "number": s.number, "version": s.version, "key": key,
                  "config": material["config"], "inputs": material["inputs"],
                  "start": start, "end": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "wall_seconds": round(wall, 3), "peak_rss_mb": _peak_rss_mb(), **result}
        atomic_write_text(tmp / RECORD, json.dumps(record, indent=2, default=str) + "\n")  # written last
        self._publish(tmp, s.name)
        shutil.rmtree(partial, ignore_errors=True)
        for name in s.exports:
            atomic_write_text(self.work_dir / name, (self.out_dir(s.name) / name).read_text())
        log(f"stage {s.number} ({s.name}): done in {wall:.1f}s")


def config_summary(config: Config) -> str:
    """``section.key = value`` lines, for ``asr run --show-config``."""
    lines = []
    for section, obj in config.items():
        for f in dataclasses.fields(obj):
            lines.append(f"{section}.{f.name} = {getattr(obj, f.name)!r}")
    return "\n".join(lines)
