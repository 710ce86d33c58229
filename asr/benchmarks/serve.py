"""Benchmark: ``asr serve`` under load, the ONNX model against the torch model in the same run.

    python -m asr.benchmarks.serve [--model data/fsdd/model.pt] [--clients 32] [--requests 1000] [--workers 2]

For each of the exported ``model.pt`` (the reference) and its ONNX export, a server is started
on a free 127.0.0.1 port and ``--clients`` threads send ``--requests`` POSTs of FSDD recordings
(OpenAI-style form, ``response_format=json``), each as soon as its previous answer came. Every
answer is checked against the same model's direct transcription of that file. Reported:
failed requests, wrong answers, throughput, p50/p95 latency, and the resident memory of the
server's processes after 25 warm-up requests per worker and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from asr import corpora
from asr.corpora import fsdd
from asr.model.onnx_export import to_onnx
from asr.recognize.recognizer import load_model
from asr.serve.client import post_audio


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (uvicorn's workers), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def _load(model: Path, files: list[Path], clients: int, requests: int, workers: int) -> dict:
    expected = {f: load_model(model).transcribe(f).text for f in files}
    data = {f: f.read_bytes() for f in files}
    proc = subprocess.Popen(
        [sys.executable, "-m", "asr", "serve", str(model), "--port", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # printed once the socket is bound
        url = line.split()[4]
        for f in files[: workers * 25]:  # warm up every worker (each loads its own model) and its allocators
            post_audio(url, f.name, data[f])
        rss_start = _rss_mb(proc.pid)
        latencies, failed, wrong, lock = [], 0, 0, threading.Lock()
        jobs = iter(range(requests))

        def client() -> None:
            nonlocal failed, wrong
            for k in jobs:  # the shared iterator hands each request number to one client
                f = files[k % len(files)]
                t0 = time.perf_counter()
                status, body = post_audio(url, f.name, data[f])
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if status != 200:
                        failed += 1
                    elif json.loads(body)["text"] != expected[f]:
                        wrong += 1

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss_end = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    q = statistics.quantiles(latencies, n=100)
    return {
        "answered": len(latencies),
        "failed": failed,
        "wrong": wrong,
        "throughput": len(latencies) / wall,
        "p50": 1000 * q[49],
        "p95": 1000 * q[94],
        "rss_start": rss_start,
        "rss_end": rss_end,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="data/fsdd/model.pt", help="an exported model file (the recipe's export stage)")
    p.add_argument("--corpus-dir", help="folder holding fsdd/ (default $ASR_CORPORA; else downloaded)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--files", type=int, default=200, help="distinct recordings sent in turn")
    args = p.parse_args()
    recordings = corpora.locate(fsdd.source(), args.corpus_dir)
    files = [r.path for r in fsdd.scan(recordings)][:: max(1, len(fsdd.scan(recordings)) // args.files)][: args.files]
    with tempfile.TemporaryDirectory(prefix="asr-bench-serve-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        to_onnx(args.model, onnx_path)
        rows = {
            "torch (model.pt)": _load(Path(args.model), files, args.clients, args.requests, args.workers),
            "ONNX (asr export)": _load(onnx_path, files, args.clients, args.requests, args.workers),
        }
    print(
        f"serve: {args.requests} requests from {args.clients} concurrent clients, {len(files)} FSDD recordings "
        f"in turn, {args.workers} server worker(s), 127.0.0.1, {os.cpu_count()} CPU cores"
    )
    print("| model | answered | failed | wrong | requests/s | ratio | p50 ms | p95 ms | server RSS MB start -> end |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref = rows["torch (model.pt)"]["throughput"]
    for name, r in rows.items():
        print(
            f"| {name} | {r['answered']} | {r['failed']} | {r['wrong']} | {r['throughput']:.0f} | "
            f"{r['throughput'] / ref:.2f}x | {r['p50']:.0f} | {r['p95']:.0f} | "
            f"{r['rss_start']:.0f} -> {r['rss_end']:.0f} |"
        )


if __name__ == "__main__":
    main()
