"""``asr serve``: a transcription service over HTTP, and a web page to try it.

FastAPI on uvicorn. The model is loaded once per worker process. Endpoints:

- ``POST /v1/audio/transcriptions``: the OpenAI audio API's form fields (``file``, ``model``
  (ignored: the server has one), ``response_format`` = ``json`` | ``text`` | ``verbose_json``
  with word times, ``language``, ``prompt``, ``temperature`` (accepted, unused)), so
  existing clients work unchanged.
- ``GET /health``: ``{"status": "ok", "model": ...}``.
- ``GET /``: the page (pick, drop or record audio; see the transcript and the words' times).

Uploads are decoded in memory (nothing is written to disk). Bad input (not audio, empty,
truncated, larger than ``max_mb``, longer than ``max_seconds``) gets an HTTP 4xx with a JSON
``{"error": {"message", "type"}}`` naming the problem, and the service goes on serving.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from importlib import resources

import numpy as np
import soundfile as sf
import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from asr.errors import AsrError
from asr.transcribe import Recognizer, load_model

ENV = "ASR_SERVE_CONFIG"  # the worker processes' settings, as JSON (uvicorn starts them by import string)
FORMATS = ("json", "text", "verbose_json")
FORM_OVERHEAD = 100_000  # bytes a multipart form may add around the file itself


class BadInput(Exception):
    """A request the service refuses: ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def decode_upload(data: bytes, name: str, max_mb: float, max_seconds: float) -> tuple[np.ndarray, int]:
    """The upload's samples (mono float32) and rate.

    Raises:
        BadInput: empty, too large, not audio (or truncated), or too long.
    """
    if not data:
        raise BadInput(400, f"{name}: the file is empty; send an audio file (WAV, FLAC, OGG)")
    if len(data) > max_mb * 1e6:
        raise BadInput(413, f"{name}: {len(data) / 1e6:.1f} MB is over this server's limit of {max_mb:g} MB")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            seconds = f.frames / f.samplerate
            if seconds > max_seconds:
                raise BadInput(413, f"{name}: {seconds:.0f} s of audio is over this server's limit of "
                                    f"{max_seconds:g} s; split it")
            wave = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except BadInput:
        raise
    except Exception as e:  # libsndfile's errors come as several types; all mean "not readable audio"
        reason = str(e).strip().rsplit(": ", 1)[-1][:120]  # libsndfile's reason, without the BytesIO's repr
        raise BadInput(400, f"{name}: not a readable audio file, or a truncated one ({reason}); "
                            "send WAV, FLAC or OGG") from None
    if len(wave) == 0:
        raise BadInput(400, f"{name}: the file holds no samples")
    return wave.mean(axis=1), rate


def create_app(recognizer: Recognizer, name: str, max_mb: float = 25.0, max_seconds: float = 600.0) -> FastAPI:
    """The service around one loaded model."""
    app = FastAPI(title="asr", summary="Speech recognition: an OpenAI-compatible transcription endpoint")
    lock = threading.Lock()  # a recognizer's decoder is not thread-safe: one request at a time per process
    page = resources.files("asr").joinpath("static/index.html").read_text(encoding="utf-8")

    def error(e: BadInput) -> JSONResponse:
        return JSONResponse({"error": {"message": e.message, "type": e.kind}}, status_code=e.status)

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, e: BadInput) -> JSONResponse:
        return error(e)

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        """An upload over the limit is refused from its Content-Length, without parsing or keeping it; the
        body is still read (and dropped), since a client still sending when the answer comes gets a broken pipe."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_mb * 1e6 + FORM_OVERHEAD:
            async for _ in request.stream():
                pass
            return error(BadInput(413, f"the request is {int(length) / 1e6:.1f} MB, over this server's limit of "
                                       f"{max_mb:g} MB"))
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": name, "decoding": recognizer.options.method,
                "sample_rate": recognizer.sample_rate}

    @app.post("/v1/audio/transcriptions")
    def transcriptions(file: UploadFile = File(...), model: str = Form(""), response_format: str = Form("json"),
                       language: str = Form(""), prompt: str = Form(""), temperature: float = Form(0.0)):
        if response_format not in FORMATS:
            raise BadInput(400, f"response_format {response_format!r} is not one of {list(FORMATS)}")
        data = file.file.read(int(max_mb * 1e6) + 1)
        wave, rate = decode_upload(data, file.filename or "upload", max_mb, max_seconds)
        t0 = time.perf_counter()
        try:
            with lock:
                result = recognizer.transcribe(wave, sample_rate=rate)
        except AsrError as e:
            raise BadInput(400, f"{file.filename}: {e}") from None
        if response_format == "text":
            return PlainTextResponse(result.text + "\n")
        if response_format == "json":
            return {"text": result.text}
        return {"task": "transcribe", "language": language or "english", "duration": round(len(wave) / rate, 3),
                "text": result.text, "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
                                               for w in result.words],
                "processing_seconds": round(time.perf_counter() - t0, 4)}

    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process, from the settings ``serve`` put in the environment."""
    cfg = json.loads(os.environ[ENV])
    # one thread per worker: requests run in parallel across workers (--workers), not inside one
    recognizer = load_model(cfg["model"], lm=cfg.get("lm"), chunk_seconds=cfg["chunk_seconds"], threads=1,
                            **cfg.get("decoding", {}))
    return create_app(recognizer, cfg["model"], cfg["max_mb"], cfg["max_seconds"])


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, max_mb: float = 25.0,
          max_seconds: float = 600.0, lm: str | None = None, decoding: dict | None = None,
          chunk_seconds: float = 30.0) -> None:
    """Load the model (once per worker), bind ``host:port`` (0: a free port), say where, and serve until stopped.

    The socket is bound before the address is printed, so a client that reads the line can connect
    at once (its connection waits in the backlog until a worker accepts it).

    Raises:
        AsrError: a bad model file or options (checked here, before any worker starts), or a port in use.
    """
    if not 0 <= port <= 65535:
        raise AsrError(f"--port {port} is no TCP port: give 0-65535 (0: any free one)")
    if workers < 1 or not 0 < max_mb < math.inf or not 0 < max_seconds < math.inf:
        raise AsrError(f"--workers ({workers}), --max-mb ({max_mb}) and --max-seconds ({max_seconds}) must be positive")
    # fail here, with our message, not in a worker
    load_model(model, lm=lm, chunk_seconds=chunk_seconds, **(decoding or {}))
    os.environ[ENV] = json.dumps({"model": model, "lm": lm, "decoding": decoding or {}, "max_mb": max_mb,
                                  "max_seconds": max_seconds, "chunk_seconds": chunk_seconds})
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise AsrError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    sock.listen(2048)
    print(f"asr serve: listening on http://{host}:{sock.getsockname()[1]}/ ({workers} worker(s), model {model})",
          flush=True)
    if workers > 1:
        sock.set_inheritable(True)
    uvicorn.run("asr.serve:app_from_env", factory=True, fd=sock.fileno(), workers=workers, log_level="warning",
                access_log=False)
    print("asr serve: stopped", file=sys.stderr)


def post_audio(url: str, file_name: str, data: bytes, timeout: float = 60.0, **fields) -> tuple[int, str]:
    """A client: POST ``data`` as ``file_name`` to ``url``'s transcription endpoint, in the form OpenAI's
    clients send; returns the HTTP status and the body."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in {"model": "asr", **fields}.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url.rstrip('/')}/v1/audio/transcriptions", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
