"""The training stage: CTC training of the acoustic model, resumable, reproducible, DDP-ready.

Read top to bottom: :func:`load_data` (labels, too-short check), :func:`collate`,
:func:`evaluate`, the :class:`Trainer` (one epoch, checkpoints), then :func:`train`,
which ties them together with LR decay on dev plateau, early stopping, keep-best and
averaging of the last checkpoints. Batches come from :func:`asr.batching.make_batches`
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
from asr.errors import AsrError
from asr.features import FeatureStore, pick_device, spec_augment
from asr.layout import CheckpointDir, TrainDir
from asr.model import AcousticModel, ModelConfig, checkpoint_dict, load_weights
from asr.procs import stop_point
from asr.tokenizer import CharTokenizer, SubwordTokenizer, Tokenizer

matplotlib.use("Agg")  # curves are written to a file; no display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


VERSION = 2  # of the train stage's output: bump when the training or the files it writes change


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage's config section."""

    train_sets: tuple[str, ...] = ("train",)  # feature sets to train on
    dev_sets: tuple[str, ...] = ("dev",)  # feature sets for LR decay, early stopping, model choice
    max_utterances: int = 0  # 0: all; else a seeded random subset of the training sets (quick runs)
    model: ModelConfig = ModelConfig()  # the network (train.model.hidden=128, ...)
    units: Literal["char", "bpe", "unigram"] = "char"  # output units: characters, or sentencepiece subwords ...
    vocab_size: int = 256  # ... of this many units (blank included)
    # optimisation
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 5.0  # gradient-norm clipping, the classic remedy for exploding RNN gradients
    epochs: int = 20
    batch_frames: int = 20_000  # padded frames per batch (batch size x longest utterance)
    lr_decay: float = 0.5  # LR factor when dev stops improving ...
    lr_patience: int = 1  # ... for this many epochs
    early_stop: int = 4  # stop after this many epochs without dev improvement (0: never)
    average_last: int = 3  # also try the average of the last N epoch models; keep it if dev is no worse
    # what keep-best, averaging and early stopping compare (then dev loss): greedy dev CER by default, since
    # the WER stays at or above 100% until CTC leaves its all-blank plateau; on speechocean762 choosing by
    # WER stopped a run at epoch 9 whose dev CER was still falling (94% -> 75%) and kept epoch 5
    select_on: Literal["cer", "wer", "loss"] = "cer"
    # augmentation
    spec_augment: bool = False
    spec_augment_after: int = 0  # epochs of clean training before SpecAugment starts: from the first epoch, it kept
    # 4x320 and 5x384 BiLSTMs on speechocean762 in CTC's blank plateau for 20-40 epochs (dev CER 74-78%)
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
    nproc: int = 1  # processes for DistributedDataParallel (launched with torchrun)
    checkpoint_every: int = 50  # batches between mid-epoch checkpoints

    def __post_init__(self):
        if self.batch_frames < 1 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("batch_frames, epochs and lr must be positive")


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


def load_data(store: FeatureStore, names, tokenizer: Tokenizer, stack: int, max_utts: int = 0,
              seed: int = 0, log=print) -> tuple[Data, list[tuple[str, int, int]]]:
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
        data = Data(sets, [items[k] for k in keep], [labels[k] for k in keep], data.frames[keep],
                    [ids[k] for k in keep], [spk[k] for k in keep], [texts[k] for k in keep])
    for uid, have, need in short:
        log(f"train data: {uid} has {have} frames after x{stack} stacking but its text needs {need}; left out")
    return data, short


def collate(data: Data, batch: list[int], cmvn, device: torch.device):
    """Padded ``(B, T, D)`` features (CMVN applied), lengths, concatenated targets, target lengths."""
    x, lengths = pad([cmvn(data.sets[data.items[i][0]][data.items[i][1]], data.speakers[i]) for i in batch])
    targets = torch.tensor([u for i in batch for u in data.labels[i]], dtype=torch.long)
    target_lengths = torch.tensor([len(data.labels[i]) for i in batch])
    return x.to(device), lengths.to(device), targets.to(device), target_lengths.to(device)


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

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished
    step: int = 0  # optimizer steps taken (or skipped) in all
    skipped: int = 0  # steps skipped for non-finite gradients
    loss_sum: float = 0.0  # this epoch's summed training loss (x utterances) ...
    loss_n: int = 0  # ... over this many utterances
    best: list[float] | None = None  # [dev measure (TrainConfig.select_on), dev loss] of the best epoch
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since dev last improved
    stopped: bool = False  # early stopping fired
    history: list[dict] = field(default_factory=list)  # one row per epoch
    seconds: float = 0.0  # wall time of training and dev evaluation
    train_seconds: float = 0.0  # wall time of training alone


@dataclass
class Trainer:
    """The model, its optimizer and schedule, and the process's place in a DDP job."""

    cfg: TrainConfig
    core: AcousticModel  # the model itself
    model: torch.nn.Module  # the model as trained (DDP-wrapped when world > 1)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    device: torch.device
    ckpt: CheckpointDir
    cmvn: object
    hop_seconds: float
    rank: int = 0
    world: int = 1
    writer: SummaryWriter | None = None
    state: TrainState = field(default_factory=TrainState)

    def save_checkpoint(self) -> None:
        """Everything a resumed run needs, as tensors and plain data (loads with ``weights_only=True``)."""
        if self.rank:
            return
        cuda = self.device.type == "cuda"
        _save_atomic({"model": self.core.state_dict(), "optimizer": self.opt.state_dict(),
                      "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                      "state": asdict(self.state), "rng": torch.get_rng_state(),
                      "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None},
                     self.ckpt.checkpoint)

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
            self.sched.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
            self.state = TrainState(**ckpt["state"])
            torch.set_rng_state(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise AsrError(f"{path}: not a checkpoint of this training ({type(e).__name__}: {e}); delete "
                           f"{path.parent} to start afresh") from None
        if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        return True

    def train_one_epoch(self, data: Data) -> None:
        """Train from ``state.batch`` to the end of ``state.epoch``, checkpointing every ``checkpoint_every`` batches."""
        cfg, st = self.cfg, self.state
        batches = make_batches(data.frames, cfg.batch_frames, st.epoch, cfg.seed)
        batches = batches[: len(batches) - len(batches) % self.world] if self.world > 1 else batches
        mine = batches[self.rank::self.world]
        params = [p for p in self.model.parameters() if p.requires_grad]
        bar = tqdm(total=len(mine), initial=st.batch, desc=f"epoch {st.epoch + 1}/{cfg.epochs}",
                   disable=None if self.rank == 0 else True, leave=False, unit="batch")
        t0, audio_s = time.perf_counter(), 0.0
        for b in range(st.batch, len(mine)):
            x, xl, y, yl = collate(data, mine[b], self.cmvn, self.device)
            if cfg.spec_augment and st.epoch >= cfg.spec_augment_after:
                x = spec_augment(x, cfg.freq_mask, cfg.n_freq_masks, cfg.time_mask, cfg.n_time_masks)
            loss, _, _ = ctc_loss(self.model, x, xl, y, yl, self.device, cfg.precision)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            loss_value = float(loss.detach())
            if torch.isfinite(norm) and math.isfinite(loss_value):
                self.scaler.step(self.opt)
                st.loss_sum += loss_value * len(mine[b])
                st.loss_n += len(mine[b])
            else:
                st.skipped += 1  # non-finite gradients: skip the step, keep the weights
            self.scaler.update()
            st.step += 1
            st.batch = b + 1
            audio_s += float(xl.sum()) * self.hop_seconds
            if self.writer is not None:
                self.writer.add_scalar("train/loss", loss_value, st.step)
                self.writer.add_scalar("train/grad_norm", float(norm), st.step)
            bar.set_postfix(loss=f"{loss_value:.3f}", norm=f"{float(norm):.2f}",
                            audio_x=f"{audio_s * self.world / (time.perf_counter() - t0):.0f}")
            bar.update(1)
            if cfg.checkpoint_every and st.batch % cfg.checkpoint_every == 0 and st.batch < len(mine):
                self.save_checkpoint()
                stop_point("train.checkpoint")
        bar.close()


# --- the whole training ---------------------------------------------------------------------------


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
            raise AsrError(f"process {local} of {world} has no GPU of its own: {torch.cuda.device_count()} visible; "
                           "set train.nproc to at most the number of GPUs, or train.device=cpu")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        torch.backends.cudnn.enabled = True  # cuDNN RNN kernels
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // world) if world > 1 else 0)
    if threads:
        torch.set_num_threads(threads)
    return (dist.get_rank() if world > 1 else 0), world, device


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train CTC loss")
    ax.plot(epochs, [h["dev_loss"] for h in history], "s-", label="dev CTC loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("CTC loss per token")
    ax2 = ax.twinx()
    ax2.plot(epochs, [100 * h["dev_wer"] for h in history], "^--", color="tab:red", label="dev WER (greedy)")
    ax2.set_ylabel("dev WER %")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _selection_score(cfg: TrainConfig, dev: dict) -> list[float]:
    """What epochs are compared by: ``[the select_on measure, dev loss]``, lower is better."""
    return [dev[cfg.select_on], dev["loss"]]


def _end_of_epoch(t: Trainer, dev_data: Data, tokenizer, log, t0: float) -> None:
    """Dev evaluation, history, keep-best, epoch model, LR schedule and early stopping (epoch began at ``t0``)."""
    cfg, st, device = t.cfg, t.state, t.device
    sums = torch.tensor([st.loss_sum, st.loss_n], dtype=torch.float64, device=device)
    if t.world > 1:
        dist.all_reduce(sums)
    dev = evaluate(t.core, dev_data, t.cmvn, tokenizer, cfg, device) if t.rank == 0 else {"loss": 0, "wer": 0, "cer": 0}
    dev_loss, dev_wer, dev_cer = _broadcast([dev["loss"], dev["wer"], dev["cer"]], device)
    epoch = st.epoch + 1
    st.seconds += time.perf_counter() - t0
    row = {"epoch": epoch, "train_loss": float(sums[0] / max(sums[1], 1)), "dev_loss": dev_loss,
           "dev_wer": dev_wer, "dev_cer": dev_cer, "lr": t.opt.param_groups[0]["lr"],
           "skipped_steps": st.skipped, "seconds": round(st.seconds, 1), "train_seconds": round(st.train_seconds, 1)}
    st.history.append(row)
    log(f"epoch {epoch}: train loss {row['train_loss']:.4f}, dev loss {dev_loss:.4f}, "
        f"dev WER {100 * dev_wer:.2f}%, CER {100 * dev_cer:.2f}%, lr {row['lr']:.2e}")
    if t.writer is not None:
        for k in ("train_loss", "dev_loss", "dev_wer", "dev_cer", "lr"):
            t.writer.add_scalar(f"epoch/{k}", row[k], epoch)
    score = _selection_score(cfg, {"wer": dev_wer, "cer": dev_cer, "loss": dev_loss})
    if st.best is None or score < st.best:
        st.best, st.best_epoch, st.bad_epochs = score, epoch, 0
        if t.rank == 0:
            _save_atomic(t.core.state_dict(), t.ckpt.best)
    else:
        st.bad_epochs += 1
    if t.rank == 0:
        _save_atomic(t.core.state_dict(), t.ckpt.epoch(epoch))
        t.ckpt.epoch(epoch - cfg.average_last).unlink(missing_ok=True)
    t.sched.step(dev_loss)
    st.epoch, st.batch, st.loss_sum, st.loss_n = epoch, 0, 0.0, 0
    if cfg.early_stop and st.bad_epochs >= cfg.early_stop:
        st.stopped = True
        log(f"train: no dev improvement for {cfg.early_stop} epochs, stopping")


def train(cfg: TrainConfig, features_dir: Path, out: Path, partial: Path, log=print) -> dict:
    """Train, resuming from the checkpoint in ``partial`` when there is one; write ``out``'s model file.

    Returns:
        a summary: epochs, best dev WER/loss, skipped steps, too-short utterances, seconds.
    """
    rank, world, device = _setup(cfg)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    partial.mkdir(parents=True, exist_ok=True)
    result, ckpt_dir = TrainDir(out), CheckpointDir(partial)
    store = FeatureStore(features_dir)
    texts = [u["text"] for name in store.expand(cfg.train_sets) for u in store.open(name).utts]
    tokenizer = CharTokenizer.from_texts(texts) if cfg.units == "char" else \
        SubwordTokenizer.train(texts, cfg.vocab_size, cfg.units)
    quiet = (lambda m: None) if rank else log
    stack = cfg.model.stack
    train_data, short = load_data(store, cfg.train_sets, tokenizer, stack, cfg.max_utterances, cfg.seed, quiet)
    try:
        dev_data, dev_short = load_data(store, cfg.dev_sets, tokenizer, stack, log=quiet)
    except AsrError as e:
        raise AsrError(f"dev sets {cfg.dev_sets}: {e} (characters never seen in training)") from None
    if not train_data.items:
        raise AsrError(f"no usable training utterances in {cfg.train_sets}")

    core = AcousticModel(store.config.dim, len(tokenizer), cfg.model).to(device)
    model = core
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    t = Trainer(cfg, core, model, opt,
                torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_decay, patience=cfg.lr_patience),
                torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and cfg.precision == "fp16"),
                device, ckpt_dir, store.cmvn, store.config.hop_ms / 1000, rank, world,
                SummaryWriter(str(ckpt_dir.tensorboard)) if rank == 0 else None)
    if t.resume():
        quiet(f"train: resuming at epoch {t.state.epoch + 1}, batch {t.state.batch} (step {t.state.step})")
    st = t.state
    while st.epoch < cfg.epochs and not st.stopped:
        t0 = time.perf_counter()
        t.train_one_epoch(train_data)
        st.train_seconds += time.perf_counter() - t0  # without the dev evaluation
        _end_of_epoch(t, dev_data, tokenizer, quiet, t0)
        t.save_checkpoint()
        stop_point("train.epoch")
    if t.writer is not None:
        t.writer.close()

    summary = {}
    if rank == 0:
        core.load_state_dict(load_weights(ckpt_dir.best))
        chosen = f"best (epoch {st.best_epoch})"
        best_dev = next(h for h in st.history if h["epoch"] == st.best_epoch)
        best_dev = {"wer": best_dev["dev_wer"], "cer": best_dev["dev_cer"], "loss": best_dev["dev_loss"]}
        last = ckpt_dir.epochs()[-cfg.average_last:]
        if cfg.average_last > 1 and len(last) > 1:
            best_state = {k: v.clone() for k, v in core.state_dict().items()}
            core.load_state_dict(_average(last))
            avg = evaluate(core, dev_data, t.cmvn, tokenizer, cfg, device)
            if _selection_score(cfg, avg) <= st.best:
                chosen, best_dev = f"average of epochs {[int(p.stem[5:]) for p in last]}", avg
            else:
                core.load_state_dict(best_state)
        quiet(f"train: keeping the {chosen}: dev WER {100 * best_dev['wer']:.2f}%")
        extra = {"train_config": to_dict(cfg), "chosen": chosen}
        torch.save(checkpoint_dict(core, tokenizer.to_dict(), to_dict(store.config), store.cmvn.to_dict(), extra),
                   result.model)
        result.history.write_text(json.dumps(st.history, indent=1) + "\n")
        result.too_short.write_text("".join(f"{u} {h} {n}\n" for u, h, n in short + dev_short))
        _plot(st.history, result.curves)
        if ckpt_dir.tensorboard.is_dir():
            os.replace(ckpt_dir.tensorboard, result.tensorboard)
        summary = {"epochs": len(st.history), "chosen": chosen, "dev_wer": best_dev["wer"], "dev_cer": best_dev["cer"],
                   "dev_loss": best_dev["loss"], "final_train_loss": st.history[-1]["train_loss"],
                   "skipped_steps": st.skipped, "too_short": len(short) + len(dev_short),
                   "train_utterances": len(train_data.items), "train_seconds": round(st.seconds, 1)}
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
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
               "-m", "asr.train", "--features", str(feats), "--out", str(ctx.out), "--partial", str(ctx.partial),
               "--config", json.dumps(to_dict(cfg))]
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
    p.add_argument("--config", default="{}", help="TrainConfig fields as JSON (nested: {\"model\": {\"hidden\": 128}})")
    a = p.parse_args(argv)
    given = json.loads(a.config)
    base = to_dict(TrainConfig())
    base.update({k: ({**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v)
                 for k, v in given.items()})
    cfg = from_dict(TrainConfig, base)
    try:
        train(cfg, Path(a.features), Path(a.out), Path(a.partial))
    except AsrError as e:
        print(f"asr.train: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
