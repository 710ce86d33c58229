"""Shared fixtures: the real corpora, a file server on 127.0.0.1, the short fsdd recipe run once (helpers.py
holds the helpers).

Tests that need real speech find it through ASR_CORPORA (a folder holding
``fsdd/``), as the recipes do. Under CI=true a missing corpus fails the test
instead of skipping it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SO762_SHORT, asr, build_features, run_fsdd

from asr.corpora import an4


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
def file_server(tmp_path):
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


@pytest.fixture(scope="session")
def an4_root(corpora_root) -> Path:
    root = an4.source().probe(corpora_root)
    if root is None:
        pytest.fail(f"AN4 not found under {corpora_root}")
    return root


@pytest.fixture(scope="module")
def tiny_features(fsdd_utts, tmp_path_factory):
    """Features of six real utterances of one speaker (the set ``tiny``), for quick training tests."""
    work = tmp_path_factory.mktemp("tiny")
    six = [u for u in fsdd_utts if u.speaker == "jackson"][:6]
    return build_features(work, {"tiny": six})


@pytest.fixture(scope="session")
def fsdd_work(corpora_root, tmp_path_factory):
    """A work directory with the short fsdd recipe run end to end (its exported model.pt included)."""
    work = tmp_path_factory.mktemp("fsdd_recipe")
    run_fsdd(work, corpora_root)
    return work


@pytest.fixture(scope="session")
def fsdd_stream_work(corpora_root, tmp_path_factory):
    """A work directory with the short fsdd recipe run end to end with the streaming model (fsdd_stream)."""
    work = tmp_path_factory.mktemp("fsdd_stream_recipe")
    # fewer updates than the fsdd run: its chunked training costs twice as much per update, and the tests
    # compare the stream with the decode stage (whatever the model says), not with the references
    run_fsdd(work, corpora_root, "--set", "train.max_utterances=500", "--set", "train.epochs=6", recipe="fsdd_stream")
    return work


@pytest.fixture(scope="session")
def so762_work(so762_root, tmp_path_factory):
    """A work directory with the short speechocean762 recipe run end to end."""
    work = tmp_path_factory.mktemp("so762_recipe")
    sets = [a for s in SO762_SHORT for a in ("--set", s)]
    asr("run", "speechocean762", "--work-dir", str(work), "--corpus-dir", str(so762_root.parent), *sets)
    return work


# tests that need a trained model (the session's short recipe run, directly or through another fixture)
SLOW_FIXTURES = {"fsdd_work", "fsdd_stream_work", "tiny_features", "so762_root", "so762_work"}


def pytest_collection_modifyitems(items):
    """Mark as ``slow`` every test that needs a trained model or a recipe run (the quick command leaves them out)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
