"""Many recordings at once (``asr transcribe`` of folders, list files and globs): the inputs expanded, decoded by
``nj`` worker processes in order, progress shown (files, hours of audio, real-time factor, time left) on a
terminal as a bar and elsewhere as a log line every :data:`LOG_SECONDS`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from asr.core.errors import AsrError
from asr.core.procs import fork_pool
from asr.text.transcript import Transcript

# what soundfile (libsndfile) reads; a folder's other files are not audio
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph")
LOG_SECONDS = 30.0


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


def _init(load: Callable) -> None:
    _worker["rec"] = load()


def _one(path: str) -> tuple[str, Transcript | None, str, float]:
    t0 = time.perf_counter()
    try:
        t = _worker["rec"].transcribe(path)
        return path, t, "", time.perf_counter() - t0
    except AsrError as e:
        return path, None, str(e), time.perf_counter() - t0


def transcribe_all(load: Callable, paths: list[str], nj: int = 1) -> Iterator[tuple[str, Transcript | None, str]]:
    """``(path, transcript, "")`` or ``(path, None, error)`` for each path, in order; ``load()`` makes a recognizer
    (once per worker process, or here when ``nj`` is 1). Progress goes to standard error."""
    progress = Progress(len(paths))
    if nj <= 1 or len(paths) <= 1:
        _init(load)
        results = map(_one, paths)
        pool = None
    else:
        pool = fork_pool(min(nj, len(paths)), _init, (load,))
        results = pool.imap(_one, paths)
    try:
        for path, t, error, spent in results:
            progress.step(t, spent)
            yield path, t, error
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()


class Progress:
    """Files done, hours of audio, real-time factor and time left: a tqdm bar on a terminal, else a line on
    standard error every :data:`LOG_SECONDS` and at the end (for more than one file)."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.total, self.done, self.audio, self.start, self.logged = total, 0, 0.0, time.perf_counter(), 0.0
        self.bar = tqdm(total=total, unit="file", disable=not sys.stderr.isatty() or total < 2, leave=False)

    def step(self, t: Transcript | None, spent: float) -> None:
        self.done += 1
        self.audio += (t.duration or 0.0) if t is not None else 0.0
        self.bar.update(1)
        self.bar.set_postfix_str(self.line(), refresh=False)
        now = time.perf_counter()
        if self.bar.disable and self.total > 1 and (now - self.logged >= LOG_SECONDS or self.done == self.total):
            self.logged = now
            print(f"asr transcribe: {self.done}/{self.total} files, {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        wall = time.perf_counter() - self.start
        left = wall / self.done * (self.total - self.done) if self.done else 0.0
        rtf = wall / self.audio if self.audio else 0.0
        return f"{self.audio / 3600:.2f} h of audio, RTF {rtf:.3f}, {left:.0f} s left"

    def close(self) -> None:
        self.bar.close()
