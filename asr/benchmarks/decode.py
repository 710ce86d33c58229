"""Benchmark: decoding real-time factor on one CPU thread, and the cold start of ``asr transcribe``
with the torch model file against its ONNX export, in the same run.

    python -m asr.benchmarks.decode [--recipe fsdd] [--work-dir data/fsdd] [--repeats 3]

Needs a finished recipe run (its model, features, LM and exported ``model.pt``). The first
table: the decode stage's path (stored features + network + search) per decoder. The second:
the shipped model (``data/<recipe>/model.pt``, its tuned decoding) and its ONNX export
transcribing the test sets' audio (MFCC + network + search, one thread), and the cold start
of ``asr transcribe`` on a 1-second file in fresh processes, split into import, model load
and decode; the bare ``import torch, torchaudio`` is shown for reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asr.core.layout import MODEL, DecodeDir, TrainDir
from asr.decode.stage import Setting, decode_sets
from asr.features.store import FeatureStore
from asr.model.onnx_export import to_onnx
from asr.pipeline import recipe
from asr.recognize.recognizer import load_model

CHILD = """
import time; t0 = time.perf_counter()
import sys
from asr.cli import main
import asr.recognize.recognizer
t1 = time.perf_counter()
rec = asr.recognize.recognizer.load_model(sys.argv[1])
t2 = time.perf_counter()
text = rec.transcribe(sys.argv[2]).text
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, "torch" in sys.modules, text)
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
        grid = [Setting(settings["lm_weight"], settings["word_score"], settings.get("mix_weight", 1.0))]
        res = decode_sets(model, work / "features", work / "lm", c, test_sets, grid, nj=1)
        seconds = sum(r["seconds"] for r in res.values())
        rows.append((method, seconds, seconds / audio, target))
    print(f"decode: {args.recipe} test sets {test_sets}, {audio:.0f} s of audio, 1 process, 1 thread")
    print("| decoder | wall s | RTF | target |")
    print("|---|---|---|---|")
    for method, seconds, rtf, target in rows:
        print(f"| {method} | {seconds:.2f} | {rtf:.4f} | <= {target} |")

    # the shipped model (the export stage's, with its tuned decoding and LM) and its ONNX export
    shipped = work / MODEL if (work / MODEL).is_file() else model
    utts = [u for n in test_sets for u in store.open(n).utts]
    with tempfile.TemporaryDirectory(prefix="asr-bench-decode-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        to_onnx(shipped, onnx_path)
        paths = {"torch (model.pt)": shipped, "ONNX (asr export)": onnx_path}
        rtf = {}
        for name, path in paths.items():  # the whole transcription path from audio, one thread
            rec = load_model(path, threads=1)
            t0 = time.perf_counter()
            for u in utts:
                rec.transcribe(u["audio"])
            rtf[name] = (time.perf_counter() - t0) / audio
        one_second = min(utts, key=lambda u: abs(u["duration"] - 1.0))
        cold = {}
        for name, path in paths.items():
            walls, parts = [], []
            for _ in range(args.repeats):
                walls.append(_wall([sys.executable, "-m", "asr", "transcribe", str(path), one_second["audio"]])[0])
                out = _wall([sys.executable, "-c", CHILD, str(path), one_second["audio"]])[1].split()
                parts.append([float(x) for x in out[:3]])
            cold[name] = (statistics.median(walls), np.median(np.array(parts), axis=0), out[3] == "True")
        bare = statistics.median(
            _wall([sys.executable, "-c", "import torch, torchaudio"])[0] for _ in range(args.repeats)
        )
    print(
        f"\ntranscription from audio ({shipped.name}: {rec.options.method}), {len(utts)} files, {audio:.0f} s, "
        f"1 thread; cold start: `asr transcribe` on {Path(one_second['audio']).name} "
        f"({one_second['duration']:.2f} s), median of {args.repeats} fresh processes"
    )
    print(
        "| model | RTF, 1 thread | cold start, whole process s | ratio | import s | load s | decode s "
        "| torch imported |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ref = cold["torch (model.pt)"][0]
    for name in paths:
        wall, (imp, load, dec), torch_loaded = cold[name]
        print(
            f"| {name} | {rtf[name]:.4f} | {wall:.2f} | {wall / ref:.2f}x | {imp:.2f} | {load:.2f} | {dec:.2f} | "
            f"{'yes' if torch_loaded else 'no'} |"
        )
    print(f"| python -c 'import torch, torchaudio' (for reference) | - | {bare:.2f} | {bare / ref:.2f}x | | | | yes |")


if __name__ == "__main__":
    main()
