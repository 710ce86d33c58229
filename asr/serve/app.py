"""The service's endpoints around one loaded model (see :mod:`asr.serve` for what each answers)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from asr.core.errors import AsrError, AudioError, AudioTooLarge
from asr.core.procs import die_with_parent
from asr.data.audio import check_header, read_info
from asr.recognize.recognizer import Recognizer, load_model
from asr.search.hotwords import Hotword, parse_hotwords
from asr.serve import vosk
from asr.serve.guard import (
    FORM_OVERHEAD,
    TIMEOUT_SECONDS,
    BadInput,
    HeaderTimeoutProtocol,
    Occupancy,
    RequestGuard,
    error_response,
)
from asr.text.formats import render
from asr.text.written import as_written

KEPT_RECOGNIZERS = 8  # recognizers with a request's hotwords kept per worker
MAX_PROMPT_WORDS = 100  # new words of a prompt taken as hotwords
MAX_REQUEST_HOTWORDS = 100  # lines of a request's hotwords field (each may add a word the G2P pronounces)
ENV = "ASR_SERVE_CONFIG"  # the worker processes' settings, as JSON (uvicorn starts them by import string)
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")  # OpenAI's response formats
GRANULARITIES = ("word", "segment")
SAMPLES_PER_SECOND = 96_000  # decoded samples a second of the longest audio may hold: 48 kHz stereo
MAX_CONNECTIONS = 64  # default: open transcription requests and streams per worker before a 503 or a close 1013


def create_app(
    recognizer: Recognizer,
    name: str,
    max_mb: float = 25.0,
    max_seconds: float = 600.0,
    timeout: float = TIMEOUT_SECONDS,
    api_docs: bool = False,
    max_connections: int = MAX_CONNECTIONS,
) -> FastAPI:
    """The service around one loaded model (``api_docs``: serve ``/docs`` and ``/openapi.json``; past
    ``max_connections`` open requests and streams, a 503 or a close 1013)."""
    app = FastAPI(
        title="asr",
        summary="Speech recognition: an OpenAI-compatible transcription endpoint",
        **({} if api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}),
    )
    occupancy = Occupancy(max_connections)
    app.add_middleware(RequestGuard, max_bytes=int(max_mb * 1e6) + FORM_OVERHEAD, timeout=timeout, occupancy=occupancy)
    _error_answers(app)
    _page_and_health(app, recognizer, Path(name).name, occupancy)  # the file's name, not the server's folders
    _transcriptions(app, recognizer, max_mb, max_seconds)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        if occupancy.full:  # Vosk's clients read 1013 as "try again later"
            await ws.send_json({"error": occupancy.busy_message()})
            return await ws.close(1013)
        occupancy.streams += 1
        try:
            await vosk.session(ws, recognizer, timeout)
        except WebSocketDisconnect:
            pass
        finally:
            occupancy.streams -= 1

    return app


def _error_answers(app: FastAPI) -> None:
    """Every refusal as our JSON error (FastAPI's own answers echo the input back)."""

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


def _page_and_health(app: FastAPI, recognizer: Recognizer, model_name: str, occupancy: Occupancy) -> None:
    """``GET /``: the page; ``GET /health``: the model, its decoding and this worker's open requests and streams."""
    page = resources.files("asr").joinpath("static/index.html").read_text(encoding="utf-8")

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
            "requests": occupancy.requests,
            "streams": occupancy.streams,
            "max_connections": occupancy.limit,
        }


def _transcriptions(app: FastAPI, recognizer: Recognizer, max_mb: float, max_seconds: float) -> None:
    """``POST /v1/audio/transcriptions``: OpenAI's form fields, the upload's size and length bounded."""
    lock = threading.Lock()  # a recognizer's decoder is not thread-safe: one request at a time per process
    max_samples = int(max_seconds * SAMPLES_PER_SECOND)
    with_hotwords = _hotword_recognizers(recognizer)

    @app.post("/v1/audio/transcriptions")
    def transcriptions(
        file: UploadFile = File(...),
        model: str = Form(""),
        response_format: str = Form("json"),
        language: str = Form(""),
        prompt: str = Form(""),
        temperature: float = Form(0.0),
        stream: str = Form(""),
        granularities: list[str] = Form([], alias="timestamp_granularities[]"),
        hotwords: str = Form(""),
    ):
        if stream.lower() in ("true", "1"):  # OpenAI's client sends it and waits for events that never came
            raise BadInput(400, "stream=true: this server answers once, with the whole transcript; leave stream out")
        if response_format not in FORMATS:
            raise BadInput(400, f"response_format {response_format!r} is not one of {list(FORMATS)}")
        if not set(granularities) <= set(GRANULARITIES) or (granularities and response_format != "verbose_json"):
            raise BadInput(
                400,
                f"timestamp_granularities {granularities} need response_format verbose_json and hold only "
                f"{list(GRANULARITIES)}",
            )
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
            lines = hotwords.splitlines()
            if len(lines) > MAX_REQUEST_HOTWORDS:
                raise BadInput(400, f"hotwords: {len(lines)} lines; a request takes at most {MAX_REQUEST_HOTWORDS}")
            with lock:
                chosen = with_hotwords(parse_hotwords(lines, "hotwords"), prompt)
                result = chosen.transcribe(data, name=upload, max_samples=max_samples)
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
        if response_format in ("text", "srt", "vtt"):
            return PlainTextResponse(
                result.text + "\n" if response_format == "text" else render(result, response_format, "")
            )
        if response_format == "json":
            return {"text": result.text}
        return verbose_json(result, info.duration, language, granularities, time.perf_counter() - t0)


def _hotword_recognizers(recognizer: Recognizer) -> Callable[[list[Hotword], str], Recognizer]:
    """``(hotwords, prompt) -> recognizer``: the service's recognizer with a request's ``hotwords`` field (lines of
    :mod:`asr.search.hotwords`) and the words of its ``prompt`` that the decoder's word list lacks (Whisper's users
    name what a recording holds in the prompt), added to the service's own hotwords; the last few such recognizers
    are kept (each builds its search, seconds for a large lexicon). Call it under the request lock."""
    kept: OrderedDict[tuple, Recognizer] = OrderedDict()

    def chosen(hotwords: list[Hotword], prompt: str) -> Recognizer:
        if not recognizer.options.needs_lexicon:
            if hotwords:
                raise AsrError(f"hotwords need a lexicon decoder; this server decodes with {recognizer.options.method}")
            return recognizer  # a prompt is a hint: without a word list there is nothing to add it to
        new = recognizer.addable(as_written(prompt, recognizer.model.written_characters).split())
        extra = [*hotwords, *(Hotword((w,)) for w in new[:MAX_PROMPT_WORDS])]
        if not extra:
            return recognizer
        key = tuple(sorted((h.words, h.boost) for h in extra))
        if key not in kept:
            if len(kept) >= KEPT_RECOGNIZERS:
                kept.popitem(last=False)
            kept[key] = recognizer.with_hotwords([*recognizer.hotwords, *extra])
        kept.move_to_end(key)
        return kept[key]

    return chosen


def verbose_json(result, duration: float, language: str, granularities: list[str], seconds: float) -> dict:
    """OpenAI's ``verbose_json``: the text, its segments (unless only words were asked for) with the fields
    OpenAI's clients read, and its words when ``word`` was asked for."""
    out = {"task": "transcribe", "language": language or "english", "duration": round(duration, 3), "text": result.text}
    if "segment" in granularities or not granularities:
        out["segments"] = [
            {
                "id": k,
                "seek": round(100 * s.start),  # in 10 ms frames, as whisper's
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": None,  # not computed by this decoder
                "compression_ratio": round(compression_ratio(s.text), 3),
                "no_speech_prob": None,
            }
            for k, s in enumerate(result.segments)
        ]
    if "word" in granularities:
        out["words"] = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words]
    out["processing_seconds"] = round(seconds, 4)
    return out


def compression_ratio(text: str) -> float:
    """As whisper computes it: the text's bytes over their zlib-compressed size (high: a repeating hypothesis)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process, from the settings ``serve`` put in the environment."""
    cfg = json.loads(os.environ[ENV])
    if cfg.get("parent"):  # a worker of several: it dies with the process that started it (a SIGKILL included)
        die_with_parent(cfg["parent"])
    # one thread per worker: requests run in parallel across workers (--workers), not inside one
    recognizer = load_model(
        cfg["model"],
        lm=cfg.get("lm"),
        chunk_seconds=cfg["chunk_seconds"],
        threads=1,
        hotwords=[Hotword(tuple(text.split()), boost) for text, boost in cfg.get("hotwords", [])],
        ensemble=cfg.get("ensemble", []),
        **cfg.get("decoding", {}),
    )
    HeaderTimeoutProtocol.header_seconds = cfg["timeout"]  # this worker's connections (asr serve passes the class)
    app = create_app(
        recognizer,
        cfg["model"],
        cfg["max_mb"],
        cfg["max_seconds"],
        cfg["timeout"],
        cfg["api_docs"],
        cfg.get("max_connections", MAX_CONNECTIONS),
    )
    if cfg.get("parent"):
        # one write of the whole line: print() writes the text and its newline apart, and two workers starting
        # together interleaved them into one line ("...ready asr serve: worker ... ready"), which a reader missed
        sys.stderr.write(f"asr serve: worker {os.getpid()} ready\n")
        sys.stderr.flush()
    return app
