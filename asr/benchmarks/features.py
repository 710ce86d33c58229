"""Benchmark: the features stage against a plain librosa loop on the same FSDD files.

    python -m asr.benchmarks.features [--corpus-dir DIR] [--copies 1 8] [--nj 2]

Each measurement runs in a fresh process so its peak memory (max RSS of the
process and its workers) is its own. "ours" is the real features stage (audio
read + MFCC + deltas + CMVN statistics + memory-mapped store); "librosa" is
``librosa.load`` + ``librosa.feature.mfcc`` + ``np.save`` per file. Both use the
same analysis settings. Times exclude interpreter start and imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from asr import corpora
from asr.corpora import fsdd
from asr.data.manifest import Utterance, write_manifest
from asr.features import stage as features
from asr.features.frontend import FeatureConfig

CFG = FeatureConfig(sample_rate=fsdd.NATIVE_RATE, sets=("all",), train_sets=("all",))


def _manifest(recordings: Path, copies: int, out: Path) -> int:
    base = [fsdd.to_utterance(r) for r in fsdd.scan(recordings)]
    utts = [Utterance(f"c{c}-{u.id}", u.audio, u.duration, u.text, u.speaker) for c in range(copies) for u in base]
    write_manifest(out / "prepare" / "all.jsonl", utts)
    return len(utts)


def run_ours(recordings: Path, copies: int, nj: int, work: Path) -> dict:
    n = _manifest(recordings, copies, work)
    (work / "features").mkdir()
    ctx = SimpleNamespace(
        config=CFG, out=work / "features", inputs={"prepare": work / "prepare"}, nj=nj, log=lambda m: None
    )
    t0 = time.perf_counter()
    features.stage(ctx)
    return {"utterances": n, "seconds": time.perf_counter() - t0}


def run_librosa(recordings: Path, copies: int, work: Path) -> dict:
    import librosa
    import numpy as np

    files = sorted(recordings.glob("*.wav"))
    t0 = time.perf_counter()
    for c in range(copies):
        for f in files:
            y, sr = librosa.load(f, sr=CFG.sample_rate)
            m = librosa.feature.mfcc(
                y=y,
                sr=sr,
                n_mfcc=CFG.n_mfcc,
                n_fft=CFG.n_fft,
                hop_length=CFG.hop_length,
                win_length=CFG.win_length,
                n_mels=CFG.n_mels,
                fmin=CFG.f_min,
            )
            np.save(work / f"c{c}-{f.stem}.npy", m)
    return {"utterances": copies * len(files), "seconds": time.perf_counter() - t0}


def _child(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.child == "ours":
            r = run_ours(Path(args.recordings), args.copies, args.nj, Path(tmp))
        else:
            r = run_librosa(Path(args.recordings), args.copies, Path(tmp))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r["peak_mb"] = max(own, kids) / 1024
    print(json.dumps(r))


def measure(which: str, recordings: Path, copies: int, nj: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "asr.benchmarks.features",
        "--child",
        which,
        "--recordings",
        str(recordings),
        "--copies",
        str(copies),
        "--nj",
        str(nj),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", help="folder holding fsdd/ (default $ASR_CORPORA)")
    p.add_argument("--copies", type=int, nargs="+", default=[1, 8], help="corpus sizes to run, in copies")
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--child", choices=["ours", "librosa"], help=argparse.SUPPRESS)
    p.add_argument("--recordings", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.copies = args.copies[0]
        return _child(args)
    recordings = corpora.locate(fsdd.source(), args.corpus_dir)
    measure("librosa", recordings, 1, 1)  # warm librosa's numba cache, so neither side pays for JIT compilation
    print(f"features: FSDD {recordings}, {CFG.n_mfcc} MFCC + deltas at {CFG.sample_rate} Hz, nj={args.nj}")
    print("| corpus | utterances | librosa loop (s) | ours (s) | speed-up | librosa peak MB | ours peak MB |")
    print("|---|---|---|---|---|---|---|")
    for copies in args.copies:
        ref = measure("librosa", recordings, copies, 1)
        ours = measure("ours", recordings, copies, args.nj)
        print(
            f"| {copies}x | {ours['utterances']} | {ref['seconds']:.2f} | {ours['seconds']:.2f} | "
            f"{ref['seconds'] / ours['seconds']:.1f}x | {ref['peak_mb']:.0f} | {ours['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
