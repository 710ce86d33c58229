"""Many recordings at once (``asr transcribe`` of folders, list files and globs): the inputs expanded, decoded by
``nj`` worker processes in order, progress shown (files, hours of audio, real-time factor, time left) on a
terminal as a bar and elsewhere as a log line every :data:`LOG_SECONDS`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from asr.core.errors import AsrError
from asr.core.procs import fork_pool
from asr.text.transcript import Transcript

# what soundfile (libsndfile) reads; a folder's other files are not audio
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph")
LOG_SECONDS = 30.0
T = TypeVar("T")


def expand(items: list[str], problems: list[str] | None = None) -> list[tuple[str, str]]:
    """Inputs -> ``(audio path, output name)``: a file as it is (named by its stem), ``@list.txt`` its lines (each
    an input), a folder every audio file below it (named by its path inside the folder, so two ``a.wav`` in
    different subfolders do not write the same output); a folder without audio is added to ``problems``.

    Raises:
        AsrError: a list file that cannot be read, or two inputs that would write the same output name.
    """
    out: list[tuple[str, str]] = []
    for item in items:
        if item.startswith("@") and item != "@":
            path = Path(item[1:])
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise AsrError(f"{path}: cannot read the list of inputs ({e})") from None
            out += expand([line.strip() for line in lines if line.strip() and not line.startswith("#")], problems)
        elif Path(item).is_dir():
            root = Path(item)
            found = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            out += [(str(p), str(p.relative_to(root).with_suffix(""))) for p in found]
            if not found and problems is not None:
                problems.append(f"{item}: a folder without audio files ({', '.join(AUDIO_SUFFIXES)})")
        else:
            out.append((item, Path(item).stem or "audio"))
    names: dict[str, str] = {}
    for path, name in out:
        if name in names and names[name] != path:
            raise AsrError(f"{names[name]} and {path} would both write outputs named {name!r}: give them apart")
        names[name] = path
    return out


_worker: dict = {}


def _init(load: Callable, read: Callable | None) -> None:
    _worker["rec"], _worker["read"] = load(), read


def _one(item: T) -> tuple[T, Transcript | None, str]:
    rec, read = _worker["rec"], _worker["read"]
    try:
        t = rec.transcribe(read(item, rec.sample_rate), rec.sample_rate) if read else rec.transcribe(item)
        return item, t, ""
    except AsrError as e:
        return item, None, str(e)


def transcribe_all(
    load: Callable,
    items: list[T],
    nj: int = 1,
    read: Callable[[T, int], np.ndarray] | None = None,
    command: str = "asr transcribe",
) -> Iterator[tuple[T, Transcript | None, str]]:
    """``(item, transcript, "")`` or ``(item, None, error)`` for each item, in order; ``load()`` makes a recognizer
    (once per worker process, or here when ``nj`` is 1). An item is an audio path, or what ``read(item, rate)``
    turns into samples at the model's rate (a manifest's utterance). Progress goes to standard error, named by
    ``command``."""
    progress = Progress(len(items), command)
    if nj <= 1 or len(items) <= 1:
        _init(load, read)
        results = map(_one, items)
        pool = None
    else:
        pool = fork_pool(min(nj, len(items)), _init, (load, read))
        results = pool.imap(_one, items)
    try:
        for item, t, error in results:
            progress.step(t)
            yield item, t, error
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()


class Progress:
    """Files done, hours of audio, real-time factor and time left: a tqdm bar on a terminal, else a line on
    standard error every :data:`LOG_SECONDS` and at the end (for more than one file)."""

    def __init__(self, total: int, command: str = "asr transcribe"):
        from tqdm import tqdm

        self.command = command
        self.total, self.done, self.audio, self.start, self.logged = total, 0, 0.0, time.perf_counter(), 0.0
        self.bar = tqdm(total=total, unit="file", disable=not sys.stderr.isatty() or total < 2, leave=False)

    def step(self, t: Transcript | None) -> None:
        self.done += 1
        self.audio += (t.duration or 0.0) if t is not None else 0.0
        self.bar.update(1)
        self.bar.set_postfix_str(self.line(), refresh=False)
        now = time.perf_counter()
        if self.bar.disable and self.total > 1 and (now - self.logged >= LOG_SECONDS or self.done == self.total):
            self.logged = now
            print(f"{self.command}: {self.done}/{self.total} files, {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        wall = time.perf_counter() - self.start
        left = wall / self.done * (self.total - self.done) if self.done else 0.0
        rtf = wall / self.audio if self.audio else 0.0
        return f"{self.audio / 3600:.2f} h of audio, RTF {rtf:.3f}, {left:.0f} s left"

    def close(self) -> None:
        self.bar.close()
