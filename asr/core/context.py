"""What a recipe's stage is (:class:`Stage`) and what a running stage sees (:class:`StageContext`): plain data,
so every stage function can name its argument's type without importing the runner (:mod:`asr.pipeline.runner`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One step of a recipe.

    Attributes:
        number: position shown to users (``--stage 3``).
        name: directory name and ``--stage`` alias; also the config section it reads.
        run: the work; returns counts/metrics to store in the record.
        inputs: names of the stages whose outputs it reads.
        version: the version of the code that writes this stage's output (a ``VERSION``
            constant next to that code); a record of another version is stale.
        exports: files of its output copied into the work directory when it finishes
            (e.g. ``RESULTS.md``).
        data: for a stage reading files outside the work directory, ``config -> {file: stamp}``
            (see :func:`asr.data.manifest.data_fingerprint`), or ``None`` while the data is not
            there yet (a corpus to download).
        check: ``config -> None``; raises :class:`ConfigError` for settings the stage refuses,
            before anything runs.
    """

    number: int
    name: str
    run: Callable[[StageContext], dict | None]
    inputs: tuple[str, ...] = ()
    version: int | str = 1
    exports: tuple[str, ...] = ()
    data: Callable[[Any], dict[str, str] | None] | None = None
    check: Callable[[Any], None] | None = None


@dataclass
class StageContext:
    """What a running stage sees."""

    stage: Stage
    config: Any  # this stage's config section (a frozen dataclass)
    out: Path  # the temporary output directory to write into
    inputs: dict[str, Path]  # input stage name -> its finished output directory
    partial: Path | None  # survives a kill when the key is unchanged (checkpoints); None: the stage keeps none
    nj: int = 1
    threads: int = 0  # CPU threads for the stage's own computation (0: the runtime's default)
    log: Callable[[str], None] = field(default=logging.getLogger("asr.run").info)
