"""Reading the features stage's output back: its config, CMVN and sets (:class:`FeatureStore`), each set's
utterances one at a time from its shards (:class:`FeatureSet`, with ``pread``: nothing is held in memory)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from asr.core.errors import AsrError
from asr.core.layout import FEATURES_INDEX, FeaturesDir, shard_path
from asr.data.manifest import expand_sets
from asr.features.frontend import Cmvn, feature_config


class FeatureSet:
    """One stored set: ``len(fs)`` utterances, ``fs[i] -> (frames, dim)`` array read from disk, ``fs.utts[i]``
    records."""

    def __init__(self, prefix: str | Path, dim: int):
        self.prefix, self.dim = Path(prefix), dim
        with open(f"{self.prefix}{FEATURES_INDEX}", encoding="utf-8") as f:
            self.utts: list[dict] = [json.loads(line) for line in f]
        frames: dict[int, int] = {0: 0}
        for u in self.utts:
            frames[u.setdefault("shard", 0)] = frames.get(u["shard"], 0) + u["frames"]
        self.paths = [shard_path(self.prefix, k) for k in range(max(frames) + 1)]
        for k, path in enumerate(self.paths):
            size = os.path.getsize(path) if path.is_file() else -1
            if size != frames.get(k, 0) * dim * 4:
                raise AsrError(
                    f"{path} holds {size if size >= 0 else 'no'} bytes, the index expects "
                    f"{frames.get(k, 0) * dim * 4}; re-run the features stage with --force"
                )
        self._fds = [os.open(p, os.O_RDONLY) for p in self.paths]  # pread: safe to share with forked workers
        self.ids = {u["id"]: i for i, u in enumerate(self.utts)}

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> np.ndarray:
        u = self.utts[i]
        buf = bytearray(u["frames"] * self.dim * 4)
        if os.preadv(self._fds[u["shard"]], [buf], u["start"] * self.dim * 4) != len(buf):
            raise AsrError(
                f"{self.paths[u['shard']]}: short read for {u['id']}; re-run the features stage with --force"
            )
        return np.frombuffer(buf, np.float32).reshape(u["frames"], self.dim)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __del__(self):
        if getattr(self, "_fds", None):
            self.close()


class FeatureStore:
    """The features stage's output: its config, CMVN and every set."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = FeaturesDir(self.root)
        meta = json.loads(self.dir.meta.read_text())
        self.config = feature_config(meta["config"])
        self.cmvn = Cmvn.from_dict(json.loads(self.dir.cmvn.read_text()), self.config.dim, str(self.dir.cmvn))
        self.sets = meta["sets"]

    def expand(self, patterns) -> list[str]:
        return expand_sets(patterns, self.sets)

    def open(self, name: str) -> FeatureSet:
        if name not in self.sets:
            raise AsrError(f"feature set {name!r} not in {self.root}; sets: {self.sets}")
        return FeatureSet(self.dir.prefix(name), self.config.dim)
