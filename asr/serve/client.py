"""A plain HTTP client of the service (the benchmarks' and the tests'; no dependencies)."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid


def post_audio(url: str, file_name: str, data: bytes, timeout: float = 60.0, **fields) -> tuple[int, str]:
    """A client: POST ``data`` as ``file_name`` to ``url``'s transcription endpoint, in the form OpenAI's
    clients send; returns the HTTP status and the body."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in {"model": "asr", **fields}.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"{url.rstrip('/')}/v1/audio/transcriptions",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
