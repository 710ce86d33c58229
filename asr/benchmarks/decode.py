"""Benchmark: decoding real-time factor on one CPU thread, and the cold start of ``asr transcribe``.

    python -m asr.benchmarks.decode [--recipe fsdd] [--work-dir data/fsdd] [--repeats 3]

Needs a finished recipe run (its model, features and LM). RTF is wall time over
audio time for the recipe's test sets (feature loading + network + search, one
process, one thread). The cold start runs ``asr transcribe`` on a 1-second file
in fresh processes and splits the time into import, model load and decode; the
bare ``import torch, torchaudio`` is measured in the same run as the reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from asr import recipe
from asr.decode import decode_sets
from asr.features import FeatureStore
from asr.layout import DecodeDir, TrainDir

CHILD = """
import time; t0 = time.perf_counter()
import sys
from asr.cli import main
import asr.transcribe
t1 = time.perf_counter()
rec = asr.transcribe.load_model(sys.argv[1])
t2 = time.perf_counter()
text = rec.transcribe(sys.argv[2]).text
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, text)
"""


def _wall(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="fsdd", help="a finished recipe run to measure (default fsdd)")
    p.add_argument("--work-dir", help="its work directory (default data/<recipe>)")
    p.add_argument("--corpus-dir")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    pipe = recipe.pipeline(args.recipe, args.work_dir, corpus_dir=args.corpus_dir)
    work = pipe.work_dir
    model = TrainDir(pipe.out_dir("train")).model
    settings = json.loads(DecodeDir(pipe.out_dir("decode")).settings.read_text())
    store = FeatureStore(work / "features")
    cfg = pipe.config["decode"]
    test_sets = store.expand(cfg.sets)
    audio = sum(u["duration"] for n in test_sets for u in store.open(n).utts)

    rows = []
    methods = dict.fromkeys(["greedy", "lexicon_lm", settings["method"]])  # and the recipe's own decoder
    for method, target in ((m, 0.01 if m == "greedy" else 0.05) for m in methods):
        c = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, method=method))
        grid = [(settings["lm_weight"], settings["word_score"], settings.get("mix_weight", 1.0))]
        res = decode_sets(model, work / "features", work / "lm", c, test_sets, grid, nj=1)
        seconds = sum(r["seconds"] for r in res.values())
        rows.append((method, seconds, seconds / audio, target))
    print(f"decode: {args.recipe} test sets {test_sets}, {audio:.0f} s of audio, 1 process, 1 thread")
    print("| decoder | wall s | RTF | target |")
    print("|---|---|---|---|")
    for method, seconds, rtf, target in rows:
        print(f"| {method} | {seconds:.2f} | {rtf:.4f} | <= {target} |")

    one_second = min((u for n in test_sets for u in store.open(n).utts), key=lambda u: abs(u["duration"] - 1.0))
    bare, cli, parts = [], [], []
    for _ in range(args.repeats):
        bare.append(_wall([sys.executable, "-c", "import torch, torchaudio"])[0])
        cli.append(_wall([sys.executable, "-m", "asr", "transcribe", str(model), one_second["audio"]])[0])
        parts.append([float(x) for x in _wall([sys.executable, "-c", CHILD, str(model), one_second["audio"]])[1].split()[:3]])
    med = np.median(np.array(parts), axis=0)
    b, c = statistics.median(bare), statistics.median(cli)
    print(f"\ncold start: `asr transcribe` on {Path(one_second['audio']).name} ({one_second['duration']:.2f} s), "
          f"median of {args.repeats}")
    print("| process | wall s |")
    print("|---|---|")
    print(f"| python -c 'import torch, torchaudio' (reference) | {b:.2f} |")
    print(f"| asr transcribe (whole process) | {c:.2f} |")
    print(f"| - import | {med[0]:.2f} |")
    print(f"| - model load | {med[1]:.2f} |")
    print(f"| - decode | {med[2]:.2f} |")
    print(f"| excess over the reference (target <= 1 s) | {c - b:.2f} |")


if __name__ == "__main__":
    main()
