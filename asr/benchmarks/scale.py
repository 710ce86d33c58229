"""Benchmark: does the data path scale? prepare + features + one training epoch over 1x, 10x and 100x FSDD.

    python -m asr.benchmarks.scale [--corpus-dir DIR] [--sizes 1 10 100] [--nj 2] [--work DIR]

Each size is FSDD's 2,000 recordings listed that many times under new ids (``c<k>-<id>``; about
0.2 / 2 / 20 hours), run as a user runs their own corpus: ``asr run custom --stop-stage train``
with the custom recipe's model (2 x 128 BiLSTM, x3 stacking) for one epoch, in a fresh work
directory, so each stage's wall time and peak memory (max RSS of the stage's process and its
workers, from its record.json) are its own. A fixed 100-utterance dev set is evaluated once.

The table gives seconds per hour of audio for each stage and peak memory, and the ratio of each
to the same number at the previous size (the reference): a data path that scales keeps time per
hour constant (ratio about 1) and memory flat.
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

from asr import corpora
from asr.corpora import fsdd
from asr.data.manifest import Utterance, write_manifest

STAGES = ("prepare", "features", "lm", "train")
DEV_UTTERANCES = 100


def _manifests(recordings: Path, copies: int, out: Path) -> tuple[float, int]:
    base = [fsdd.to_utterance(r) for r in fsdd.scan(recordings)]
    train = [Utterance(f"c{c}-{u.id}", u.audio, u.duration, u.text, u.speaker) for c in range(copies) for u in base]
    dev = [Utterance(f"dev-{u.id}", u.audio, u.duration, u.text, u.speaker) for u in base[:DEV_UTTERANCES]]
    write_manifest(out / "train.jsonl", train)
    write_manifest(out / "dev.jsonl", dev)
    write_manifest(out / "test.jsonl", dev)
    return sum(u.duration for u in train) / 3600, len(train)


def run_size(recordings: Path, copies: int, nj: int, work: Path) -> dict:
    lists = work / "lists"
    hours, n = _manifests(recordings, copies, lists)
    cmd = [
        sys.executable,
        "-m",
        "asr",
        "run",
        "custom",
        "--work-dir",
        str(work / "w"),
        "--nj",
        str(nj),
        "--stop-stage",
        "train",
        "--set",
        f"prepare.train={lists / 'train.jsonl'}",
        "--set",
        f"prepare.dev={lists / 'dev.jsonl'}",
        "--set",
        f"prepare.test={lists / 'test.jsonl'}",
        "--set",
        f"features.sample_rate={fsdd.NATIVE_RATE}",
        "--set",
        "train.epochs=1",
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"size {copies}x failed:\n{r.stderr[-3000:]}")
    out = {"copies": copies, "hours": hours, "utterances": n, "wall": wall}
    for s in STAGES:
        rec = json.loads((work / "w" / s / "record.json").read_text())
        out[s] = {"seconds": rec["wall_seconds"], "peak_rss_mb": rec.get("peak_rss_mb", 0)}
    feats = work / "w" / "features" / "train" / "train.f32"
    out["largest_file_mb"] = max(p.stat().st_size for p in feats.parent.glob("train*.f32")) / 2**20
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| size | hours | utterances | " + " | ".join(f"{s} s/h" for s in STAGES) + " | total s/h | "
        "ratio to previous | peak RSS MB (prepare / features / train) | ratio to previous | largest feature file MB |",
        "|" + "---|" * (9 + len(STAGES) - 1),
    ]
    prev = None
    for r in results:
        per_h = {s: r[s]["seconds"] / r["hours"] for s in STAGES}
        total = sum(per_h.values())
        peak = max(r[s]["peak_rss_mb"] for s in STAGES)
        ratio_t = f"{total / prev[0]:.2f}" if prev else "-"
        ratio_m = f"{peak / prev[1]:.2f}" if prev else "-"
        lines.append(
            f"| {r['copies']}x | {r['hours']:.2f} | {r['utterances']:,} | "
            + " | ".join(f"{per_h[s]:.1f}" for s in STAGES)
            + f" | {total:.1f} | {ratio_t} | {r['prepare']['peak_rss_mb']:.0f} / "
            f"{r['features']['peak_rss_mb']:.0f} / {r['train']['peak_rss_mb']:.0f} | {ratio_m} | "
            f"{r['largest_file_mb']:.0f} |"
        )
        prev = (total, peak)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus-dir", help="folder holding fsdd/ (default: $ASR_CORPORA, else download)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], help="copies of FSDD per run")
    p.add_argument("--nj", type=int, default=2, help="feature workers")
    p.add_argument("--work", help="keep the work directories here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    recordings = corpora.locate(fsdd.source(), args.corpus_dir)
    base = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="asr-scale-"))
    results = []
    for k in args.sizes:
        results.append(run_size(recordings, k, args.nj, base / f"{k}x"))
        print(f"{k}x: {results[-1]['hours']:.2f} h in {results[-1]['wall']:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    if not args.work:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
