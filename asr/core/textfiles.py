"""Text files as Kaldi and the recipes write them: UTF-8 lines (a line that is not is named by its number, a
byte-order mark is dropped), ``key value...`` tables, and ``text`` files (``utt-id word word ...``) for
references and hypotheses."""

from __future__ import annotations

from pathlib import Path

from asr.core.errors import AsrError, ManifestError
from asr.core.fsutil import atomic_write_text


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """The lines of a UTF-8 text file, numbered from 1, without their line ends.

    Raises:
        ManifestError: the file is missing, or lines that are not UTF-8 (every one, by number).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(str(path), [("-", f"cannot read the file ({e.strerror})")]) from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark (Windows editors write one) is no text
    lines, problems = [], []
    for lineno, data in enumerate(raw.splitlines(), 1):
        try:
            lines.append((lineno, data.decode("utf-8")))
        except UnicodeDecodeError as e:
            problems.append(
                (
                    f"line {lineno}",
                    f"not UTF-8 text (byte 0x{data[e.start]:02x} at column "
                    f"{e.start + 1}); convert the file, e.g. iconv -f latin1 -t utf-8",
                )
            )
    if problems:
        raise ManifestError(str(path), problems)
    return lines


def read_kaldi_table(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi ``key value...`` file: the key ends at the first whitespace (a space or a
    tab, as Kaldi reads it), the value is the rest of the line."""
    table, problems = {}, []
    for lineno, line in read_lines(path):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        if not value and not allow_empty_value:
            problems.append((key, f"{path.name}:{lineno} has no value"))
        elif key in table:
            problems.append((key, f"{path.name}:{lineno} repeats the key"))
        else:
            table[key] = value
    if problems:
        raise ManifestError(str(path), problems)
    return table


def _not_a_file(path: Path) -> str:
    """What ``path`` is, when it is no regular file (a FIFO is never opened: it would block)."""
    if not path.exists():
        return "no such file"
    return "is a folder, not a file" if path.is_dir() else "is not a regular file (a FIFO, socket or device)"


def read_text(path: str | Path) -> dict[str, str]:
    """Read a Kaldi ``text`` file (``utt-id word word ...``; any whitespace after the id).

    Raises:
        AsrError: missing file, lines that are not UTF-8, or repeated ids (all listed).
    """
    path = Path(path)
    if not path.is_file():
        raise AsrError(f"{path}: {_not_a_file(path)}; give a Kaldi text file (utt-id word word ...)")
    try:
        table = read_kaldi_table(path, allow_empty_value=True)
    except ManifestError as e:
        dups = [uid for uid, why in e.problems if "repeats the key" in why]
        if dups and len(dups) == len(e.problems):
            raise AsrError(f"{path}: repeated utterance ids: {dups[:20]}") from None
        raise
    return {uid: " ".join(text.split()) for uid, text in table.items()}


def write_text(path: str | Path, texts: dict[str, str]) -> None:
    """Write a Kaldi ``text`` file, sorted by id."""
    atomic_write_text(path, "".join(f"{k} {v}\n" if v else f"{k}\n" for k, v in sorted(texts.items())))
