"""Where people speak in a long recording: Silero's voice activity detector (the ``silero-vad`` package ships its
ONNX weights; run here by onnxruntime), read block by block so memory stays flat in the recording's length.

:func:`speech_segments` turns a recording's mono blocks into segments of speech, each at most ``max_seconds``
long and cut in pauses, each with its audio: what the recognizer decodes one by one, as it would the sentences
of a corpus (their own normalisation, no search across a pause).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from asr.data.audio import resample

VAD_RATE = 16_000  # Silero's model also reads 8 kHz, but found 35 of 40 quiet FSDD digits there, all 40 at 16 kHz
MIN_SPEECH_SECONDS = 0.1  # shorter speech is no segment (Silero's default 0.25 s dropped short spoken digits)
MIN_PAUSE_SECONDS = 0.8  # a pause this long may end a segment (AN4 dev: 0.3 s 7.94%, 0.5 s 7.60%, 0.8 s 7.43%)
# audio kept before and after a segment's speech (dev WER, AN4 / speechocean762: 0.2 s 7.43 / 48.82%,
# 0.25 s 7.43 / 47.38%, 0.3 s 8.12 / 47.11%)
PAD_SECONDS = 0.25
WINDOW_SECONDS = 60.0  # audio searched for speech at a time; its last LOOKAHEAD_SECONDS wait for the next window
LOOKAHEAD_SECONDS = 5.0


@dataclass(frozen=True)
class SpeechSegment:
    start: int  # first sample, from the recording's start
    audio: np.ndarray  # its mono samples

    def seconds(self, rate: int) -> tuple[float, float]:
        return self.start / rate, (self.start + len(self.audio)) / rate


@functools.cache
def _model():
    import silero_vad  # imported here: only long recordings need it

    return silero_vad.load_silero_vad(onnx=True)


def speech_regions(wave: np.ndarray, rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """``(start, end)`` samples of the speech in ``wave``, pauses of at least :data:`MIN_PAUSE_SECONDS` apart,
    none longer than ``max_seconds`` (a longer stretch is cut in its longest pause, as Silero does)."""
    import silero_vad
    import torch

    x = wave if rate == VAD_RATE else resample(wave, rate, VAD_RATE)
    found = silero_vad.get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        _model(),
        sampling_rate=VAD_RATE,
        min_silence_duration_ms=int(1000 * MIN_PAUSE_SECONDS),
        min_speech_duration_ms=int(1000 * MIN_SPEECH_SECONDS),
        max_speech_duration_s=max_seconds,
        speech_pad_ms=0,
    )
    scale = rate / VAD_RATE
    return [(round(r["start"] * scale), round(r["end"] * scale)) for r in found]


def speech_segments(blocks: Iterable[np.ndarray], rate: int, max_seconds: float) -> Iterator[SpeechSegment]:
    """The speech of a recording given as consecutive mono blocks at ``rate``, as segments of at most
    ``max_seconds`` (plus :data:`PAD_SECONDS` each side), in order; holds at most about :data:`WINDOW_SECONDS`
    of audio. A recording without speech gives none."""
    window, lookahead, pad = (round(s * rate) for s in (WINDOW_SECONDS, LOOKAHEAD_SECONDS, PAD_SECONDS))
    buf, buf_start, floor = np.zeros(0, np.float32), 0, 0  # held samples, their start, where the next may begin

    def emit(regions: list[tuple[int, int]], upto: int | None) -> Iterator[SpeechSegment]:
        nonlocal floor
        for k, (a, b) in enumerate(regions):
            if upto is not None and b > upto:
                return
            nxt = regions[k + 1][0] if k + 1 < len(regions) else len(buf)
            start, end = max(floor, a - pad, 0), min(len(buf), b + pad, max(b, (b + nxt) // 2))
            floor = end
            yield SpeechSegment(buf_start + start, buf[start:end].copy())

    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, np.float32)])
        if len(buf) < window + lookahead:
            continue
        regions = speech_regions(buf, rate, max_seconds)
        final = len(buf) - lookahead  # speech ending before here will not grow in the next window
        yield from emit(regions, final)
        # keep what is not emitted yet: from the first region still growing (its pad), else the look-ahead
        keep = max(floor, 0, min([a - pad for a, b in regions if b > final] + [final]))
        buf, buf_start, floor = buf[keep:], buf_start + keep, max(0, floor - keep)
    if len(buf):
        yield from emit(speech_regions(buf, rate, max_seconds), None)
