"""Worker processes that die with their parent, and the test-only stop points.

Feature extraction and decoding fork ``--nj`` workers. If the main process is killed
(SIGKILL from the OOM killer or a user), orphaned workers would go on burning CPU
and writing into a temporary folder; here every worker asks the kernel to kill it
when its parent dies (Linux ``PR_SET_PDEATHSIG``) and exits at once if the parent
is already gone.

``stop_point(name, n)`` lets a test stop a run at an exact place, never at a time:
with ``ASR_TEST_STOP_AT=name:n`` in the environment the process kills itself with
SIGKILL the ``n``-th time it reaches the point ``name`` (e.g. ``train.step:7``).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable

STOP_ENV = "ASR_TEST_STOP_AT"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_reached: Counter = Counter()


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` exits (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def fork_pool(processes: int, initializer: Callable | None = None, initargs: tuple = ()):
    """A ``multiprocessing`` fork pool whose workers die with this process."""
    return mp.get_context("fork").Pool(processes, initializer=_init, initargs=(os.getpid(), initializer, initargs))


def stop_point(name: str) -> None:
    """Count a pass through ``name``; SIGKILL this process when ``$ASR_TEST_STOP_AT`` names this pass."""
    target = os.environ.get(STOP_ENV)
    if not target:
        return
    _reached[name] += 1
    if target == f"{name}:{_reached[name]}":
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
