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

CONFIG_KEYS = ("sample_rate", "words", "phrase_list", "max_alternatives")  # what Vosk's server reads from a config


def vosk_result(t: Transcript, words: bool = True) -> dict:
    """A finished utterance as Vosk's server sends it: ``{"result": [{word, start, end, conf}], "text"}`` (only
    ``{"text"}`` when a config asked for no words)."""
    if not words:
        return {"text": t.text}
    listed = [
        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "conf": round(w.conf or 0.0, 3)}
        for w in t.words
    ]
    return {"result": listed, "text": t.text}


def configured(config: dict, recognizer: Recognizer):
    """A config message's stream and whether results list their words (Vosk's ``words``).

    Raises:
        ValueError: a key Vosk's server does not read, one it reads that this server does not do (a phrase list,
            alternatives), or a sample rate that is no rate in Hz, named.
    """
    unknown = sorted(k for k in config if k not in CONFIG_KEYS)
    if unknown:
        raise ValueError(f"config keys {unknown} are not Vosk's; it reads {list(CONFIG_KEYS)}")
    unsupported = [k for k in ("phrase_list", "max_alternatives") if config.get(k)]
    if unsupported:
        raise ValueError(f"config {unsupported}: not supported by this server (one best text); leave them out")
    rate = config.get("sample_rate", recognizer.sample_rate)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if not is_stream_rate(rate):
        raise ValueError(f"sample_rate {rate!r} is no rate in Hz ({MIN_SAMPLE_RATE}-{MAX_STREAM_SAMPLE_RATE})")
    words = config.get("words", True)
    if words not in (0, 1, True, False):
        raise ValueError(f"words {words!r} is neither 0 nor 1")
    return recognizer.stream(rate), bool(words)


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
    stream, ended, heard, words = None, False, False, True
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
            stream, heard = stream or recognizer.stream(), True
            samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
            update = await asyncio.to_thread(stream.accept, samples)
            if update.finished:  # one reply per message, as Vosk's: utterances ended in one message are joined
                await ws.send_json(vosk_result(Transcript.join(update.finished), words))
            else:
                await ws.send_json({"partial": update.text})
            continue
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, an integer of thousands of digits, nesting past the stack
            return await refuse(f"a text message that is not JSON we read ({text[:60]!r}); send config or eof", 1007)
        if isinstance(request, dict) and ("eof" in request or "reset" in request):
            # eof: the last utterance, and the stream ends; reset (as Vosk's server): the same, and it goes on
            stream = stream or recognizer.stream()
            last = await asyncio.to_thread(stream.finish)
            await ws.send_json(vosk_result(last[-1] if last else Transcript("", []), words))
            ended = "eof" in request
            if not ended:  # the next words are a new stream at the same rate (their times start at 0 again)
                stream = recognizer.stream(stream.rate)
        elif isinstance(request, dict) and isinstance(request.get("config"), dict):
            if heard:
                return await refuse("a config after audio: send config before the audio", 1008)
            try:
                stream, words = configured(request["config"], recognizer)
            except ValueError as e:
                return await refuse(str(e), 1008)
        else:
            return await refuse(
                f"unknown message {text[:60]!r}: send {{'config': ...}}, audio, {{'reset': 1}} or {{'eof': 1}}", 1008
            )
