"""How many CPU threads a run may use: the cores this process may run on, shared among the ``asr run``s of the
machine.

Two trainings side by side on 2 cores, each at torch's default of one thread per core, ran about ten times
slower than one after the other (the threads spin and wait for each other); at one thread each, each takes
about twice as long as alone. So each ``asr run`` holds a lock file in a folder of this user's runs while it
runs, and a stage starting counts the live ones and takes its share of the cores. (By hand: the standard
library has the pieces, no package shares cores among unrelated processes.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def runs_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"asr-runs-{os.getuid()}"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def running() -> Iterator[None]:
    """Count this process among the machine's running ``asr run``s until the block ends (a killed process's lock
    goes with it)."""
    folder = runs_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / str(os.getpid())
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def live_runs() -> int:
    """The ``asr run``s holding their lock now (this one included, when it runs), at least 1."""
    count = 0
    folder = runs_dir()
    for path in folder.iterdir() if folder.is_dir() else ():
        try:
            with open(path) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    count += 1  # held: a live run
                    continue
            path.unlink(missing_ok=True)  # left by a run that is gone
        except OSError:
            continue
    return max(1, count)


def fair_share() -> int:
    """Threads for a stage starting now: this process's cores divided among the live runs, at least 1."""
    return max(1, usable_cores() // live_runs())
