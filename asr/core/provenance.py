"""What produced an output: the package version, the git commit of the checkout and the command line.
Records, RESULTS.md and exported model files carry them; nothing else in the library reads ``sys.argv``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__version__ = "0.1.0"  # as in pyproject.toml
REPO = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one

__all__ = ["__version__", "command_line", "git_commit"]


def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or ``unknown`` outside a checkout."""
    if not (REPO / ".git").exists():  # an installed package: not a checkout (nor the repository around it)
        return "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return head.stdout.strip()[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    """The command this process runs, as a user typed it (``asr run ...`` for the console script)."""
    return " ".join(["asr", *sys.argv[1:]]) if sys.argv[0].endswith("asr") else " ".join(sys.argv)
