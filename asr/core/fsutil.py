"""Small file-system helpers shared by the stages: writes that never leave half a file, and
the stamps and hashes the cache compares."""

from __future__ import annotations

import filecmp
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from asr.core.errors import AsrError

CHUNK = 1 << 20


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as :func:`atomic_write_bytes` does."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as :func:`atomic_write` does."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Have ``write`` fill a temporary file beside ``path``, then rename it into place, so that readers see the
    old file or the new one, never a part; on any failure the temporary file is removed.

    The file gets the usual permissions (0666 less the umask), as any other tool writing
    a shared work directory would give it: ``tempfile.mkstemp`` would make it 0600.

    Raises:
        OSError: naming ``path`` (a full disk's error from ``write`` names no file by itself).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise e if e.filename else OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` as :func:`atomic_write` writes (in blocks, not all in memory)."""
    with open(src, "rb") as g:
        atomic_write(dst, lambda f: shutil.copyfileobj(g, f, CHUNK))


def same_file_content(a: str | Path, b: str | Path) -> bool:
    """Whether ``b`` is a regular file with ``a``'s bytes."""
    return Path(b).is_file() and filecmp.cmp(a, b, shallow=False)


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` if a command may write a file there: an existing regular file (replaced) or a new name in an
    existing folder. (``os.replace`` onto a device, a folder or a missing folder did harm or failed late.)

    Raises:
        AsrError: anything else, named with ``option`` and what to give instead.
    """
    if not str(path).strip():
        raise AsrError(f"{option}: the file name is empty; give one")
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if not p.parent.is_dir():
            raise AsrError(f"{p.parent}: no such folder (for {option} {p}); create it first") from None
        return p
    except OSError as e:
        raise AsrError(f"{option} {p}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise AsrError(f"{option} {p}: is {kind}; give a new file name or a file to replace")
    return p


def check_output_folder(path: str | Path, option: str) -> Path:
    """``path`` if a command may write files into it: an existing folder, or a new one (its parents are created).

    Raises:
        AsrError: an empty name, or a path that is something other than a folder.
    """
    if not str(path).strip():
        raise AsrError(f"{option}: the folder name is empty; give one")
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not p.is_dir():
        raise AsrError(f"{option} {p}: is a file or device, not a folder; give a folder (it is created if missing)")
    return p


def sha256sum(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: str | Path) -> str:
    """``"<size> <mtime ns>"`` of a file (what changes when it is edited or replaced), or ``"missing"``."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size} {st.st_mtime_ns}"
