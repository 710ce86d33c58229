"""Benchmark: live transcription with a streaming model: latency, real-time streams at once, memory over an hour.

    python -m asr.benchmarks.stream [--model data/fsdd_stream/model.pt]
        [--data data/fsdd_stream/prepare/connected/test.jsonl] [--streams 8,16,24] [--seconds 30] [--hours 1]

1. Latency, one stream at a time, 1 thread: each recording fed in 100 ms blocks (a microphone's pace) on a
   simulated clock: a partial is out at the audio time of its block's end plus the compute time of
   ``accept``. For each word of the final text, the time from its end in the audio (its end in the final
   result) to the first partial that holds it (the words so far compared as a prefix). The reference, in the
   same run: the same model decoding the whole file once it has ended (as ``asr transcribe`` of a file), which
   gives each word at the file's end plus the decoding time.
2. Real-time streams at once: ``asr serve`` (one worker per core, 1 thread each) and N clients (threads),
   each sending its recordings over ``/v1/stream`` at real-time pace: a 100 ms block every 100 ms, every
   reply awaited. A reply is on time when it comes before the next block is due.
3. Memory: one stream fed ``--hours`` of audio (the recordings over and over with 1.5 s pauses) as fast as
   it goes; the process's resident memory after each sixth of it.
4. Training cost (``--training``): one update (forward and backward) of the fsdd model on a padded batch of
   48 utterances of 2-5 s, the streaming model's chunked computation against the offline BiLSTM's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from asr.benchmarks.serve import _rss_mb
from asr.data.audio import load_audio
from asr.data.manifest import read_manifest
from asr.model.config import ModelConfig
from asr.model.network import AcousticModel
from asr.recognize.recognizer import load_model

BLOCK_SECONDS = 0.1


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def latency(rec, waves: list[np.ndarray]) -> tuple[list[float], list[float], float]:
    """Per word: seconds from its end in the audio to its first partial (streaming) and to the whole-file result
    (reference); and the streams' real-time factor."""
    rate, block = rec.sample_rate, round(BLOCK_SECONDS * rec.sample_rate)
    streamed, whole, compute, audio = [], [], 0.0, 0.0
    for wave in waves:
        stream, first_seen = rec.stream(), {}
        for i in range(0, len(wave), block):
            t0 = time.perf_counter()
            words = stream.accept(wave[i : i + block]).text.split()
            spent = time.perf_counter() - t0
            compute += spent
            clock = min(len(wave), i + block) / rate + spent
            for k in range(len(words)):
                first_seen.setdefault((k, words[k]), clock)
        t0 = time.perf_counter()
        stream.finish()
        final = stream.transcript
        spent = time.perf_counter() - t0
        compute += spent
        audio += len(wave) / rate
        t0 = time.perf_counter()
        rec.search(rec.log_probs(wave))  # the reference: the whole file decoded once it is there
        offline = time.perf_counter() - t0
        for k, w in enumerate(final.words):
            seen = first_seen.get((k, w.word), len(wave) / rate + spent)  # not in a partial: at the end
            streamed.append(seen - w.end)
            whole.append(len(wave) / rate + offline - w.end)
    return streamed, whole, compute / audio


def _client(url: str, waves: list[np.ndarray], rate: int, until: float, delays: list[float]) -> None:
    import websocket  # websocket-client, in the test extra: pip install -e '.[test]'

    block = round(BLOCK_SECONDS * rate)
    while time.perf_counter() < until:
        for wave in waves:
            ws = websocket.create_connection(url, timeout=60)
            ws.send(json.dumps({"config": {"sample_rate": rate}}))
            pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2").tobytes()
            due = time.perf_counter()
            for i in range(0, len(pcm), 2 * block):
                due += BLOCK_SECONDS
                sent = time.perf_counter()
                ws.send_binary(pcm[i : i + 2 * block])
                ws.recv()
                delays.append(time.perf_counter() - sent)
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)  # real-time pace
            ws.send('{"eof": 1}')
            ws.recv()
            ws.close()
            if time.perf_counter() >= until:
                return


def concurrency(model: Path, waves: list[np.ndarray], rate: int, counts: list[int], seconds: float) -> list[tuple]:
    workers = os.cpu_count() or 1
    cmd = [sys.executable, "-m", "asr", "serve", str(model), "--port", "0", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows = []
    try:
        url = proc.stdout.readline().split()[4].replace("http://", "ws://") + "v1/stream"
        _client(url, waves[:2], rate, 0.0, [])  # every worker loads its model on its first request
        _client(url, waves[:2], rate, 0.0, [])
        for n in counts:
            delays: list[float] = []
            until = time.perf_counter() + seconds
            threads = [
                threading.Thread(target=_client, args=(url, waves[k % len(waves) :], rate, until, delays))
                for k in range(n)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            on_time = sum(d < BLOCK_SECONDS for d in delays) / max(1, len(delays))
            rows.append((n, len(delays), _pct(delays, 50), _pct(delays, 95), max(delays), on_time))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return rows


def memory(rec, waves: list[np.ndarray], hours: float) -> list[tuple[float, float]]:
    rate = rec.sample_rate
    pause = np.zeros(round(1.5 * rate), np.float32) + np.float32(1e-4)
    stream, fed, marks, rows = rec.stream(), 0, [hours * 3600 * k / 6 for k in range(1, 7)], []
    rows.append((0.0, _rss_mb(os.getpid())))
    while marks:
        for wave in waves:
            stream.accept(wave)
            stream.accept(pause)
            fed += len(wave) + len(pause)
            if fed / rate >= marks[0]:
                rows.append((marks.pop(0) / 60, _rss_mb(os.getpid())))
                if not marks:
                    break
    stream.finish()
    return rows


def training_cost(repeats: int = 5) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    x, lengths = torch.randn(48, 510, 39), torch.randint(200, 511, (48,))
    rows = []
    for name, extra in (("offline BiLSTM", {}), ("streaming (chunk 6 + 5)", {"chunk": 6, "right_context": 5})):
        model = AcousticModel(39, 12, ModelConfig(num_layers=2, hidden=128, stack=3, dropout=0.3, **extra)).train()
        times = []
        for _ in range(repeats + 1):  # the first builds oneDNN's kernels
            t0 = time.perf_counter()
            model(x, lengths).log_probs.sum().backward()
            times.append(time.perf_counter() - t0)
        rows.append((name, statistics.median(times[1:])))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("data/fsdd_stream/model.pt"))
    p.add_argument("--data", type=Path, default=Path("data/fsdd_stream/prepare/connected/test.jsonl"))
    p.add_argument("--utterances", type=int, default=100)
    p.add_argument("--streams", default="8,16,24")
    p.add_argument("--seconds", type=float, default=30.0, help="how long each concurrency level runs")
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--training", action="store_true", help="only the training cost table")
    args = p.parse_args(argv)
    if args.training:
        rows = training_cost()
        print("| model | s per update | ratio |\n|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.3f} | {seconds / rows[0][1]:.2f}x |")
        return
    rec = load_model(args.model, threads=1)
    utts = read_manifest(args.data)[: args.utterances]
    waves = [load_audio(u.audio, rec.sample_rate) for u in utts]
    audio = sum(len(w) for w in waves) / rec.sample_rate
    cfg = rec.model.config
    step_ms = rec.frame_seconds * 1000
    print(
        f"model {args.model}: chunk {cfg.chunk} + right context {cfg.right_context} steps of "
        f"{step_ms:g} ms = {(cfg.chunk + cfg.right_context) * step_ms:g} ms; {len(waves)} "
        f"recordings of {args.data} ({audio:.0f} s); {os.cpu_count()} cores"
    )
    streamed, whole, rtf = latency(rec, waves)
    print("\n1. word latency, 1 thread (seconds from a word's end in the audio until it is shown)\n")
    print("| | words | mean | p50 | p95 |")
    print("|---|---|---|---|---|")
    for name, v in (("streaming: first partial holding it", streamed), ("reference: whole file decoded", whole)):
        print(f"| {name} | {len(v)} | {statistics.mean(v):.3f} | {_pct(v, 50):.3f} | {_pct(v, 95):.3f} |")
    print(
        f"\nstreaming / reference, mean: {statistics.mean(streamed) / statistics.mean(whole):.2f}; "
        f"real-time factor of the streams: {rtf:.4f}"
    )
    print(f"\n2. real-time streams over WebSocket, {os.cpu_count()} workers (reply delay, s; on time < 0.1 s)\n")
    print("| streams | replies | p50 | p95 | max | on time |")
    print("|---|---|---|---|---|---|")
    for n, count, p50, p95, worst, on_time in concurrency(
        args.model, waves, rec.sample_rate, [int(x) for x in args.streams.split(",")], args.seconds
    ):
        print(f"| {n} | {count} | {p50:.3f} | {p95:.3f} | {worst:.3f} | {100 * on_time:.1f}% |")
    print(f"\n3. resident memory over a {args.hours:g}-hour stream\n")
    print("| audio (min) | RSS (MB) |")
    print("|---|---|")
    for minutes, mb in memory(rec, waves, args.hours):
        print(f"| {minutes:.0f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
