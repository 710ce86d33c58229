"""Benchmark: ``asr transcribe`` alone and beside another busy process, by thread count.

    python -m asr.benchmarks.threads --model data/fsdd/model.pt [--audio long.wav | --minutes 10] [--threads 0,1,2]

A long recording (``--audio``, else FSDD recordings from ``$ASR_CORPORA`` joined to ``--minutes``) is
transcribed by ``asr transcribe --threads N`` as a new process (loading included), first on an idle machine,
then while another process keeps every core busy (torch matrix products at torch's default threads, as a
training does). ``--threads 0`` is torch's default (one thread per core: the reference, what ``asr
transcribe`` did before it had the flag). The table gives the seconds and, per row, beside / alone; and each
row's time against the reference in the same setting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asr.data.audio import load_audio, save_audio

BUSY = """
import torch
a = torch.randn(1024, 1024)
while True:
    a = torch.tanh(a @ a) * 0.5
"""


def long_recording(path: Path, minutes: float, rate: int = 8_000) -> Path:
    """FSDD recordings of ``$ASR_CORPORA`` joined with 0.3 s pauses into ``minutes`` of audio."""
    root = Path(os.environ.get("ASR_CORPORA", "../shared/corpora")) / "fsdd" / "recordings"
    files = sorted(root.glob("*.wav"))
    if not files:
        raise SystemExit(f"no FSDD recordings under {root}: give --audio FILE or set ASR_CORPORA")
    pieces, total, k = [], 0, 0
    pause = np.zeros(int(0.3 * rate), np.float32)
    while total < minutes * 60 * rate:
        wave = load_audio(files[k % len(files)], rate)
        pieces += [wave, pause]
        total += len(wave) + len(pause)
        k += 1
    save_audio(path, np.concatenate(pieces), rate)
    return path


def transcribe_seconds(model: str, audio: Path, threads: int) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "asr", "transcribe", model, str(audio), "--threads", str(threads)]
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", help="a long recording (default: FSDD recordings joined to --minutes)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", default="0,1,2", help="thread counts to time (0: torch's default)")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(args.audio) if args.audio else long_recording(Path(tmp) / "long.wav", args.minutes)
        transcribe_seconds(args.model, audio, 1)  # warm the file cache and the imports
        alone = {n: transcribe_seconds(args.model, audio, n) for n in counts}
        busy = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            time.sleep(2)  # the busy process is up to speed (a setting of the benchmark, not a test's outcome)
            beside = {n: transcribe_seconds(args.model, audio, n) for n in counts}
        finally:
            busy.kill()
            busy.wait()
    ref = counts[0]
    print(f"asr transcribe of {args.model} on {audio.name}, {os.cpu_count()} cores")
    print(
        "| --threads | alone s | beside a busy process s | beside / alone | alone vs reference | beside vs reference |"
    )
    print("|---|---|---|---|---|---|")
    for n in counts:
        print(
            f"| {n or 'torch default'} | {alone[n]:.2f} | {beside[n]:.2f} | {beside[n] / alone[n]:.2f}x "
            f"| {alone[n] / alone[ref]:.2f}x | {beside[n] / beside[ref]:.2f}x |"
        )


if __name__ == "__main__":
    main()
