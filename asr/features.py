"""MFCC features: batched extraction with torchaudio, CMVN statistics, a memory-mapped store.

The MFCC follows librosa's definition (power spectrogram, Slaney mel filters,
``10 log10`` with an 80 dB floor below each utterance's peak, orthonormal DCT-II),
so it can be checked against ``librosa.feature.mfcc``; the tests state the
tolerance. Each feature set is one float32 file read with ``np.memmap`` plus an
index (JSON Lines: the utterance record, its first frame and frame count), so
training reads frames without copying and a million utterances cost one file.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchaudio
import torchaudio.functional as AF
from tqdm import tqdm

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, load_audio, resample
from asr.batching import pad
from asr.config import from_dict, to_dict
from asr.errors import AsrError, AudioError, ConfigError
from asr.fsutil import atomic_write_text
from asr.layout import FEATURES_DATA, FEATURES_INDEX, FeaturesDir
from asr.manifest import Utterance, expand_sets, manifest_names, read_manifest
from asr.procs import fork_pool, stop_point

VERSION = 1  # of the features stage's output: bump when the features or the files it writes change
AMIN = 1e-10  # power floor before the log, as librosa.power_to_db
TOP_DB = 80.0  # dynamic range kept below each utterance's peak, as librosa.feature.mfcc
TASK_SIZE = 64  # utterances per worker task: large enough to batch, small enough for a smooth progress bar


@dataclass(frozen=True)
class FeatureConfig:
    """The ``features`` stage's config section."""

    sample_rate: int = 16_000  # audio is resampled to this rate first
    win_ms: float = 25.0  # analysis window
    hop_ms: float = 10.0  # frame shift
    n_mels: int = 40  # mel filters
    n_mfcc: int = 13  # cepstral coefficients kept
    f_min: float = 20.0
    f_max: float | None = None  # None: Nyquist
    preemphasis: float = 0.97  # 0 disables; y[t] = x[t] - a x[t-1]
    dither: float = 0.0  # std of Gaussian noise added to the waveform (seeded by utterance id)
    deltas: int = 2  # 0: static only, 1: + deltas, 2: + delta-deltas
    cmvn: Literal["none", "utterance", "speaker", "global"] = "utterance"
    sets: tuple[str, ...] = ()  # manifests of the prepare output to featurize, e.g. "isolated/train"
    train_sets: tuple[str, ...] = ()  # sets whose statistics make the global CMVN
    speed_perturb: tuple[float, ...] = ()  # extra copies of train sets at these speeds (Kaldi: 0.9, 1.1)
    max_bad_fraction: float = 0.01  # fail the stage if more of a set is unreadable
    device: str = "auto"  # "auto", "cpu" or "cuda"

    def __post_init__(self):
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate {self.sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        if self.hop_ms <= 0 or self.win_ms < self.hop_ms:
            raise ValueError(f"need 0 < hop_ms <= win_ms, got hop {self.hop_ms}, win {self.win_ms}")
        if any(f <= 0 for f in self.speed_perturb):
            raise ValueError(f"speed factors must be positive, got {self.speed_perturb}")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()  # next power of two

    @property
    def dim(self) -> int:
        return self.n_mfcc * (1 + self.deltas)

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length  # centred frames


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is visible; use device=auto or cpu")
    return torch.device(name)


class Mfcc(torch.nn.Module):
    """Batched MFCC (+ deltas) with per-utterance lengths.

    ``forward(waves (B, T), lengths (B,)) -> (feats (B, frames, dim), frame_lengths (B,))``.
    Padding never changes the valid frames: the STFT pads with zeros (as librosa's
    ``pad_mode="constant"``) and the 80 dB floor is taken per utterance over its
    valid frames only.
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
            power=2.0, center=True, pad_mode="constant")
        self.mel = torchaudio.transforms.MelScale(
            n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, f_min=cfg.f_min, f_max=cfg.f_max,
            n_stft=cfg.n_fft // 2 + 1, norm="slaney", mel_scale="slaney")
        self.register_buffer("dct", AF.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho"))

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        if cfg.preemphasis:
            waves = torch.cat([waves[:, :1], waves[:, 1:] - cfg.preemphasis * waves[:, :-1]], dim=1)
            waves = waves * (torch.arange(waves.shape[1], device=waves.device) < lengths[:, None])
        frames = 1 + lengths // cfg.hop_length
        db = 10.0 * torch.log10(self.mel(self.spectrogram(waves)).clamp_min(AMIN))  # (B, n_mels, F)
        valid = torch.arange(db.shape[-1], device=db.device)[None, :] < frames[:, None]  # (B, F)
        peak = db.masked_fill(~valid[:, None, :], -math.inf).amax(dim=(1, 2))
        db = torch.maximum(db, (peak - TOP_DB)[:, None, None])
        mfcc = torch.matmul(db.transpose(1, 2), self.dct).transpose(1, 2)  # (B, n_mfcc, F)
        # Repeat each utterance's last frame over its padding, so deltas near the end
        # see what compute_deltas' replicate padding gives a single utterance.
        last = torch.minimum(torch.arange(mfcc.shape[-1], device=mfcc.device)[None, :], frames[:, None] - 1)
        last = last[:, None, :].expand_as(mfcc)
        parts = [mfcc.gather(2, last)]
        for _ in range(cfg.deltas):
            parts.append(AF.compute_deltas(parts[-1]).gather(2, last))
        return torch.cat(parts, dim=1).transpose(1, 2), frames


def _dither(wave: np.ndarray, amount: float, uid: str) -> np.ndarray:
    if not amount:
        return wave
    rng = np.random.default_rng(zlib.crc32(uid.encode()))
    return wave + amount * rng.standard_normal(wave.shape).astype(np.float32)


def load_utterance(u: Utterance, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """The utterance's samples at ``sample_rate``, optionally speed-perturbed (pitch and tempo, as sox speed)."""
    wave = load_audio(u.audio, sample_rate, offset=u.offset or 0.0,
                      duration=u.duration if u.offset is not None else None)
    if speed != 1.0:
        wave = resample(wave, int(round(sample_rate * speed)), sample_rate)
    return wave


def compute_batch(mfcc: Mfcc, waves: Sequence[np.ndarray], device: torch.device) -> list[np.ndarray]:
    """MFCC of several signals in one padded batch; returns one ``(frames, dim)`` array each."""
    batch, lengths = pad(waves)
    with torch.inference_mode():
        feats, frames = mfcc(batch.to(device), lengths.to(device))
    feats = feats.cpu().numpy()
    return [feats[i, : int(n)] for i, n in enumerate(frames.cpu())]


# --- extraction over a set, in worker processes -------------------------------------------------

_WORKER: dict = {}


def _init_worker(cfg: FeatureConfig, device: str) -> None:
    torch.set_num_threads(1)  # the parallelism is across processes
    _WORKER["cfg"] = cfg
    _WORKER["device"] = torch.device(device)
    _WORKER["mfcc"] = Mfcc(cfg).to(device)


def _task(items: list[tuple[Utterance, float]]) -> tuple[list, list]:
    """Featurize a chunk; returns ``([(utt, speed, feats)], [(id, reason)])``."""
    cfg = _WORKER["cfg"]
    waves, good, bad = [], [], []
    for u, speed in items:
        try:
            waves.append(_dither(load_utterance(u, cfg.sample_rate, speed), cfg.dither, u.id))
            good.append((u, speed))
        except AudioError as e:
            bad.append((u.id, e.reason))
    feats = compute_batch(_WORKER["mfcc"], waves, _WORKER["device"]) if waves else []
    return [(u, s, f) for (u, s), f in zip(good, feats)], bad


def _tasks(utts: list[Utterance], speeds: Sequence[float]) -> list[list[tuple[Utterance, float]]]:
    items = [(u, s) for s in speeds for u in utts]
    return [items[i: i + TASK_SIZE] for i in range(0, len(items), TASK_SIZE)]


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


def extract_set(utts: list[Utterance], out_prefix: Path, cfg: FeatureConfig, nj: int = 1,
                speeds: Sequence[float] = (1.0,), stats: _Stats | None = None, desc: str = "") -> dict:
    """Featurize ``utts`` into ``out_prefix.f32`` + ``out_prefix.index.jsonl``.

    Speed-perturbed copies (``speeds`` other than 1) get ids ``sp{speed}-{id}``.
    Memory stays flat: each finished chunk is appended to the file and dropped.

    Returns:
        ``{"utterances", "frames", "bad": [(id, reason)]}``.
    """
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    tasks = _tasks(utts, speeds)
    n_items = sum(len(t) for t in tasks)
    index, bad, offset = [], [], 0
    if device.type == "cuda" or nj <= 1:  # one process: the GPU batches, or nothing to share out
        _init_local(cfg, device)
        results: Iterator = map(_task, tasks)
        pool = None
    else:
        pool = fork_pool(nj, _init_worker, (cfg, "cpu"))
        results = pool.imap(_task, tasks)  # ordered: the file is the same for any nj
    try:
        with open(f"{out_prefix}{FEATURES_DATA}", "wb") as data, tqdm(total=n_items, desc=desc or out_prefix.name,
                                                           unit="utt", disable=None, leave=False) as bar:
            for done, failed in results:
                for u, speed, f in done:
                    data.write(np.ascontiguousarray(f, dtype=np.float32).tobytes())
                    rec = u.to_dict()
                    if speed != 1.0:
                        rec.update(id=f"sp{speed:g}-{u.id}", duration=u.duration / speed)
                    index.append({**rec, "start": offset, "frames": len(f)})
                    offset += len(f)
                    if stats is not None:
                        stats.add(u.speaker, f)
                bad += failed
                bar.update(len(done) + len(failed))
                stop_point("features.chunk")
    finally:
        if pool is not None:
            pool.terminate()
    atomic_write_text(f"{out_prefix}{FEATURES_INDEX}", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in index))
    return {"utterances": len(index), "frames": offset, "bad": bad, "items": n_items}


def _init_local(cfg: FeatureConfig, device: torch.device) -> None:
    """In-process extraction keeps the caller's thread count."""
    _WORKER.update(cfg=cfg, device=device, mfcc=Mfcc(cfg).to(device))


# --- reading features back --------------------------------------------------------------------------


class Cmvn:
    """Mean/variance normalisation with saved statistics.

    ``kind`` is ``none``, ``utterance`` (each utterance by its own statistics),
    ``speaker`` (by its speaker's, falling back to the global ones for a speaker
    never seen, as at inference) or ``global``.
    """

    def __init__(self, kind: str, mean: np.ndarray, std: np.ndarray, speakers: dict | None = None):
        self.kind, self.mean, self.std = kind, np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.speakers = {s: (np.asarray(v["mean"], np.float32), np.asarray(v["std"], np.float32))
                         for s, v in (speakers or {}).items()}

    def __call__(self, feats: np.ndarray, speaker: str | None = None) -> np.ndarray:
        if self.kind == "none":
            return np.array(feats, np.float32)  # a copy: the input may be a read-only memmap view
        if self.kind == "utterance":
            mean = feats.mean(0)
            std = np.sqrt(np.maximum(feats.var(0), 1e-10))
        elif self.kind == "speaker" and speaker in self.speakers:
            mean, std = self.speakers[speaker]
        else:
            mean, std = self.mean, self.std
        return ((feats - mean) / std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "speakers": {s: {"mean": m.tolist(), "std": d.tolist()} for s, (m, d) in self.speakers.items()}}

    @classmethod
    def from_dict(cls, d: dict, dim: int | None = None, source: str = "CMVN statistics") -> Cmvn:
        """Rebuild saved statistics.

        Raises:
            AsrError: missing entries, an unknown kind, or vectors that are not ``dim`` long (names ``source``).
        """
        if not isinstance(d, dict) or any(k not in d for k in ("kind", "mean", "std")):
            raise AsrError(f"{source}: CMVN statistics lack kind/mean/std; the file is damaged")
        if d["kind"] not in ("none", "utterance", "speaker", "global"):
            raise AsrError(f"{source}: unknown CMVN kind {d['kind']!r}")
        try:
            cmvn = cls(d["kind"], d["mean"], d["std"], d.get("speakers"))
        except (TypeError, ValueError, KeyError) as e:
            raise AsrError(f"{source}: CMVN statistics are not numbers ({e})") from None
        if dim is not None and not (cmvn.mean.shape == cmvn.std.shape == (dim,)):
            raise AsrError(f"{source}: CMVN statistics have {cmvn.mean.shape} values, the features {dim}; "
                           "the file is damaged")
        return cmvn


class FeatureSet:
    """One stored set: ``len(fs)`` utterances, ``fs[i] -> (frames, dim)`` memmap view, ``fs.utts[i]`` records."""

    def __init__(self, prefix: str | Path, dim: int):
        self.prefix = Path(prefix)
        data_path, index_path = Path(f"{self.prefix}{FEATURES_DATA}"), Path(f"{self.prefix}{FEATURES_INDEX}")
        with open(index_path, encoding="utf-8") as f:
            self.utts: list[dict] = [json.loads(line) for line in f]
        total = sum(u["frames"] for u in self.utts)
        size = os.path.getsize(data_path)
        if size != total * dim * 4:
            raise AsrError(f"{data_path} holds {size} bytes, the index expects {total * dim * 4}; "
                           "re-run the features stage with --force")
        self.data = np.memmap(data_path, dtype=np.float32, mode="r", shape=(total, dim)) if total else \
            np.zeros((0, dim), np.float32)
        self.ids = {u["id"]: i for i, u in enumerate(self.utts)}

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> np.ndarray:
        u = self.utts[i]
        return self.data[u["start"]: u["start"] + u["frames"]]


class FeatureStore:
    """The features stage's output: its config, CMVN and every set."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = FeaturesDir(self.root)
        meta = json.loads(self.dir.meta.read_text())
        self.config = from_dict(FeatureConfig, meta["config"])
        self.cmvn = Cmvn.from_dict(json.loads(self.dir.cmvn.read_text()), self.config.dim, str(self.dir.cmvn))
        self.sets = meta["sets"]

    def expand(self, patterns) -> list[str]:
        return expand_sets(patterns, self.sets)

    def open(self, name: str) -> FeatureSet:
        if name not in self.sets:
            raise AsrError(f"feature set {name!r} not in {self.root}; sets: {self.sets}")
        return FeatureSet(self.dir.prefix(name), self.config.dim)


# --- the stage ----------------------------------------------------------------------------------------


def stage(ctx) -> dict:
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
    counts, bad_all = {}, []
    for name in sets:
        utts = read_manifest(prep / f"{name}.jsonl")
        is_train = name in train_sets
        speeds = (1.0, *[s for s in cfg.speed_perturb if s != 1.0]) if is_train else (1.0,)
        r = extract_set(utts, out.prefix(name), cfg, ctx.nj, speeds,
                        train_stats if is_train else other_stats, desc=f"features {name}")
        counts[name] = r["utterances"]
        bad_all += [(name, uid, why) for uid, why in r["bad"]]
        if r["bad"] and len(r["bad"]) > cfg.max_bad_fraction * r["items"]:
            shown = "\n".join(f"  {uid}: {why}" for uid, why in r["bad"][:20])
            raise AsrError(f"features {name}: {len(r['bad'])} of {r['items']} utterances unreadable "
                           f"(more than max_bad_fraction={cfg.max_bad_fraction}):\n{shown}")
        for uid, why in r["bad"]:
            ctx.log(f"features {name}: skipped {uid}: {why}")
    speakers = {**other_stats.speakers, **train_stats.speakers}  # a training speaker: training audio only
    pooled = list(train_stats.speakers.values()) or list(other_stats.speakers.values())
    glob = _mean_std(sum(pooled) if pooled else np.zeros((3, cfg.dim)))
    cmvn = Cmvn(cfg.cmvn, glob["mean"], glob["std"], {s: _mean_std(a) for s, a in sorted(speakers.items())})
    atomic_write_text(out.cmvn, json.dumps(cmvn.to_dict()) + "\n")
    atomic_write_text(out.bad, "".join(f"{s} {u} {w}\n" for s, u, w in bad_all))
    atomic_write_text(out.meta, json.dumps({"config": to_dict(cfg), "sets": sets}, indent=1) + "\n")
    return {"counts": counts, "bad": len(bad_all), "dim": cfg.dim}


# --- training-time augmentation -----------------------------------------------------------------


def spec_augment(feats: torch.Tensor, freq_mask: int = 5, n_freq_masks: int = 2, time_mask: int = 20,
                 n_time_masks: int = 2, max_time_fraction: float = 0.2) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on a normalised batch, independent masks per utterance.

    Args:
        feats: ``(B, T, D)``; masked values are set to 0 (the mean after CMVN).
        freq_mask / time_mask: largest width of one mask, in coefficients / frames.
        max_time_fraction: a time mask never covers more than this share of the padded length.
    Returns:
        ``(B, T, D)``, a new tensor. Uses torch's global RNG (seeded and checkpointed by training).
    """
    for _ in range(n_freq_masks):
        feats = AF.mask_along_axis_iid(feats, freq_mask, 0.0, axis=2)
    for _ in range(n_time_masks):
        feats = AF.mask_along_axis_iid(feats, time_mask, 0.0, axis=1, p=max_time_fraction)
    return feats
