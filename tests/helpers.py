"""Helpers the tests share: synthetic audio builders, the real features stage on given utterances, the
``asr`` command in a subprocess and the fsdd recipe shortened. (Fixtures are in ``conftest.py``.)"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.benchmarks.side_by_side import SHORT as BENCHMARK_SHORT


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A sine plus a little noise, ``(n,)`` or ``(n, channels)`` float32 in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1)


def write_wav(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def build_features(work: Path, sets: dict, **cfg_overrides) -> Path:
    """Run the real features stage on ``{set name: [Utterance]}``; returns the features directory."""
    from types import SimpleNamespace

    from asr.data.manifest import write_manifest
    from asr.features import stage as features

    for name, utts in sets.items():
        write_manifest(work / "prepare" / f"{name}.jsonl", utts)
    cfg = features.FeatureConfig(
        **{"sample_rate": 8_000, "sets": tuple(sets), "train_sets": tuple(sets)[:1], **cfg_overrides}
    )
    out = work / "features"
    out.mkdir(parents=True)
    features.stage(SimpleNamespace(config=cfg, out=out, inputs={"prepare": work / "prepare"}, nj=1, log=lambda m: None))
    return out


REPO = Path(__file__).resolve().parent.parent
# the fsdd recipe shortened as the side-by-side benchmark runs it, with dropout 0.1 and a 2-point decoding grid
SHORT = [*BENCHMARK_SHORT, "train.model.dropout=0.1", "decode.lm_weights=0,1", "decode.word_scores=0"]


def asr(*args, check=True):
    """``python -m asr ARGS`` from the repository root; fails the test on a non-zero exit unless ``check=False``."""
    r = subprocess.run([sys.executable, "-m", "asr", *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@contextlib.contextmanager
def serving(model, *flags):
    """``asr serve MODEL --port 0 FLAGS`` on 127.0.0.1: yields its ``http://127.0.0.1:PORT/``; stopped after."""
    cmd = [sys.executable, "-m", "asr", "serve", str(model), "--port", "0", *flags]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # written once the socket is bound
        assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
        yield line.split()[4]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run_fsdd(work, corpora_root, *extra, recipe: str = "fsdd"):
    sets = [a for s in SHORT for a in ("--set", s)]
    return asr("run", recipe, "--work-dir", str(work), "--corpus-dir", str(corpora_root), *sets, *extra)


# the speechocean762 recipe shortened (about 3 min on 2 cores): 6 + 6 held-out speakers, a small model
SO762_SHORT = [
    # no synthetic voices: 1,200 utterances drawn from the pooled set would be half eSpeak's (tested in test_pool)
    "prepare.pool=",
    "prepare.dev_speakers=6",
    "prepare.devtest_speakers=6",
    "train.max_utterances=1200",
    "features.speed_perturb=",
    "train.spec_augment=false",
    # intermediate CTC on the middle of 2 layers, set before num_layers (the recipe's layer 2 is not below 2)
    "train.model.inter_ctc=1",
    "train.model.num_layers=2",
    "train.model.hidden=128",
    "train.epochs=8",
    "train.batch_frames=4000",
    "train.model.dropout=0.1",
    "lm.extra_words=5000",
    "decode.search.beam_size=32",
    "decode.lm_weights=0.5,1",
    "decode.word_scores=0",
    "decode.mix_weights=0.9",
]
