"""One module per corpus: where to get it, how to parse its file names, its splits."""

from __future__ import annotations

import os
from pathlib import Path

CORPORA_ENV = "ASR_CORPORA"


def local_root(corpus_dir: str | Path | None) -> Path | None:
    """The folder holding local corpus copies: ``corpus_dir``, else ``$ASR_CORPORA``, else None."""
    if corpus_dir:
        return Path(corpus_dir)
    env = os.environ.get(CORPORA_ENV)
    return Path(env) if env else None
