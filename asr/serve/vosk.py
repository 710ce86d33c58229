"""The live stream ``/v1/stream`` in Vosk's server protocol (see :mod:`asr.serve`), so Vosk's clients work
unchanged; :func:`vosk_result` is also what ``asr transcribe --stream`` prints."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from fastapi import WebSocket

from asr.data.audio import MAX_STREAM_SAMPLE_RATE, MIN_SAMPLE_RATE, is_stream_rate
from asr.recognize.recognizer import Recognizer
from asr.text.transcript import Transcript


def vosk_result(t: Transcript) -> dict:
    """A finished utterance as Vosk's server sends it: ``{"result": [{word, start, end, conf}], "text"}``."""
    words = [
        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "conf": round(w.conf or 0.0, 3)}
        for w in t.words
    ]
    return {"result": words, "text": t.text}


async def session(ws: WebSocket, recognizer: Recognizer, timeout: float) -> None:
    """One ``/v1/stream`` connection, as Vosk's server speaks (see :mod:`asr.serve`)."""

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
        except (ValueError, RecursionError):  # not JSON, an integer of thousands of digits, nesting past the stack
            return await refuse(f"a text message that is not JSON we read ({text[:60]!r}); send config or eof", 1007)
        if isinstance(request, dict) and "eof" in request:
            stream = stream or recognizer.stream()
            last = await asyncio.to_thread(stream.finish)
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
