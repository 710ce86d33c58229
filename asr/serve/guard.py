"""Bounding each HTTP request before the app sees it (bytes and time), and the service's JSON error answers."""

from __future__ import annotations

import asyncio
import json

from fastapi.responses import JSONResponse

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
