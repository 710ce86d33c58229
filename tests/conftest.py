"""Shared fixtures: synthetic audio builders and the real FSDD corpus.

Tests that need real speech find it through ASR_CORPORA (a folder holding
``fsdd/``), as the recipes do. Under CI=true a missing corpus fails the test
instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A sine plus a little noise, ``(n,)`` or ``(n, channels)`` float32 in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1)


def write_wav(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), data, rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def corpora_root() -> Path:
    env = os.environ.get("ASR_CORPORA")
    if env and (Path(env) / "fsdd" / "recordings").is_dir():
        return Path(env)
    msg = f"FSDD corpus not found: set ASR_CORPORA to a folder holding fsdd/recordings (now {env!r})"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def fsdd_recordings(corpora_root) -> Path:
    return corpora_root / "fsdd" / "recordings"


def build_features(work: Path, sets: dict, **cfg_overrides) -> Path:
    """Run the real features stage on ``{set name: [Utterance]}``; returns the features directory."""
    from types import SimpleNamespace

    from asr import features
    from asr.manifest import write_manifest

    for name, utts in sets.items():
        write_manifest(work / "prepare" / f"{name}.jsonl", utts)
    cfg = features.FeatureConfig(
        **{"sample_rate": 8_000, "sets": tuple(sets), "train_sets": tuple(sets)[:1], **cfg_overrides}
    )
    out = work / "features"
    out.mkdir(parents=True)
    features.stage(SimpleNamespace(config=cfg, out=out, inputs={"prepare": work / "prepare"}, nj=1, log=lambda m: None))
    return out


@pytest.fixture(scope="session")
def fsdd_counts(fsdd_recordings) -> dict:
    """What the copy at hand holds (the shared copy has 4 speakers, the public download more):
    files, speakers, and takes per split of the official split (0-4 test, 5-9 dev, the rest train)."""
    from asr.corpora import fsdd

    recs = fsdd.scan(fsdd_recordings)
    split = [fsdd.split_of(r) for r in recs]
    return {
        "files": len(recs),
        "speakers": sorted({r.speaker for r in recs}),
        "per_speaker": {s: sum(r.speaker == s for r in recs) for s in {r.speaker for r in recs}},
        **{k: split.count(k) for k in fsdd.SPLITS},
    }


@pytest.fixture(scope="session")
def fsdd_utts(fsdd_recordings):
    """A few real isolated-digit utterances of two speakers, one per digit and speaker."""
    from asr.corpora import fsdd

    recs = [r for r in fsdd.scan(fsdd_recordings) if r.index == 7 and r.speaker in ("jackson", "theo")]
    return [fsdd.to_utterance(r) for r in recs]


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 (a free port) serving ``tmp_path/served``; stopped after the test."""
    import http.server
    import threading
    from functools import partial

    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="session")
def so762_root(corpora_root) -> Path:
    root = corpora_root / "speechocean762"
    if not (root / "train" / "wav.scp").is_file():
        msg = f"speechocean762 not found under {corpora_root}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="module")
def tiny_features(fsdd_utts, tmp_path_factory):
    """Features of six real utterances of one speaker (the set ``tiny``), for quick training tests."""
    work = tmp_path_factory.mktemp("tiny")
    six = [u for u in fsdd_utts if u.speaker == "jackson"][:6]
    return build_features(work, {"tiny": six})


REPO = Path(__file__).resolve().parent.parent
# the fsdd recipe shortened: a subset, a small model, few updates, a 2-point decoding grid; no speed
# perturbation, augmented copies or SpecAugment (they slow 8 epochs)
SHORT = [
    "prepare.connected_train=300",
    "prepare.connected_dev=50",
    "prepare.connected_test=100",
    "features.speed_perturb=",
    "features.augment.copies=0",
    "train.spec_augment=false",
    "train.model.dropout=0.1",
    "train.max_utterances=800",
    "train.epochs=8",
    "train.model.hidden=96",
    "train.batch_frames=2000",
    "train.lr=0.005",
    "decode.lm_weights=0,1",
    "decode.word_scores=0",
]


def asr(*args, check=True):
    """``python -m asr ARGS`` from the repository root; fails the test on a non-zero exit unless ``check=False``."""
    r = subprocess.run([sys.executable, "-m", "asr", *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def run_fsdd(work, corpora_root, *extra):
    sets = [a for s in SHORT for a in ("--set", s)]
    return asr("run", "fsdd", "--work-dir", str(work), "--corpus-dir", str(corpora_root), *sets, *extra)


@pytest.fixture(scope="session")
def fsdd_work(corpora_root, tmp_path_factory):
    """A work directory with the short fsdd recipe run end to end (its exported model.pt included)."""
    work = tmp_path_factory.mktemp("fsdd_recipe")
    run_fsdd(work, corpora_root)
    return work
