"""Benchmark: a long recording of sentences with pauses, transcribed as one file against sentence by sentence.

    python -m asr.benchmarks.long --model data/an4/model.pt --data data/an4/prepare/devtest.jsonl [--limit 60]
    python -m asr.benchmarks.long --model data/an4/model.pt --data data/an4/prepare/devtest.jsonl --hours 1

The manifest's utterances (held-out speakers: a dev or test set) are joined in order into one recording, each
followed by a pause of 1-2 s (seeded) of quiet room noise (-60 dBFS white noise), and transcribed by ``asr
transcribe`` three ways: sentence by sentence (each utterance its own file: the reference), the joined file
with the voice activity detector's segments (the default), and the joined file in fixed chunks cut in the best
path's pauses (``vad=False``, what ``asr transcribe`` did before). The table gives each way's WER over the same
words, the ratio to the sentence-by-sentence WER, the real-time factor, and for the joined file how many of the
pauses between sentences no segment runs across (within 0.3 s at either end).

With ``--hours H``, the joined utterances are repeated into a file of 0.1 h and one of H hours (FLAC, written
block by block) and each is transcribed by ``asr transcribe FILE --format json`` in a process of its own: the
table gives each one's peak memory (the process's maximum resident set), wall time and real-time factor, so a
memory that stays flat in the recording's length shows as the same peak for both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from asr.data.audio import load_audio
from asr.data.manifest import read_manifest
from asr.recognize.recognizer import load_model

NOISE_DBFS = -60.0
TOLERANCE = 0.3


def joined(utts, rate: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The utterances' audio joined with 1-2 s of quiet noise after each, and each pause's (start, end) s."""
    rng = np.random.default_rng(seed)
    level = 10 ** (NOISE_DBFS / 20)
    pieces, pauses, at = [], [], 0
    for u in utts:
        wave = load_audio(u.audio, rate)
        gap = int(rng.uniform(1.0, 2.0) * rate)
        pieces += [wave, (level * rng.standard_normal(gap)).astype(np.float32)]
        pauses.append(((at + len(wave)) / rate, (at + len(wave) + gap) / rate))
        at += len(wave) + gap
    return np.concatenate(pieces), pauses[:-1]


def pauses_kept(segments, pauses) -> int:
    """Pauses no segment runs across: every segment ends before the pause's last 0.3 s or starts after its first
    0.3 s (a recording's own silence around its speech may hold the cut instead of the added pause)."""
    return sum(not any(s.start < p0 + TOLERANCE and s.end > p1 - TOLERANCE for s in segments) for p0, p1 in pauses)


def write_hours(audio: np.ndarray, rate: int, seconds: float, path: Path) -> None:
    """``audio`` repeated into a FLAC file of ``seconds``, written a block at a time."""
    with sf.SoundFile(str(path), "w", rate, 1, format="FLAC") as f:
        left = int(seconds * rate)
        while left > 0:
            f.write(audio[:left])
            left -= min(left, len(audio))


def transcribe_process(model: str, path: Path) -> tuple[float, float, str]:
    """``asr transcribe MODEL PATH --format json`` in a process of its own: (peak resident MB, wall s, text)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asr", "transcribe", model, str(path), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest of all children
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"asr transcribe {path} failed ({proc.returncode})")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, out


def memory_table(model: str, audio: np.ndarray, rate: int, hours: float) -> None:
    print(f"{model}: the joined recording repeated, transcribed by `asr transcribe` in a process of its own")
    print("| recording | peak memory MB | wall s | RTF | words |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="asr-long-") as tmp:
        for h in sorted({min(0.1, hours), hours}):
            path = Path(tmp) / f"{h}h.flac"
            write_hours(audio, rate, h * 3600, path)
            peak, wall, out = transcribe_process(model, path)
            words = len(json.loads(out)["words"])
            print(f"| {h:g} h | {peak:.0f} | {wall:.0f} | {wall / (h * 3600):.3f} | {words} |")
            path.unlink()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="a manifest of held-out utterances")
    ap.add_argument("--limit", type=int, default=60, help="the first N utterances (0: all)")
    ap.add_argument("--hours", type=float, default=0.0, help="the memory and speed table of a recording this long")
    args = ap.parse_args(argv)
    utts = read_manifest(args.data)
    utts = utts[: args.limit] if args.limit else utts
    rec = load_model(args.model, threads=1)
    rate = rec.sample_rate
    audio, pauses = joined(utts, rate)
    if args.hours:
        return memory_table(args.model, audio, rate, args.hours)
    ref = " ".join(u.text for u in utts)
    seconds = len(audio) / rate
    t0 = time.perf_counter()
    one_by_one = " ".join(rec.transcribe(load_audio(u.audio, rate), rate).text for u in utts)
    rows = [("sentence by sentence (reference)", one_by_one, time.perf_counter() - t0, None)]
    for name, vad in (("one file, voice activity segments (default)", True), ("one file, fixed chunks", False)):
        rec.vad = vad
        t0 = time.perf_counter()
        t = rec.transcribe(audio, rate)
        rows.append((name, t.text, time.perf_counter() - t0, pauses_kept(t.segments, pauses)))
    base = jiwer.wer(ref, one_by_one)
    print(f"{args.model} on {len(utts)} utterances of {args.data} joined with 1-2 s pauses: {seconds / 60:.1f} min")
    print("| transcribed | WER % | vs sentence by sentence | RTF | pauses no segment runs across |")
    print("|---|---|---|---|---|")
    for name, hyp, spent, inside in rows:
        wer = jiwer.wer(ref, hyp)
        shown = "-" if inside is None else f"{inside} of {len(pauses)} ({100 * inside / len(pauses):.0f}%)"
        ratio = wer / base if base else float("nan")
        print(f"| {name} | {100 * wer:.2f} | {ratio:.2f}x | {spent / seconds:.3f} | {shown} |")


if __name__ == "__main__":
    main()
