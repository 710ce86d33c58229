"""The features stage: MFCC of every set over worker processes, CMVN statistics, a sharded store.

The MFCC itself is :func:`asr.features.frontend.mfcc`, the same code every recognizer runs. Each
feature set is float32 frames in one file per ``shard_hours`` of audio (so no file grows past
a few GB) plus an index (JSON Lines: the utterance record, its shard, first frame and frame
count). Extraction streams (each finished chunk is written and dropped); reading takes one
utterance at a time with ``pread``, so neither a million utterances nor 1,000 hours are ever
held in memory (a memory map would count every page it touched as the process's own).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr.core.config import to_dict
from asr.core.context import StageContext
from asr.core.errors import AsrError, AudioError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import FEATURES_INDEX, FeaturesDir, shard_path
from asr.core.procs import fork_pool, stop_point
from asr.data import augment
from asr.data.audio import load_audio, resample
from asr.data.manifest import Utterance, expand_sets, manifest_names, read_manifest
from asr.features.frontend import Cmvn, FeatureConfig, mfcc

VERSION = 4  # of the features stage's output: bump when the features or the files it writes change
TASK_SIZE = 64  # utterances per worker task: few messages, a smooth progress bar


def _dither(wave: np.ndarray, amount: float, uid: str) -> np.ndarray:
    if not amount:
        return wave
    rng = np.random.default_rng(zlib.crc32(uid.encode()))
    return wave + amount * rng.standard_normal(wave.shape).astype(np.float32)


def load_utterance(u: Utterance, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """The utterance's samples at ``sample_rate``, optionally speed-perturbed (pitch and tempo, as sox speed)."""
    wave = load_audio(
        u.audio, sample_rate, offset=u.offset or 0.0, duration=u.duration if u.offset is not None else None
    )
    if speed != 1.0:
        wave = resample(wave, int(round(sample_rate * speed)), sample_rate)
    return wave


# --- extraction over a set, in worker processes -------------------------------------------------

_WORKER: dict = {}


def _init_worker(cfg: FeatureConfig) -> None:
    _WORKER["cfg"] = cfg


def _task(items: list[tuple[Utterance, float, int]]) -> tuple[list, list]:
    """Featurize a chunk of (utterance, speed, augmented copy or 0).

    Returns:
        ``([(utt, speed, copy, feats)], [(id, reason)])``.
    """
    cfg = _WORKER["cfg"]
    done, bad = [], []
    for u, speed, copy in items:
        try:
            if u.audio == augment.NONSPEECH_AUDIO:
                wave = augment.nonspeech(u.id, u.duration, cfg.sample_rate)
            else:
                wave = load_utterance(u, cfg.sample_rate, speed)
        except AudioError as e:
            bad.append((u.id, e.reason))
            continue
        warp = 1.0
        if copy:
            chain, rng = augment.draw(cfg.augment, copy, u.id)
            wave, warp = augment.apply(wave, chain, rng, cfg.sample_rate, cfg.augment), chain.vtlp
        done.append((u, speed, copy, mfcc(_dither(wave, cfg.dither, u.id), cfg, warp)))
    return done, bad


def _tasks(
    utts: list[Utterance], speeds: Sequence[float], copies: int = 0, nonspeech: tuple[int, int] = (0, 0)
) -> list[list[tuple[Utterance, float, int]]]:
    items = [(u, s, 0) for s in speeds for u in utts] + [(u, 1.0, k) for k in range(1, copies + 1) for u in utts]
    items += [(u, 1.0, 0) for u in nonspeech_utterances(*nonspeech)]
    return [items[i : i + TASK_SIZE] for i in range(0, len(items), TASK_SIZE)]


def nonspeech_utterances(first: int, n: int) -> list[Utterance]:
    """Generated non-speech examples ``first`` to ``first + n - 1`` (:func:`asr.data.augment.nonspeech`), empty
    transcripts, ids ``nonspeech{k}``: numbered on across the train sets, so that no two share an id."""
    seconds = np.random.default_rng(first + n).uniform(*augment.NONSPEECH_SECONDS, size=first + n)[first:]
    return [
        Utterance(f"nonspeech{k:05d}", augment.NONSPEECH_AUDIO, round(float(d), 2), "", augment.NONSPEECH_SPEAKER)
        for k, d in enumerate(seconds, first)
    ]


def copy_id(uid: str, speed: float = 1.0, copy: int = 0) -> str:
    """The id of a perturbed copy: ``sp{speed}-{id}`` or ``aug{copy}-{id}``; the id itself for the original."""
    if copy:
        return f"aug{copy}-{uid}"
    return f"sp{speed:g}-{uid}" if speed != 1.0 else uid


@dataclass
class _Stats:
    """Running per-speaker sums for CMVN (float64 to keep the variance exact)."""

    dim: int

    def __post_init__(self):
        self.speakers: dict[str, np.ndarray] = {}

    def add(self, speaker: str, feats: np.ndarray) -> None:
        acc = self.speakers.setdefault(speaker, np.zeros((3, self.dim)))
        f = feats.astype(np.float64)
        acc[0] += f.sum(0)
        acc[1] += (f * f).sum(0)
        acc[2] += len(f)


def _mean_std(acc: np.ndarray) -> dict:
    n = max(acc[2][0], 1.0)
    mean = acc[0] / n
    std = np.sqrt(np.maximum(acc[1] / n - mean * mean, 1e-10))
    return {"mean": mean.tolist(), "std": std.tolist(), "frames": int(acc[2][0])}


def extract_set(
    utts: list[Utterance],
    out_prefix: Path,
    cfg: FeatureConfig,
    nj: int = 1,
    speeds: Sequence[float] = (1.0,),
    stats: _Stats | None = None,
    desc: str = "",
    copies: int = 0,
    nonspeech: tuple[int, int] = (0, 0),
) -> dict:
    """Featurize ``utts`` into ``out_prefix.f32`` (and ``.shard<k>.f32`` past ``cfg.shard_hours``) and
    ``out_prefix.index.jsonl``.

    Speed-perturbed copies (``speeds`` other than 1) get ids ``sp{speed}-{id}``; ``copies``
    augmented copies (``cfg.augment``) ids ``aug{k}-{id}``; ``nonspeech=(first, n)`` adds generated non-speech
    examples ``first`` to ``first + n - 1`` (empty transcripts, left out of the CMVN statistics).
    Memory stays flat: each finished chunk is appended to the file and dropped.

    Returns:
        ``{"utterances", "frames", "shards", "bad": [(id, reason)], "items"}``.
    """
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(utts, speeds, copies, nonspeech)
    n_items = sum(len(t) for t in tasks)
    bad, offset, shard, written, frames = [], 0, 0, 0, 0
    index_path = Path(f"{out_prefix}{FEATURES_INDEX}")
    index_part = index_path.with_name(index_path.name + ".part")  # renamed into place once complete
    shard_frames = max(1, int(cfg.shard_hours * 3600 * 1000 / cfg.hop_ms))
    if copies and cfg.augment.reverb_prob > 0:  # simulate the rooms once, here: forked workers inherit them
        augment.room_bank(cfg.sample_rate, cfg.augment.rooms, tuple(cfg.augment.rt60), cfg.augment.seed)
    if nj <= 1:
        _init_worker(cfg)
        results: Iterator = map(_task, tasks)
        pool = None
    else:
        pool = fork_pool(nj, _init_worker, (cfg,))
        results = pool.imap(_task, tasks)  # ordered: the file is the same for any nj
    data = index = None
    try:
        data, index = open(shard_path(out_prefix, 0), "wb"), open(index_part, "w", encoding="utf-8")
        with tqdm(total=n_items, desc=desc or out_prefix.name, unit="utt", disable=None, leave=False) as bar:
            for done, failed in results:
                for u, speed, copy, f in done:
                    if offset and offset + len(f) > shard_frames:  # this shard is full: start the next file
                        data.close()
                        shard, offset = shard + 1, 0
                        data = open(shard_path(out_prefix, shard), "wb")
                    data.write(np.ascontiguousarray(f, dtype=np.float32).tobytes())
                    rec = u.to_dict()
                    if speed != 1.0 or copy:
                        rec.update(id=copy_id(u.id, speed, copy), duration=u.duration / speed)
                    rec.update(shard=shard, start=offset, frames=len(f))
                    index.write(json.dumps(rec, ensure_ascii=False) + "\n")  # streamed: memory stays flat
                    offset, written, frames = offset + len(f), written + 1, frames + len(f)
                    if stats is not None and u.audio != augment.NONSPEECH_AUDIO:
                        stats.add(u.speaker, f)
                bad += failed
                bar.update(len(done) + len(failed))
                stop_point("features.chunk")
    finally:
        for fh in (data, index):
            if fh is not None:
                fh.close()
        if pool is not None:
            pool.terminate()
    os.replace(index_part, index_path)
    return {"utterances": written, "frames": frames, "shards": shard + 1, "bad": bad, "items": n_items}


# --- the stage ----------------------------------------------------------------------------------------


def stage(ctx: StageContext) -> dict:
    """Featurize every configured manifest of the ``prepare`` output; write CMVN statistics.

    CMVN statistics that normalise training come from training audio only: the global
    statistics and each training speaker's are sums over the train sets (speed-perturbed
    copies included); a speaker who appears only in dev/test sets gets statistics of all
    their audio in those sets. The result does not depend on the order of the sets.
    """
    cfg: FeatureConfig = ctx.config
    prep = ctx.inputs["prepare"]
    out = FeaturesDir(ctx.out)
    sets = expand_sets(cfg.sets or ["*"], manifest_names(prep))
    train_sets = set(expand_sets(cfg.train_sets, sets))
    train_stats, other_stats = _Stats(cfg.dim), _Stats(cfg.dim)
    counts, shards, bad_all, nonspeech = {}, {}, [], 0
    for name in sets:
        utts = read_manifest(prep / f"{name}.jsonl")
        is_train = name in train_sets
        speeds = (1.0, *[s for s in cfg.speed_perturb if s != 1.0]) if is_train else (1.0,)
        n_nonspeech = round(cfg.nonspeech * len(utts)) if is_train else 0
        r = extract_set(
            utts,
            out.prefix(name),
            cfg,
            ctx.nj,
            speeds,
            train_stats if is_train else other_stats,
            desc=f"features {name}",
            copies=cfg.augment.copies if is_train else 0,
            nonspeech=(nonspeech, n_nonspeech),
        )
        nonspeech += n_nonspeech
        counts[name] = r["utterances"]
        shards[name] = r["shards"]
        bad_all += [(name, uid, why) for uid, why in r["bad"]]
        if r["bad"] and len(r["bad"]) > cfg.max_bad_fraction * r["items"]:
            shown = "\n".join(f"  {uid}: {why}" for uid, why in r["bad"][:20])
            raise AsrError(
                f"features {name}: {len(r['bad'])} of {r['items']} utterances unreadable "
                f"(more than max_bad_fraction={cfg.max_bad_fraction}):\n{shown}"
            )
        for uid, why in r["bad"]:
            ctx.log(f"features {name}: skipped {uid}: {why}")
    speakers = {**other_stats.speakers, **train_stats.speakers}  # a training speaker: training audio only
    pooled = list(train_stats.speakers.values()) or list(other_stats.speakers.values())
    glob = _mean_std(sum(pooled) if pooled else np.zeros((3, cfg.dim)))
    cmvn = Cmvn(
        cfg.cmvn,
        glob["mean"],
        glob["std"],
        {s: _mean_std(a) for s, a in sorted(speakers.items())},
        cfg.cmvn_prior_frames,
    )
    atomic_write_text(out.cmvn, json.dumps(cmvn.to_dict()) + "\n")
    atomic_write_text(out.bad, "".join(f"{s} {u} {w}\n" for s, u, w in bad_all))
    atomic_write_text(out.meta, json.dumps({"config": to_dict(cfg), "sets": sets}, indent=1) + "\n")
    return {"counts": counts, "shards": shards, "bad": len(bad_all), "dim": cfg.dim}
