"""``asr serve``: the model checked, the socket bound, then uvicorn's worker processes serve
:func:`asr.serve.app.app_from_env`."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from collections.abc import Sequence

import uvicorn

from asr.core.errors import AsrError
from asr.recognize.recognizer import load_model
from asr.search.hotwords import Hotword
from asr.serve.app import ENV, MAX_CONNECTIONS
from asr.serve.guard import TIMEOUT_SECONDS, HeaderTimeoutProtocol

KEEP_ALIVE_SECONDS = 5  # uvicorn closes an idle keep-alive connection after this
MAX_STREAM_MESSAGE = 512 * 1024  # bytes of one WebSocket message (16 s of 16 kHz audio); larger: close 1009
# open sockets per worker past which uvicorn itself answers 503 (idle ones included): a bound on file descriptors
# well above --max-connections, which counts requests and streams, so /health stays answerable
SOCKETS_PER_CONNECTION = 16


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_mb: float = 25.0,
    max_seconds: float = 600.0,
    lm: str | None = None,
    decoding: dict | None = None,
    chunk_seconds: float = 30.0,
    timeout: float = TIMEOUT_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
    api_docs: bool = False,
    hotwords: Sequence[Hotword] = (),
    ensemble: Sequence[str] = (),
) -> None:
    """Load the model (once per worker), bind ``host:port`` (0: a free port), say where, and serve until stopped.

    The socket is bound before the address is printed, so a client that reads the line can connect
    at once (its connection waits in the backlog until a worker accepts it). With several workers,
    each says ``asr serve: worker PID ready`` on stderr once it serves, and dies with this process.

    ``hotwords`` count for every request (a request adds its own: :mod:`asr.serve.app`); ``ensemble``: other
    model files whose posteriors are averaged with the model's.

    Raises:
        AsrError: a bad model file, options or hotwords (checked here, before any worker starts), or a port in use.
    """
    if not 0 <= port <= 65535:
        raise AsrError(f"--port {port} is no TCP port: give 0-65535 (0: any free one)")
    if workers < 1 or max_connections < 1 or not all(0 < x < math.inf for x in (max_mb, max_seconds, timeout)):
        raise AsrError(
            f"--workers ({workers}), --max-mb ({max_mb}), --max-seconds ({max_seconds}), --timeout "
            f"({timeout}) and --max-connections ({max_connections}) must be positive"
        )
    # fail here, with our message, not in a worker
    load_model(model, lm=lm, chunk_seconds=chunk_seconds, hotwords=hotwords, ensemble=ensemble, **(decoding or {}))
    os.environ[ENV] = json.dumps(
        {
            "model": model,
            "lm": lm,
            "decoding": decoding or {},
            "max_mb": max_mb,
            "max_seconds": max_seconds,
            "chunk_seconds": chunk_seconds,
            "timeout": timeout,
            "max_connections": max_connections,
            "api_docs": api_docs,
            "hotwords": [[h.text, h.boost] for h in hotwords],
            "ensemble": list(ensemble),
            "parent": os.getpid() if workers > 1 else None,
        }
    )
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise AsrError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    sock.listen(2048)
    print(
        f"asr serve: listening on http://{host}:{sock.getsockname()[1]}/ ({workers} worker(s), model {model})",
        flush=True,
    )
    if workers > 1:
        sock.set_inheritable(True)
    uvicorn.run(
        "asr.serve.app:app_from_env",
        factory=True,
        fd=sock.fileno(),
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        http=HeaderTimeoutProtocol,  # a connection's request headers must arrive within --timeout
        limit_concurrency=max(1024, SOCKETS_PER_CONNECTION * max_connections),
        ws_max_size=MAX_STREAM_MESSAGE,
        ws_per_message_deflate=False,  # a small compressed frame can inflate to gigabytes before the size check
    )
    print("asr serve: stopped", file=sys.stderr)
