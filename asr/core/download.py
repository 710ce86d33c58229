"""Downloading and unpacking public corpora: checksum-verified, atomic, safe to extract."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from asr.core.errors import CorpusError
from asr.core.fsutil import CHUNK, sha256sum


def download(url: str, dest: str | Path, sha256: str | None, timeout: float = 60.0, min_bytes: int = 0) -> Path:
    """Download ``url`` to ``dest`` unless a file that passes the checks is already there.

    The bytes go to ``dest.part`` and are renamed into place only after the checks
    pass, so an interrupted or corrupted download never passes for a good one.

    Args:
        sha256: the checksum the publisher lists; ``None`` only for an archive whose
            publisher lists none, which is then checked by ``min_bytes`` alone here (the
            caller checks its content after extraction).
        min_bytes: the least size a complete file can have.
    Raises:
        CorpusError: the server cannot be reached, or the checksum or size is wrong.
    """
    dest = Path(dest)
    if dest.is_file():
        if (sha256sum(dest) == sha256) if sha256 else dest.stat().st_size >= min_bytes:
            return dest
        dest.unlink()  # a stale or corrupt copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
            announced = int(r.headers.get("Content-Length") or -1)
            for block in iter(lambda: r.read(CHUNK), b""):
                h.update(block)
                f.write(block)
                size += len(block)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # HTTPException: cut off mid-body
        part.unlink(missing_ok=True)
        raise CorpusError(
            f"cannot download {url}: {type(e).__name__}: {e}; nothing was kept, run again to restart it. "
            "Without internet access, point the recipe at a local copy with --corpus-dir or the ASR_CORPORA "
            "environment variable"
        ) from None
    if 0 <= announced != size:  # urllib returns what came when a connection drops mid-body
        part.unlink(missing_ok=True)
        raise CorpusError(
            f"cannot download {url}: the connection was cut off after {size} of {announced} bytes; "
            "nothing was kept, run again to restart it"
        )
    if sha256 and h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise CorpusError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}")
    if size < min_bytes:
        part.unlink(missing_ok=True)
        raise CorpusError(f"{url}: got {size} bytes, a complete copy has at least {min_bytes}; try again")
    os.replace(part, dest)
    return dest


def extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a tar archive into ``dest`` atomically and safely.

    Uses tarfile's ``data`` filter (PEP 706), which refuses absolute paths, ``..``
    components, links pointing outside the destination, and device files.

    Raises:
        CorpusError: the archive is unreadable or holds an unsafe member.
    """
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorpusError(f"cannot safely extract {archive}: {e}") from None
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest
