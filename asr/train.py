"""The training stage: CTC training of the acoustic model, resumable, reproducible, DDP-ready.

Read top to bottom: the config and :func:`plan` (how many updates, how large the
batches, the LR schedule: set by the amount of training audio), :func:`load_data`
(labels, too-short check), :func:`collate`, :func:`evaluate`, the :class:`Trainer`
(updates, checkpoints), then :func:`train`, which ties them together with dev evaluation
at a fixed update interval, keep-best, early stopping and averaging of the last
evaluated models. Batches come from :func:`asr.batching.make_batches`
(frame-bounded, length-grouped). Everything a resumed run needs is in
:class:`TrainState` and the checkpoint, which holds tensors and plain data only and is
loaded with ``weights_only=True``.

Several processes (``torchrun --nproc_per_node N -m asr.train ...``) train with
DistributedDataParallel: NCCL on GPUs, Gloo on CPUs. The stage launches torchrun
itself when ``train.nproc > 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import jiwer
import matplotlib
import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from asr.batching import make_batches, pad
from asr.config import from_dict, to_dict
from asr.ctc import ctc_min_frames, greedy
from asr.errors import AsrError, ConfigError, TokenizerError
from asr.features import FeatureStore, spec_augment
from asr.layout import CheckpointDir, TrainDir
from asr.model import AcousticModel, ModelConfig, checkpoint_dict, load_weights
from asr.procs import stop_point
from asr.tokenizer import CharTokenizer, PhoneTokenizer, SubwordTokenizer, Tokenizer

matplotlib.use("Agg")  # curves are written to a file; no display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

VERSION = 4  # of the train stage's output: bump when the training or the files it writes change


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage's config section."""

    train_sets: tuple[str, ...] = ("train",)  # feature sets to train on
    dev_sets: tuple[str, ...] = ("dev",)  # feature sets for LR decay, early stopping, model choice
    max_utterances: int = 0  # 0: all; else a seeded random subset of the training sets (quick runs)
    model: ModelConfig = ModelConfig()  # the network (train.model.hidden=128, ...)
    # characters; sentencepiece subwords (bpe, unigram) of vocab_size units; or phone: each space-separated token
    # of the transcripts is a unit (TIMIT's phone transcripts)
    units: Literal["char", "bpe", "unigram", "phone"] = "char"
    vocab_size: int = 256  # subword units: this many (blank included)
    # optimisation
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 5.0  # gradient-norm clipping, the classic remedy for exploding RNN gradients
    # how long: a number of optimizer updates, by default set by the amount of training audio (see plan())
    updates: int = 0  # 0: updates_per_sqrt_hour x sqrt(hours of training audio), at least min_updates
    updates_per_sqrt_hour: float = 1000.0  # fsdd's 4.7 h (speed-perturbed copies included): 2,180 updates
    min_updates: int = 400  # a 2-minute corpus gets this many (with 10 epochs of a few batches it learned nothing)
    epochs: int = 0  # instead: this many passes over the training data
    batch_frames: int = 20_000  # padded frames per batch (batch size x longest utterance) ...
    min_batches: int = 10  # ... smaller for a small corpus, so that an epoch has at least this many batches
    # the learning rate: linear warm-up, then held and multiplied by lr_decay when the dev loss has not improved
    # for more than lr_patience evaluations ("plateau", as torch's ReduceLROnPlateau), or cosine decay to
    # lr x final_lr ("cosine"). On the shortened fsdd recipe (272 updates) plateau with warm-up gave greedy dev
    # WER 16.8% and isolated / connected test WER 3.0% / 1.2%, without warm-up 18.1% and 4.5% / 2.0%, cosine
    # 28.1% and 5.0% / 2.5%; on the full fsdd recipe (2,177 updates) this default 0.00% / 0.57%, cosine 1.50% / 0.47%
    schedule: Literal["cosine", "plateau"] = "plateau"
    warmup: float = 0.05  # share of the updates with the LR rising linearly from 0
    final_lr: float = 0.02
    lr_decay: float = 0.5
    lr_patience: int = 1
    # dev evaluations over the run, at a fixed update interval; 0: once an epoch (on the full fsdd recipe 20
    # evaluations with lr_patience 2 gave 1.00% / 0.72% isolated / connected test WER, once an epoch 0.00% / 0.57%)
    evaluations: int = 0
    early_stop: int = 0  # stop after this many evaluations without dev improvement (0: never); not before min_updates
    average_last: int = 3  # also try the average of the last N evaluated models; keep it if dev is no worse
    # what keep-best, averaging and early stopping compare (then dev loss): greedy dev CER by default, since
    # the WER stays at or above 100% until CTC leaves its all-blank plateau; on speechocean762 choosing by
    # WER stopped a run at epoch 9 whose dev CER was still falling (94% -> 75%) and kept epoch 5
    select_on: Literal["cer", "wer", "loss"] = "cer"
    # augmentation
    spec_augment: bool = False
    spec_augment_from: float = 0.0  # share of the updates trained clean before SpecAugment starts: from the start,
    # it kept 4x320 and 5x384 BiLSTMs on speechocean762 in CTC's blank plateau for 20-40 epochs (dev CER 74-78%)
    freq_mask: int = 5
    n_freq_masks: int = 2
    time_mask: int = 20
    n_time_masks: int = 2
    # runtime
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    # on CUDA: fp32, or bf16/fp16 autocast; fp32 is the fastest for these RNNs (cuDNN, H200: 1278 audio s/s against
    # 958 with bf16, python -m asr.benchmarks.gpu). The CPU always trains in fp32
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    threads: int = 0  # CPU threads per process (0: torch's default)
    # processes that read, normalise and pad batches ahead of the model (a DataLoader; pinned memory on CUDA);
    # -1: 2 with a GPU, none on a CPU, whose cores are busy training
    loader_workers: int = -1
    nproc: int = 1  # processes for DistributedDataParallel (launched with torchrun)
    checkpoint_every: int = 50  # updates between checkpoints (besides one at every dev evaluation)

    def __post_init__(self):
        if self.loader_workers < -1:
            raise ValueError(f"loader_workers must be >= 0, or -1 for automatic, got {self.loader_workers}")
        if self.batch_frames < 1 or self.lr <= 0 or self.evaluations < 0 or self.min_batches < 1:
            raise ValueError("batch_frames, lr and min_batches must be positive, evaluations >= 0")
        if min(self.updates, self.epochs, self.min_updates) < 0 or not 0 <= self.warmup < 1:
            raise ValueError("updates, epochs and min_updates must be >= 0, warmup in [0, 1)")


# The schedule recipes were tuned with before the updates-based default: a set number of epochs
# (``epochs=N`` beside it), dev once an epoch, no warm-up, the LR halved when the dev loss stalls for
# two epochs, early stop after 4 epochs without dev improvement.
EPOCH_PLATEAU = {"schedule": "plateau", "warmup": 0.0, "evaluations": 0, "lr_patience": 1, "early_stop": 4}


@dataclass(frozen=True)
class Schedule:
    """What :func:`plan` chose for a run: logged and stored in ``summary.json``."""

    hours: float  # training audio
    batch_frames: int
    batches_per_epoch: int  # per process, in the first epoch (later epochs' jittered batches are a few more)
    updates: int
    epochs: float  # passes over the data: ``epochs`` when set, else updates / the first pass's batches
    warmup: int  # updates
    eval_every: int  # updates between dev evaluations
    spec_augment_from: int  # update

    def lr_factor(self, step: int, cfg: TrainConfig) -> float:
        """The LR multiplier for update ``step`` (0-based), before any plateau decay."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if cfg.schedule == "plateau":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.updates - self.warmup))
        return cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def plan(cfg: TrainConfig, frames: np.ndarray, hop_seconds: float, world: int = 1) -> Schedule:
    """The run's length, batch size, warm-up and evaluation interval, from the training data.

    The number of updates grows with the square root of the training audio
    (``updates_per_sqrt_hour``): 400 (``min_updates``) for a few minutes, about 1,500 for
    2.4 hours, 10,000 for 100 hours (about 11 epochs at 20,000-frame batches), so a small corpus
    gets many passes and a large one few. Batches shrink on a small corpus so that an epoch has
    ``min_batches``. ``updates`` or ``epochs`` set the length directly.
    """
    total = int(frames.sum())
    batch_frames = max(int(frames.max(initial=1)), min(cfg.batch_frames, total // cfg.min_batches))
    per_epoch = max(1, len(make_batches(frames, batch_frames, 0, cfg.seed)) // world)
    hours = total * hop_seconds / 3600
    if cfg.updates:
        updates = cfg.updates
    elif cfg.epochs:
        # each epoch's own batches: after the first (sorted by length), lengths are jittered, which packs
        # them less tightly (on speechocean762 550 batches, then about 590: epochs x 550 stopped at 7.5 of 8)
        updates = sum(len(make_batches(frames, batch_frames, e, cfg.seed)) // world for e in range(cfg.epochs))
    else:
        updates = max(cfg.min_updates, round(cfg.updates_per_sqrt_hour * math.sqrt(hours)))
    return Schedule(
        hours=round(hours, 4),
        batch_frames=batch_frames,
        batches_per_epoch=per_epoch,
        updates=updates,
        epochs=cfg.epochs if cfg.epochs and not cfg.updates else round(updates / per_epoch, 2),
        warmup=round(cfg.warmup * updates),
        eval_every=per_epoch if cfg.evaluations == 0 else max(1, math.ceil(updates / cfg.evaluations)),
        spec_augment_from=round(cfg.spec_augment_from * updates),
    )


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Data:
    """Utterances of some feature sets, ready to batch."""

    sets: list  # FeatureSet per source
    items: list[tuple[int, int]]  # (set number, index in set)
    labels: list[list[int]]
    frames: np.ndarray
    ids: list[str]
    speakers: list[str]
    texts: list[str]


def load_data(
    store: FeatureStore, names, tokenizer: Tokenizer, stack: int, max_utts: int = 0, seed: int = 0, log=print
) -> tuple[Data, list[tuple[str, int, int]]]:
    """Load set indexes and labels; drop (and return) utterances too short for their labels.

    Returns:
        the data, and ``(id, frames after stacking, frames needed)`` for each dropped utterance.
    """
    sets, items, labels, frames, ids, spk, texts, short = [], [], [], [], [], [], [], []
    for s_no, name in enumerate(store.expand(names)):
        fs = store.open(name)
        sets.append(fs)
        for i, u in enumerate(fs.utts):
            lab = tokenizer.encode(u["text"])
            have = math.ceil(u["frames"] / stack)
            need = ctc_min_frames(lab)
            if have < need:
                short.append((u["id"], have, need))
                continue
            items.append((s_no, i))
            labels.append(lab)
            frames.append(u["frames"])
            ids.append(u["id"])
            spk.append(u["speaker"])
            texts.append(u["text"])
    data = Data(sets, items, labels, np.array(frames, dtype=np.int64), ids, spk, texts)
    if max_utts and max_utts < len(items):
        keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:max_utts])
        data = Data(
            sets,
            [items[k] for k in keep],
            [labels[k] for k in keep],
            data.frames[keep],
            [ids[k] for k in keep],
            [spk[k] for k in keep],
            [texts[k] for k in keep],
        )
    for uid, have, need in short:
        log(f"train data: {uid} has {have} frames after x{stack} stacking but its text needs {need}; left out")
    return data, short


def collate(data: Data, batch: list[int], cmvn, device: torch.device | None = None):
    """Padded ``(B, T, D)`` features (CMVN applied), lengths, concatenated targets, target lengths (on ``device``)."""
    x, lengths = pad([cmvn(data.sets[data.items[i][0]][data.items[i][1]], data.speakers[i]) for i in batch])
    targets = torch.tensor([u for i in batch for u in data.labels[i]], dtype=torch.long)
    target_lengths = torch.tensor([len(data.labels[i]) for i in batch])
    out = (x, lengths, targets, target_lengths)
    return out if device is None else tuple(t.to(device) for t in out)


class _Batches(torch.utils.data.Dataset):
    """Each item one whole batch, collated on the CPU: the DataLoader's workers read, normalise and pad it."""

    def __init__(self, data: Data, batches: list[list[int]], cmvn):
        self.data, self.batches, self.cmvn = data, batches, cmvn

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        return collate(self.data, self.batches[k], self.cmvn)


def batch_loader(data: Data, batches: list[list[int]], cmvn, workers: int, pin: bool):
    """The batches in order, built ``workers`` processes ahead (none: here, one at a time). No randomness
    happens in a worker (SpecAugment runs on the model's side), so any ``workers`` trains the same model."""
    if workers <= 0:
        return (collate(data, b, cmvn) for b in batches)
    # its own generator: the loader draws its workers' seed from it, not from the global one that
    # SpecAugment and dropout draw from
    return iter(
        torch.utils.data.DataLoader(
            _Batches(data, batches, cmvn),
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            pin_memory=pin,
            prefetch_factor=4,
            generator=torch.Generator(),
        )
    )


# --- loss and evaluation ------------------------------------------------------------------------------


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return torch.autocast(device.type, enabled=False)


def ctc_loss(model, x, xl, y, yl, device, precision):
    with _autocast(device, precision):
        log_probs, out_lengths = model(x, xl)
    loss = F.ctc_loss(log_probs.transpose(0, 1), y, out_lengths, yl, blank=0, reduction="mean", zero_infinity=True)
    return loss, log_probs, out_lengths


@torch.no_grad()
def evaluate(model, data: Data, cmvn, tokenizer, cfg: TrainConfig, device) -> dict:
    """Dev loss (mean per utterance of the per-token CTC loss) and greedy WER/CER (corpus level, jiwer)."""
    model.eval()
    total, hyps = 0.0, [""] * len(data.items)
    for batch in make_batches(data.frames, cfg.batch_frames, 0, cfg.seed):
        x, xl, y, yl = collate(data, batch, cmvn, device)
        loss, log_probs, out_lengths = ctc_loss(model, x, xl, y, yl, device, cfg.precision)
        total += float(loss) * len(batch)
        for i, units in zip(batch, greedy(log_probs, out_lengths)):
            hyps[i] = tokenizer.decode(units)
    model.train()
    wer = jiwer.wer(data.texts, hyps) if data.texts else 0.0
    cer = jiwer.cer(data.texts, hyps) if data.texts else 0.0
    return {"loss": total / max(len(data.items), 1), "wer": wer, "cer": cer}


# --- the trainer ----------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Where training stands: saved in every checkpoint (as a plain dict), restored on resume."""

    epoch: int = 0  # passes over the training data finished
    batch: int = 0  # batches of the current pass finished
    step: int = 0  # optimizer updates taken (or skipped) in all
    skipped: int = 0  # updates skipped for non-finite gradients
    loss_sum: float = 0.0  # summed training loss (x utterances) since the last dev evaluation ...
    loss_n: int = 0  # ... over this many utterances
    best: list[float] | None = None  # [dev measure (TrainConfig.select_on), dev loss] of the best evaluation
    best_update: int = -1
    bad_evals: int = 0  # dev evaluations since dev last improved
    lr_scale: float = 1.0  # plateau decay so far ...
    plateau_loss: float | None = None  # ... the best dev loss it compares with ...
    plateau_bad: int = 0  # ... and the evaluations since that one
    stopped: bool = False  # early stopping fired
    history: list[dict] = field(default_factory=list)  # one row per dev evaluation
    seconds: float = 0.0  # wall time of training and dev evaluation
    train_seconds: float = 0.0  # wall time of training alone

    def plateau(self, dev_loss: float, patience: int, decay: float) -> None:
        """Plateau decay after a dev evaluation, as torch's ReduceLROnPlateau: the LR scale is multiplied
        by ``decay`` once the dev loss has not improved (by 0.01%) for more than ``patience`` evaluations."""
        if self.plateau_loss is None or dev_loss < self.plateau_loss * (1 - 1e-4):
            self.plateau_loss, self.plateau_bad = dev_loss, 0
        else:
            self.plateau_bad += 1
        if self.plateau_bad > patience:
            self.lr_scale, self.plateau_bad = self.lr_scale * decay, 0


@dataclass
class Trainer:
    """The model, its optimizer and schedule, and the process's place in a DDP job."""

    cfg: TrainConfig
    core: AcousticModel  # the model itself
    model: torch.nn.Module  # the model as trained (DDP-wrapped when world > 1)
    opt: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    device: torch.device
    ckpt: CheckpointDir
    cmvn: object
    hop_seconds: float
    rank: int = 0
    world: int = 1
    writer: SummaryWriter | None = None
    state: TrainState = field(default_factory=TrainState)
    epoch_batches: int = 0  # batches of the epoch under way (0: none started in this process yet)

    @property
    def epochs_done(self) -> float:
        """Passes over the training data so far, the current one by its own batch count."""
        return round(self.state.epoch + self.state.batch / (self.epoch_batches or self.schedule.batches_per_epoch), 2)

    def save_checkpoint(self) -> None:
        """Everything a resumed run needs, as tensors and plain data (loads with ``weights_only=True``)."""
        if self.rank:
            return
        cuda = self.device.type == "cuda"
        _save_atomic(
            {
                "model": self.core.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(),
                "state": asdict(self.state),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            },
            self.ckpt.checkpoint,
        )

    def resume(self) -> bool:
        """Restore from the checkpoint, if there is one.

        Raises:
            AsrError: a checkpoint that is not plain data (refused without running it) or not ours.
        """
        path = self.ckpt.checkpoint
        if not path.is_file():
            return False
        ckpt = load_weights(path)
        try:
            self.core.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            self.state = TrainState(**ckpt["state"])
            torch.set_rng_state(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise AsrError(
                f"{path}: not a checkpoint of this training ({type(e).__name__}: {e}); delete "
                f"{path.parent} to start afresh"
            ) from None
        if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        return True

    def _update(self, batch: tuple, params: list) -> tuple[float, float, float]:
        """One optimizer update on a collated batch; returns (loss, gradient norm, audio seconds)."""
        cfg, st = self.cfg, self.state
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * self.schedule.lr_factor(st.step, cfg) * st.lr_scale
        x, xl, y, yl = (t.to(self.device, non_blocking=True) for t in batch)
        if cfg.spec_augment and st.step >= self.schedule.spec_augment_from:
            x = spec_augment(x, cfg.freq_mask, cfg.n_freq_masks, cfg.time_mask, cfg.n_time_masks)
        loss, _, _ = ctc_loss(self.model, x, xl, y, yl, self.device, cfg.precision)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        loss_value = float(loss.detach())
        if torch.isfinite(norm) and math.isfinite(loss_value):
            self.scaler.step(self.opt)
            st.loss_sum += loss_value * len(xl)
            st.loss_n += len(xl)
        else:
            st.skipped += 1  # non-finite gradients: skip the update, keep the weights
        self.scaler.update()
        st.step += 1
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss_value, st.step)
            self.writer.add_scalar("train/grad_norm", float(norm), st.step)
            self.writer.add_scalar("train/lr", self.opt.param_groups[0]["lr"], st.step)
        return loss_value, float(norm), float(xl.sum()) * self.hop_seconds

    def train_steps(self, data: Data, n: int) -> None:
        """Take ``n`` updates from where the state stands, across passes over the data, checkpointing every
        ``checkpoint_every`` updates (the caller checkpoints after the last)."""
        cfg, st = self.cfg, self.state
        params = [p for p in self.model.parameters() if p.requires_grad]
        bar = tqdm(
            total=n,
            desc=f"updates {st.step + 1}-{st.step + n} of {self.schedule.updates}",
            disable=None if self.rank == 0 else True,
            leave=False,
            unit="update",
        )
        t0, audio_s, done = time.perf_counter(), 0.0, 0
        while done < n:
            batches = make_batches(data.frames, self.schedule.batch_frames, st.epoch, cfg.seed)
            batches = batches[: len(batches) - len(batches) % self.world] if self.world > 1 else batches
            mine = batches[self.rank :: self.world]
            self.epoch_batches = len(mine)
            workers = cfg.loader_workers if cfg.loader_workers >= 0 else 2 * (self.device.type == "cuda")
            ahead = batch_loader(data, mine[st.batch :], self.cmvn, workers, self.device.type == "cuda")
            while st.batch < len(mine) and done < n:
                loss, norm, audio = self._update(next(ahead), params)
                st.batch += 1
                done += 1
                audio_s += audio
                bar.set_postfix(
                    loss=f"{loss:.3f}",
                    norm=f"{norm:.2f}",
                    epoch=st.epoch + 1,
                    audio_x=f"{audio_s * self.world / (time.perf_counter() - t0):.0f}",
                )
                bar.update(1)
                if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and done < n:
                    self.save_checkpoint()
                    stop_point("train.checkpoint")
            del ahead  # stops its workers, and drops the batches built past ``n``
            if st.batch >= len(mine):
                st.epoch, st.batch = st.epoch + 1, 0
        bar.close()


# --- the whole training ---------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is visible; use device=auto or cpu")
    return torch.device(name)


def _setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """Rank, world size and device; joins the process group under torchrun.

    Raises:
        AsrError: more processes on this node than visible GPUs.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(cfg.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise AsrError(
                f"process {local} of {world} has no GPU of its own: {torch.cuda.device_count()} visible; "
                "set train.nproc to at most the number of GPUs, or train.device=cpu"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cudnn.enabled = True  # cuDNN RNN kernels
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // world) if world > 1 else 0)
    if threads:
        torch.set_num_threads(threads)
    return (dist.get_rank() if world > 1 else 0), world, device


def _refused(cls, text: str) -> bool:
    try:
        cls.from_texts([text])
    except TokenizerError:
        return True
    return False


def _save_atomic(obj, path: Path) -> None:
    """``torch.save`` as :func:`asr.fsutil.atomic_write_bytes` writes: the old file or the new one, no ``.tmp``
    left behind; a failed write (a full disk: torch says only "unexpected pos") names the file and the space left.

    Raises:
        AsrError: the file could not be written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 1e6
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
        raise AsrError(
            f"{path}: could not be written ({reason}); {free:,.0f} MB are free on its disk: free some "
            "space and run again (training resumes from the last checkpoint)"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _broadcast(values: list[float], device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return t.tolist()


def _average(paths: list[Path]) -> dict:
    """The average of saved state dicts (loaded safely: a planted file is refused)."""
    states = [load_weights(p) for p in paths]
    return {k: sum(s[k].double() for s in states).div(len(states)).to(states[0][k].dtype) for k in states[0]}


def _plot(history: list[dict], path: Path) -> None:
    updates = [h["update"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(updates, [h["train_loss"] for h in history], "o-", label="train CTC loss")
    ax.plot(updates, [h["dev_loss"] for h in history], "s-", label="dev CTC loss")
    ax.set_xlabel("update")
    ax.set_ylabel("CTC loss per token")
    ax2 = ax.twinx()
    ax2.plot(updates, [100 * h["dev_cer"] for h in history], "^--", color="tab:red", label="dev CER (greedy)")
    ax2.set_ylabel("dev CER %")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _selection_score(cfg: TrainConfig, dev: dict) -> list[float]:
    """What evaluations are compared by: ``[the select_on measure, dev loss]``, lower is better."""
    return [dev[cfg.select_on], dev["loss"]]


def _evaluate_now(t: Trainer, dev_data: Data, tokenizer, log, t0: float) -> None:
    """Dev evaluation, history, keep-best, a snapshot for averaging, plateau decay and early stopping
    (the period began at ``t0``)."""
    cfg, st, device = t.cfg, t.state, t.device
    sums = torch.tensor([st.loss_sum, st.loss_n], dtype=torch.float64, device=device)
    if t.world > 1:
        dist.all_reduce(sums)
    dev = evaluate(t.core, dev_data, t.cmvn, tokenizer, cfg, device) if t.rank == 0 else {"loss": 0, "wer": 0, "cer": 0}
    dev_loss, dev_wer, dev_cer = _broadcast([dev["loss"], dev["wer"], dev["cer"]], device)
    st.seconds += time.perf_counter() - t0
    n = len(st.history) + 1
    row = {
        "update": st.step,
        "epoch": t.epochs_done,
        "train_loss": float(sums[0] / max(sums[1], 1)),
        "dev_loss": dev_loss,
        "dev_wer": dev_wer,
        "dev_cer": dev_cer,
        "lr": t.opt.param_groups[0]["lr"],
        "skipped_steps": st.skipped,
        "seconds": round(st.seconds, 1),
        "train_seconds": round(st.train_seconds, 1),
    }
    st.history.append(row)
    log(
        f"update {st.step}/{t.schedule.updates} (epoch {row['epoch']:.1f}): train loss {row['train_loss']:.4f}, "
        f"dev loss {dev_loss:.4f}, dev WER {100 * dev_wer:.2f}%, CER {100 * dev_cer:.2f}%, lr {row['lr']:.2e}"
    )
    if t.writer is not None:
        for k in ("train_loss", "dev_loss", "dev_wer", "dev_cer"):
            t.writer.add_scalar(f"dev/{k}", row[k], st.step)
    score = _selection_score(cfg, {"wer": dev_wer, "cer": dev_cer, "loss": dev_loss})
    if st.best is None or score < st.best:
        st.best, st.best_update, st.bad_evals = score, st.step, 0
        if t.rank == 0:
            _save_atomic(t.core.state_dict(), t.ckpt.best)
    else:
        st.bad_evals += 1
    if t.rank == 0:
        _save_atomic(t.core.state_dict(), t.ckpt.snapshot(n))
        t.ckpt.snapshot(n - cfg.average_last).unlink(missing_ok=True)
    if cfg.schedule == "plateau":
        st.plateau(dev_loss, cfg.lr_patience, cfg.lr_decay)
    st.loss_sum, st.loss_n = 0.0, 0
    if cfg.early_stop and st.bad_evals >= cfg.early_stop and st.step >= cfg.min_updates:
        st.stopped = True
        log(f"train: no dev improvement in {cfg.early_stop} evaluations, stopping at update {st.step}")


def train(cfg: TrainConfig, features_dir: Path, out: Path, partial: Path, log=print) -> dict:
    """Train, resuming from the checkpoint in ``partial`` when there is one; write ``out``'s model file.

    Returns:
        a summary: the schedule, updates, best dev WER/CER/loss, skipped updates, too-short utterances, seconds.
    """
    rank, world, device = _setup(cfg)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    partial.mkdir(parents=True, exist_ok=True)
    result, ckpt_dir = TrainDir(out), CheckpointDir(partial)
    store = FeatureStore(features_dir)
    utts = [u for name in store.expand(cfg.train_sets) for u in store.open(name).utts]
    if not utts:  # before: reported as dev characters outside the (empty) alphabet
        raise AsrError(
            f"the train sets {list(cfg.train_sets)} hold no utterances; check the prepare stage's output "
            "and train.train_sets"
        )
    texts = [u["text"] for u in utts]
    if cfg.units in ("char", "phone"):
        cls = CharTokenizer if cfg.units == "char" else PhoneTokenizer
        try:
            tokenizer = cls.from_texts(texts)
        except TokenizerError as e:  # name the utterances (only on failure: one tokenizer per transcript)
            bad = [u["id"] for u in utts if _refused(cls, u["text"])]
            raise AsrError(
                f"{e}; it is in the transcript(s) of {bad[:5]}{' ...' if len(bad) > 5 else ''} "
                f"({len(bad)} in all): fix them in the corpus and run again"
            ) from None
    else:
        tokenizer = SubwordTokenizer.train(texts, cfg.vocab_size, cfg.units)
    quiet = (lambda m: None) if rank else log
    stack = cfg.model.stack
    train_data, short = load_data(store, cfg.train_sets, tokenizer, stack, cfg.max_utterances, cfg.seed, quiet)
    try:
        dev_data, dev_short = load_data(store, cfg.dev_sets, tokenizer, stack, log=quiet)
    except AsrError as e:
        raise AsrError(f"dev sets {cfg.dev_sets}: {e} (characters never seen in training)") from None
    if not train_data.items:
        raise AsrError(f"no usable training utterances in {cfg.train_sets}")
    schedule = plan(cfg, train_data.frames, store.config.hop_ms / 1000, world)
    quiet(
        f"train: {schedule.hours:.2f} h of audio, {len(train_data.items)} utterances: {schedule.updates} updates "
        f"of {schedule.batch_frames}-frame batches ({schedule.epochs:g} epochs), "
        f"{schedule.warmup} warm-up, {cfg.schedule} LR, dev every {schedule.eval_every}"
    )

    core = AcousticModel(store.config.dim, len(tokenizer), cfg.model).to(device)
    model = core
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    t = Trainer(
        cfg,
        core,
        model,
        opt,
        schedule,
        torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and cfg.precision == "fp16"),
        device,
        ckpt_dir,
        store.cmvn,
        store.config.hop_ms / 1000,
        rank,
        world,
        SummaryWriter(str(ckpt_dir.tensorboard)) if rank == 0 else None,
    )
    if t.resume():
        quiet(f"train: resuming at update {t.state.step + 1} (epoch {t.state.epoch + 1}, batch {t.state.batch})")
    st = t.state
    while st.step < schedule.updates and not st.stopped:
        t0 = time.perf_counter()
        t.train_steps(train_data, min(schedule.eval_every - st.step % schedule.eval_every, schedule.updates - st.step))
        st.train_seconds += time.perf_counter() - t0  # without the dev evaluation
        _evaluate_now(t, dev_data, tokenizer, quiet, t0)
        t.save_checkpoint()
        stop_point("train.eval")
    if t.writer is not None:
        t.writer.close()

    summary = {}
    if rank == 0:
        core.load_state_dict(load_weights(ckpt_dir.best))
        chosen = f"best (update {st.best_update})"
        best_dev = next(h for h in st.history if h["update"] == st.best_update)
        best_dev = {"wer": best_dev["dev_wer"], "cer": best_dev["dev_cer"], "loss": best_dev["dev_loss"]}
        last = ckpt_dir.snapshots()[-cfg.average_last :]
        if cfg.average_last > 1 and len(last) > 1:
            best_state = {k: v.clone() for k, v in core.state_dict().items()}
            core.load_state_dict(_average(last))
            avg = evaluate(core, dev_data, t.cmvn, tokenizer, cfg, device)
            if _selection_score(cfg, avg) <= st.best:
                at = [st.history[ckpt_dir.snapshot_number(p) - 1]["update"] for p in last]
                chosen, best_dev = f"average of the models at updates {at}", avg
            else:
                core.load_state_dict(best_state)
        quiet(f"train: keeping the {chosen}: dev WER {100 * best_dev['wer']:.2f}%, CER {100 * best_dev['cer']:.2f}%")
        extra = {"train_config": to_dict(cfg), "chosen": chosen}
        torch.save(
            checkpoint_dict(core, tokenizer.to_dict(), to_dict(store.config), store.cmvn.to_dict(), extra), result.model
        )
        result.history.write_text(json.dumps(st.history, indent=1) + "\n")
        result.too_short.write_text("".join(f"{u} {h} {n}\n" for u, h, n in short + dev_short))
        _plot(st.history, result.curves)
        if ckpt_dir.tensorboard.is_dir():
            os.replace(ckpt_dir.tensorboard, result.tensorboard)
        summary = {
            "schedule": asdict(schedule),
            "updates": st.step,
            "epochs": t.epochs_done,
            "evaluations": len(st.history),
            "chosen": chosen,
            "dev_wer": best_dev["wer"],
            "dev_cer": best_dev["cer"],
            "dev_loss": best_dev["loss"],
            "final_train_loss": st.history[-1]["train_loss"],
            "skipped_steps": st.skipped,
            "too_short": len(short) + len(dev_short),
            "train_utterances": len(train_data.items),
            "train_seconds": round(st.seconds, 1),
        }
        result.summary.write_text(json.dumps(summary, indent=1) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def stage(ctx) -> dict:
    """The ``train`` stage; launches torchrun itself when ``nproc > 1``."""
    cfg: TrainConfig = ctx.config
    feats = ctx.inputs["features"]
    if cfg.nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={cfg.nproc}",
            "-m",
            "asr.train",
            "--features",
            str(feats),
            "--out",
            str(ctx.out),
            "--partial",
            str(ctx.partial),
            "--config",
            json.dumps(to_dict(cfg)),
        ]
        ctx.log("train: " + " ".join(cmd[:6]) + " ...")
        if subprocess.run(cmd).returncode != 0:
            raise AsrError(f"distributed training failed (see the output above); checkpoints are kept in {ctx.partial}")
        return json.loads(TrainDir(ctx.out).summary.read_text())
    return train(cfg, feats, ctx.out, ctx.partial, ctx.log)


def main(argv=None) -> None:
    """Entry point for ``torchrun ... -m asr.train`` (one process per GPU or CPU worker, any number of nodes)."""
    p = argparse.ArgumentParser(description="Train the acoustic model (one process of a torchrun job).")
    p.add_argument("--features", required=True, help="output directory of the features stage")
    p.add_argument("--out", required=True, help="where model.pt and the logs go")
    p.add_argument("--partial", required=True, help="checkpoint directory (shared by all processes)")
    p.add_argument("--config", default="{}", help='TrainConfig fields as JSON (nested: {"model": {"hidden": 128}})')
    a = p.parse_args(argv)
    given = json.loads(a.config)
    base = to_dict(TrainConfig())
    base.update(
        {
            k: ({**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v)
            for k, v in given.items()
        }
    )
    cfg = from_dict(TrainConfig, base)
    try:
        train(cfg, Path(a.features), Path(a.out), Path(a.partial))
    except AsrError as e:
        print(f"asr.train: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
