"""Benchmark: two trainings started side by side on one machine, sharing its cores or each taking them all.

    python -m asr.benchmarks.side_by_side [--corpus-dir ../shared/corpora]

The short fsdd recipe (as the tests run it) is prepared in three work directories per case, then its train
stage is timed: alone; two at once with the default (each stage takes its share of the cores among the
machine's ``asr run``s, :mod:`asr.core.cores`); two at once with ``--threads`` set to every core (what every
run did before). The table gives the wall time of each case against running the two one after the other.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asr.core.cores import usable_cores

# the fsdd recipe shortened (the tests run it too, tests/helpers.py): a subset, a small model, few updates; no speed
# perturbation, augmented copies or SpecAugment
SHORT = [
    "prepare.connected_train=300",
    "prepare.connected_dev=50",
    "prepare.connected_test=100",
    "features.speed_perturb=",
    "features.augment.copies=0",
    "train.spec_augment=false",
    "train.max_utterances=800",
    "train.epochs=8",
    "train.model.hidden=96",
    "train.batch_frames=2000",
    "train.lr=0.005",
]


def _run(work: Path, corpus: str, stop: str, *extra: str) -> subprocess.Popen:
    sets = [a for s in SHORT for a in ("--set", s)]
    cmd = [sys.executable, "-m", "asr", "run", "fsdd", "--work-dir", str(work), "--corpus-dir", corpus, *sets]
    return subprocess.Popen([*cmd, "--stop-stage", stop, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _timed(runs: list[subprocess.Popen]) -> float:
    t0 = time.perf_counter()
    for r in runs:
        if r.wait() != 0:
            raise SystemExit("a run failed")
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus-dir", default=os.environ.get("ASR_CORPORA", "../shared/corpora"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        works = [Path(tmp) / f"w{k}" for k in range(5)]
        for w in works:  # everything before training, one at a time
            _timed([_run(w, args.corpus_dir, "lm")])
        alone = _timed([_run(works[0], args.corpus_dir, "train")])
        shared = _timed([_run(w, args.corpus_dir, "train") for w in works[1:3]])
        every = _timed([_run(w, args.corpus_dir, "train", "--threads", str(usable_cores())) for w in works[3:5]])
    print(f"the short fsdd recipe's train stage, {usable_cores()} cores")
    print("| case | wall s | vs one after the other |")
    print("|---|---|---|")
    print(f"| one run alone | {alone:.1f} | - |")
    print(f"| two side by side, cores shared (default) | {shared:.1f} | {shared / (2 * alone):.2f}x |")
    print(f"| two side by side, every core each (before) | {every:.1f} | {every / (2 * alone):.2f}x |")


if __name__ == "__main__":
    main()
