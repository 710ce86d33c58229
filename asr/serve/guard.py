"""Bounding each connection and request before the app sees it (header and body time, bytes, how many at once),
and the service's JSON error answers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FORM_OVERHEAD = 100_000  # bytes a multipart form may add around the file itself
TIMEOUT_SECONDS = 30.0  # default: a request whose body stops arriving this long gets a 408
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


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request line and headers have not all arrived within
    :attr:`header_seconds` of its opening (or of the request's first byte). uvicorn times only the pause between
    keep-alive requests: a socket that sent nothing, or half a header, stayed open for good, and 70 of them held
    every slot. (By hand: uvicorn has no such setting; ``asr serve`` sets the seconds in each worker.)"""

    header_seconds: float = TIMEOUT_SECONDS

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a keep-alive connection's next request: its headers are timed too
            self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()


@dataclass
class Occupancy:
    """One worker's open transcription requests and streams, against ``limit`` (``--max-connections``)."""

    limit: int
    requests: int = 0
    streams: int = 0

    @property
    def full(self) -> bool:
        return self.requests + self.streams >= self.limit

    def busy_message(self) -> str:
        return (
            f"the server is busy ({self.requests} request(s) and {self.streams} stream(s) open, its limit is "
            f"{self.limit}); try again later"
        )


class RequestGuard:
    """ASGI middleware bounding each request, before the form parser sees it: how many at once, the body's bytes
    and time.

    Past ``occupancy.limit`` open requests and streams a request gets a 503 (``/health`` is always answered).
    The bytes are counted as they arrive, so a chunked upload (no Content-Length) is stopped at the
    limit like any other; a body that stops arriving for ``timeout`` seconds is given up. Either way
    the app is told the client left, and the client gets our 413 or 408 instead of the app's answer.
    (Written by hand: uvicorn has neither a body limit nor a body read timeout, and its concurrency limit
    counts idle connections and answers ``/health`` with a 503 too.)
    """

    def __init__(self, app, max_bytes: int, timeout: float, occupancy: Occupancy):
        self.app, self.max_bytes, self.timeout, self.occupancy = app, max_bytes, timeout, occupancy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope.get("path") == "/health":
            return await self.app(scope, receive, send)
        if self.occupancy.full:
            return await error_response(BadInput(503, self.occupancy.busy_message(), "server_error"))(
                scope, receive, send
            )
        self.occupancy.requests += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.occupancy.requests -= 1

    async def _guarded(self, scope, receive, send):
        guarded = _GuardedRequest(self, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            guarded.refuse(
                BadInput(
                    413,
                    f"the request is {int(length) / 1e6:.1f} MB, over this server's limit of "
                    f"{(self.max_bytes - FORM_OVERHEAD) / 1e6:g} MB",
                )
            )
        try:
            await self.app(scope, guarded.receive, guarded.send)
        except Exception:
            if not guarded.refusal or guarded.sent:
                raise
        if guarded.refusal and not guarded.sent:
            await guarded.send_refusal()


class _GuardedRequest:
    """One request through :class:`RequestGuard`: its body counted and timed as the app reads it; once refused, the
    app sees the client leave and nothing it sends goes out (the refusal does instead)."""

    def __init__(self, guard: RequestGuard, receive, send):
        self.guard, self._receive, self._send = guard, receive, send
        self.refusal: BadInput | None = None
        self.sent = False  # the app has begun its answer
        self.received = 0
        self.body_done = False  # the last body message has been read (nothing left to drain)

    def refuse(self, e: BadInput) -> dict:
        self.refusal = self.refusal or e
        return {"type": "http.disconnect"}

    async def receive(self) -> dict:
        if self.refusal:
            return {"type": "http.disconnect"}
        timeout = self.guard.timeout
        try:
            message = await asyncio.wait_for(self._receive(), timeout)
        except asyncio.TimeoutError:
            return self.refuse(BadInput(408, f"the request's body stopped arriving for {timeout:g} s", "timeout_error"))
        if message["type"] == "http.request":
            self.body_done = not message.get("more_body", False)
            self.received += len(message.get("body", b""))
            if self.received > self.guard.max_bytes:
                limit = (self.guard.max_bytes - FORM_OVERHEAD) / 1e6
                return self.refuse(BadInput(413, f"the request is over this server's limit of {limit:g} MB"))
        return message

    async def send(self, message) -> None:
        if not self.refusal:
            self.sent = True
            await self._send(message)

    async def _drained(self) -> bool:
        """Read and drop the rest of the body (a client still sending when the answer comes gets a broken
        pipe instead of it), up to a cap and while bytes keep arriving; whether it reached the end."""
        left = DRAIN_FACTOR * self.guard.max_bytes
        while left > 0:
            try:
                message = await asyncio.wait_for(self._receive(), self.guard.timeout)
            except asyncio.TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False

    async def send_refusal(self) -> None:
        e = self.refusal
        complete = self.body_done or (e.status == 413 and await self._drained())
        body = _error_body(e)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self._send(
            {
                "type": "http.response.start",
                "status": e.status,
                "headers": headers + ([] if complete else [(b"connection", b"close")]),
            }
        )
        await self._send({"type": "http.response.body", "body": body})
