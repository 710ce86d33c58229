"""``asr serve``: a transcription service over HTTP, and a web page to try it.

FastAPI on uvicorn. The model is loaded once per worker process. Endpoints:

- ``POST /v1/audio/transcriptions``: the OpenAI audio API's form fields (``file``, ``model``
  (ignored: the server has one), ``response_format`` = ``json`` | ``text`` | ``verbose_json``
  with word times, ``language``, ``prompt``, ``temperature`` (accepted, unused)), so
  existing clients work unchanged.
- ``GET /health``: ``{"status": "ok", "model": <file name>, ...}``.
- ``GET /``: the page (pick, drop or record audio; see the transcript and the words' times).
- ``WebSocket /v1/stream`` (a streaming model): live transcription in Vosk's server protocol, so Vosk's
  clients work unchanged: an optional text message ``{"config": {"sample_rate": N}}`` (default: the
  model's rate), binary messages of 16-bit little-endian mono PCM, each answered with one message:
  ``{"partial": "..."}`` or, when an endpoint ended an utterance, ``{"result": [{"word", "start", "end",
  "conf"}], "text": "..."}`` (times in seconds from the stream's start); then ``{"eof": 1}``, answered
  with the last utterance's result. A bad message (text that is not JSON or not one of these, an odd
  byte count, a sample rate that is no number of Hz in 1000-192000, a new rate after audio, anything
  after eof) gets ``{"error": "..."}`` and the connection is closed (code 1007 or 1008); nothing stops
  for the other connections. A connection silent for ``timeout`` seconds is closed (1001).

Limits, each answered with an HTTP 4xx and a JSON ``{"error": {"message", "type"}}`` naming the
problem, after which the service goes on serving:

- the request body: at most ``max_mb`` (plus a form's overhead), counted as the bytes arrive,
  with or without a Content-Length (413); the form parser keeps an upload over 1 MB in a
  temporary file until the request ends;
- the audio: a readable format (400), at most ``max_seconds`` long (413), at most
  :data:`MAX_CHANNELS` channels (400), and at most ``max_seconds`` x :data:`SAMPLES_PER_SECOND`
  decoded samples counting every channel (413); it is mixed down block by block, so a request
  holds the upload, the mono signal at the model's rate (600 s at 16 kHz: 38 MB) and one
  chunk's features and network activations;
- time: a request whose body stops arriving for ``timeout`` seconds gets a 408, an idle
  keep-alive connection is closed after :data:`KEEP_ALIVE_SECONDS`;
- concurrency: past ``max_connections`` open connections and requests per worker, a 503.
"""

from __future__ import annotations

import asyncio
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
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from asr.core.errors import AsrError, AudioError, AudioTooLarge
from asr.core.procs import die_with_parent
from asr.data.audio import MAX_STREAM_SAMPLE_RATE, MIN_SAMPLE_RATE, check_header, is_stream_rate, read_info
from asr.recognize.recognizer import Recognizer, load_model
from asr.recognize.stream import vosk_result
from asr.text.transcript import Transcript

ENV = "ASR_SERVE_CONFIG"  # the worker processes' settings, as JSON (uvicorn starts them by import string)
FORMATS = ("json", "text", "verbose_json")
FORM_OVERHEAD = 100_000  # bytes a multipart form may add around the file itself
SAMPLES_PER_SECOND = 96_000  # decoded samples a second of the longest audio may hold: 48 kHz stereo
KEEP_ALIVE_SECONDS = 5  # uvicorn closes an idle keep-alive connection after this
TIMEOUT_SECONDS = 30.0  # default: a request whose body stops arriving this long gets a 408
MAX_CONNECTIONS = 64  # default: open connections and requests per worker before a 503
DRAIN_FACTOR = 4  # a refused body is read and dropped up to this many times the limit, then the connection closed


class BadInput(Exception):
    """A request the service refuses: ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _error_body(e: BadInput) -> bytes:
    return json.dumps({"error": {"message": e.message, "type": e.kind}}).encode()


def error_response(e: BadInput) -> JSONResponse:
    return JSONResponse({"error": {"message": e.message, "type": e.kind}}, status_code=e.status)


class RequestGuard:
    """ASGI middleware bounding each request's body in bytes and in time, before the form parser sees it.

    The bytes are counted as they arrive, so a chunked upload (no Content-Length) is stopped at the
    limit like any other; a body that stops arriving for ``timeout`` seconds is given up. Either way
    the app is told the client left, and the client gets our 413 or 408 instead of the app's answer.
    (Written by hand: uvicorn has neither a body limit nor a body read timeout.)
    """

    def __init__(self, app, max_bytes: int, timeout: float):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal: list[BadInput] = []
        sent = False

        def refuse(e: BadInput) -> dict:
            refusal.append(e)
            return {"type": "http.disconnect"}

        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            refuse(
                BadInput(
                    413,
                    f"the request is {int(length) / 1e6:.1f} MB, over this server's limit of "
                    f"{(self.max_bytes - FORM_OVERHEAD) / 1e6:g} MB",
                )
            )
        received = 0
        body_done = [False]  # the last body message has been read (nothing left to drain)

        async def guarded_receive():
            nonlocal received
            if refusal:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                return refuse(
                    BadInput(408, f"the request's body stopped arriving for {self.timeout:g} s", "timeout_error")
                )
            if message["type"] == "http.request":
                body_done[0] = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    return refuse(
                        BadInput(
                            413,
                            f"the request is over this server's limit of {(self.max_bytes - FORM_OVERHEAD) / 1e6:g} MB",
                        )
                    )
            return message

        async def guarded_send(message):
            nonlocal sent
            if not refusal:
                sent = True
                await send(message)

        async def drained() -> bool:
            """Read and drop the rest of the body (a client still sending when the answer comes gets a broken
            pipe instead of it), up to a cap and while bytes keep arriving; whether it reached the end."""
            left = DRAIN_FACTOR * self.max_bytes
            while left > 0:
                try:
                    message = await asyncio.wait_for(receive(), self.timeout)
                except asyncio.TimeoutError:
                    return False
                if message["type"] != "http.request":
                    return False
                left -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
            return False

        async def send_refusal():
            e = refusal[0]
            complete = body_done[0] or (e.status == 413 and await drained())
            body = _error_body(e)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send(
                {
                    "type": "http.response.start",
                    "status": e.status,
                    "headers": headers + ([] if complete else [(b"connection", b"close")]),
                }
            )
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not refusal or sent:
                raise
        if refusal and not sent:
            await send_refusal()


def create_app(
    recognizer: Recognizer,
    name: str,
    max_mb: float = 25.0,
    max_seconds: float = 600.0,
    timeout: float = TIMEOUT_SECONDS,
    api_docs: bool = False,
) -> FastAPI:
    """The service around one loaded model (``api_docs``: serve ``/docs`` and ``/openapi.json``)."""
    app = FastAPI(
        title="asr",
        summary="Speech recognition: an OpenAI-compatible transcription endpoint",
        **({} if api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}),
    )
    app.add_middleware(RequestGuard, max_bytes=int(max_mb * 1e6) + FORM_OVERHEAD, timeout=timeout)
    lock = threading.Lock()  # a recognizer's decoder is not thread-safe: one request at a time per process
    page = resources.files("asr").joinpath("static/index.html").read_text(encoding="utf-8")
    max_samples = int(max_seconds * SAMPLES_PER_SECOND)
    model_name = Path(name).name  # not the server's folders

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, e: BadInput) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        """FastAPI's own answer echoes the input back; ours names the fields."""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
            for err in e.errors()[:5]
        )
        return error_response(BadInput(400, f"bad request: {problems}"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return error_response(
            BadInput(
                e.status_code, str(e.detail), "not_found_error" if e.status_code == 404 else "invalid_request_error"
            )
        )

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def index(request: Request) -> Response:
        return HTMLResponse(
            page if request.method == "GET" else "",
            headers={"content-length": str(len(page.encode()))} if request.method == "HEAD" else None,
        )

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": model_name,
            "decoding": recognizer.options.method,
            "sample_rate": recognizer.sample_rate,
            "streaming": recognizer.streaming,
        }

    @app.post("/v1/audio/transcriptions")
    def transcriptions(
        file: UploadFile = File(...),
        model: str = Form(""),
        response_format: str = Form("json"),
        language: str = Form(""),
        prompt: str = Form(""),
        temperature: float = Form(0.0),
    ):
        if response_format not in FORMATS:
            raise BadInput(400, f"response_format {response_format!r} is not one of {list(FORMATS)}")
        upload = file.filename or "upload"
        data = file.file.read(int(max_mb * 1e6) + 1)
        if len(data) > max_mb * 1e6:
            raise BadInput(413, f"{upload}: {len(data) / 1e6:.1f} MB is over this server's limit of {max_mb:g} MB")
        t0 = time.perf_counter()
        try:
            info = read_info(data, upload)
            check_header(upload, info)
            if info.duration > max_seconds:
                raise BadInput(
                    413,
                    f"{upload}: {info.duration:.0f} s of audio is over this server's limit of "
                    f"{max_seconds:g} s; split it",
                )
            with lock:
                result = recognizer.transcribe(data, name=upload, max_samples=max_samples)
        except AudioTooLarge as e:
            raise BadInput(413, str(e)) from None
        except AudioError as e:
            raise BadInput(400, str(e)) from None
        except AsrError as e:
            raise BadInput(400, f"{upload}: {e}") from None
        except MemoryError:
            raise BadInput(
                503,
                f"{upload}: the server has not the memory to decode this file now; try later or send a shorter one",
                "server_error",
            ) from None
        if response_format == "text":
            return PlainTextResponse(result.text + "\n")
        if response_format == "json":
            return {"text": result.text}
        return {
            "task": "transcribe",
            "language": language or "english",
            "duration": round(info.duration, 3),
            "text": result.text,
            "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words],
            "processing_seconds": round(time.perf_counter() - t0, 4),
        }

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await _vosk_session(ws, recognizer, timeout)
        except WebSocketDisconnect:
            pass

    return app


async def _vosk_session(ws: WebSocket, recognizer: Recognizer, timeout: float) -> None:
    """One ``/v1/stream`` connection, as Vosk's server speaks (see the module's docstring)."""

    async def refuse(message: str, code: int) -> None:
        await ws.send_json({"error": message})
        await ws.close(code)

    if not recognizer.streaming:
        return await refuse(
            "this server's model is offline (it needs whole files: POST /v1/audio/transcriptions); "
            "serve a streaming model (the fsdd_stream recipe's) for /v1/stream",
            1008,
        )
    stream, ended = None, False
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), timeout)
        except asyncio.TimeoutError:
            return await refuse(f"no message for {timeout:g} s; the stream is closed", 1001)
        if message["type"] == "websocket.disconnect":
            return
        if ended:
            return await refuse("a message after eof: this stream has ended; open a new connection", 1008)
        data, text = message.get("bytes"), message.get("text")
        if data is not None:
            if len(data) % 2:
                return await refuse(f"a binary message of {len(data)} bytes: 16-bit PCM needs an even count", 1007)
            stream = stream or recognizer.stream()
            samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
            update = await asyncio.to_thread(stream.accept, samples)
            if update.finished:  # one reply per message, as Vosk's: utterances ended in one message are joined
                await ws.send_json(vosk_result(Transcript.join(update.finished)))
            else:
                await ws.send_json({"partial": update.text})
            continue
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            return await refuse(f"a text message that is not JSON ({text[:60]!r}); send config or eof", 1007)
        if isinstance(request, dict) and "eof" in request:
            stream = stream or recognizer.stream()
            done = len(stream.segments)
            await asyncio.to_thread(stream.finish)
            last = stream.segments[done:]
            await ws.send_json(vosk_result(last[-1]) if last else {"result": [], "text": ""})
            ended = True
        elif isinstance(request, dict) and isinstance(request.get("config"), dict):
            rate = request["config"].get("sample_rate", recognizer.sample_rate)
            if isinstance(rate, float) and rate.is_integer():
                rate = int(rate)
            if not is_stream_rate(rate):
                return await refuse(
                    f"sample_rate {rate!r} is no rate in Hz ({MIN_SAMPLE_RATE}-{MAX_STREAM_SAMPLE_RATE})", 1008
                )
            if stream is not None and stream.rate != rate:
                return await refuse("a new sample_rate after audio; send config first", 1008)
            stream = stream or recognizer.stream(rate)
        else:
            return await refuse(f"unknown message {text[:60]!r}: send {{'config': ...}}, audio, or {{'eof': 1}}", 1008)


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process, from the settings ``serve`` put in the environment."""
    cfg = json.loads(os.environ[ENV])
    if cfg.get("parent"):  # a worker of several: it dies with the process that started it (a SIGKILL included)
        die_with_parent(cfg["parent"])
    # one thread per worker: requests run in parallel across workers (--workers), not inside one
    recognizer = load_model(
        cfg["model"], lm=cfg.get("lm"), chunk_seconds=cfg["chunk_seconds"], threads=1, **cfg.get("decoding", {})
    )
    app = create_app(recognizer, cfg["model"], cfg["max_mb"], cfg["max_seconds"], cfg["timeout"], cfg["api_docs"])
    if cfg.get("parent"):
        print(f"asr serve: worker {os.getpid()} ready", file=sys.stderr, flush=True)
    return app


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
) -> None:
    """Load the model (once per worker), bind ``host:port`` (0: a free port), say where, and serve until stopped.

    The socket is bound before the address is printed, so a client that reads the line can connect
    at once (its connection waits in the backlog until a worker accepts it). With several workers,
    each says ``asr serve: worker PID ready`` on stderr once it serves, and dies with this process.

    Raises:
        AsrError: a bad model file or options (checked here, before any worker starts), or a port in use.
    """
    if not 0 <= port <= 65535:
        raise AsrError(f"--port {port} is no TCP port: give 0-65535 (0: any free one)")
    if workers < 1 or max_connections < 1 or not all(0 < x < math.inf for x in (max_mb, max_seconds, timeout)):
        raise AsrError(
            f"--workers ({workers}), --max-mb ({max_mb}), --max-seconds ({max_seconds}), --timeout "
            f"({timeout}) and --max-connections ({max_connections}) must be positive"
        )
    # fail here, with our message, not in a worker
    load_model(model, lm=lm, chunk_seconds=chunk_seconds, **(decoding or {}))
    os.environ[ENV] = json.dumps(
        {
            "model": model,
            "lm": lm,
            "decoding": decoding or {},
            "max_mb": max_mb,
            "max_seconds": max_seconds,
            "chunk_seconds": chunk_seconds,
            "timeout": timeout,
            "api_docs": api_docs,
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
        "asr.serve:app_from_env",
        factory=True,
        fd=sock.fileno(),
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=max_connections,
    )
    print("asr serve: stopped", file=sys.stderr)


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
