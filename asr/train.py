"""The training stage: CTC training of the acoustic model, resumable, reproducible, DDP-ready.

Read top to bottom: :func:`load_data` (labels, too-short check), :func:`make_batches`
(frame-bounded, length-grouped), :func:`train_one_epoch`, :func:`evaluate`, then
:func:`train`, which ties them together with checkpointing, LR decay on dev
plateau, early stopping, keep-best and averaging of the last checkpoints.

Several processes (``torchrun --nproc_per_node N -m asr.train ...``) train with
DistributedDataParallel: NCCL on GPUs, Gloo on CPUs. The stage launches torchrun
itself when ``train.nproc > 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jiwer
import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from tqdm import tqdm

from asr.config import to_dict
from asr.decode import greedy
from asr.errors import AsrError
from asr.features import FeatureStore, spec_augment
from asr.model import AcousticModel, ModelConfig, checkpoint_dict, pad
from asr.tokenizer import CharTokenizer


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage's config section."""

    train_sets: tuple[str, ...] = ("train",)  # feature sets to train on
    dev_sets: tuple[str, ...] = ("dev",)  # feature sets for LR decay, early stopping, model choice
    max_utterances: int = 0  # 0: all; else a seeded random subset of the training sets (quick runs)
    # model (see asr.model.ModelConfig)
    rnn: Literal["lstm", "gru"] = "lstm"
    bidirectional: bool = True
    num_layers: int = 3
    hidden: int = 256
    proj: int = 0
    dropout: float = 0.1
    stack: int = 1
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
    # augmentation
    spec_augment: bool = False
    freq_mask: int = 5
    n_freq_masks: int = 2
    time_mask: int = 20
    n_time_masks: int = 2
    # runtime
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"  # mixed precision on CUDA; CPU always trains in fp32
    threads: int = 0  # CPU threads per process (0: torch's default)
    nproc: int = 1  # processes for DistributedDataParallel (launched with torchrun)
    checkpoint_every: int = 50  # batches between mid-epoch checkpoints

    def __post_init__(self):
        self.model_config()  # validates the model fields
        if self.batch_frames < 1 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("batch_frames, epochs and lr must be positive")

    def model_config(self) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


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


def ctc_min_frames(labels: list[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus a blank between repeats."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def load_data(store: FeatureStore, names, tokenizer: CharTokenizer, stack: int, max_utts: int = 0,
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


def make_batches(frames: np.ndarray, batch_frames: int, epoch: int, seed: int) -> list[list[int]]:
    """Frame-bounded batches of similar lengths.

    Epoch 0 goes shortest first (SortaGrad); later epochs sort by a randomly
    jittered length (+-10%), cut batches, and shuffle the batch order, seeded by
    ``(seed, epoch)`` so a resumed run rebuilds the same batches.
    """
    if epoch == 0:
        order = np.argsort(frames, kind="stable")
    else:
        rng = np.random.default_rng([seed, epoch])
        order = np.argsort(frames * rng.uniform(0.9, 1.1, size=len(frames)), kind="stable")
    batches, cur, longest = [], [], 0
    for i in order:
        longest_if = max(longest, int(frames[i]))
        if cur and longest_if * (len(cur) + 1) > batch_frames:
            batches.append(cur)
            cur, longest_if = [], int(frames[i])
        cur.append(int(i))
        longest = longest_if
    if cur:
        batches.append(cur)
    if epoch > 0:
        rng = np.random.default_rng([seed, epoch, 1])
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


def collate(data: Data, batch: list[int], cmvn, device: torch.device):
    """Padded ``(B, T, D)`` features (CMVN applied), lengths, concatenated targets, target lengths."""
    x, lengths = pad([cmvn(data.sets[data.items[i][0]][data.items[i][1]], data.speakers[i]) for i in batch])
    targets = torch.tensor([u for i in batch for u in data.labels[i]], dtype=torch.long)
    target_lengths = torch.tensor([len(data.labels[i]) for i in batch])
    return x.to(device), lengths.to(device), targets.to(device), target_lengths.to(device)


# --- one epoch, one evaluation ------------------------------------------------------------------------


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


def train_one_epoch(state: dict, model, opt, scaler, data: Data, cmvn, cfg: TrainConfig, device, rank: int,
                    world: int, save, writer, log) -> None:
    """Train from ``state["batch"]`` to the end of ``state["epoch"]``; checkpoints via ``save()``."""
    batches = make_batches(data.frames, cfg.batch_frames, state["epoch"], cfg.seed)
    batches = batches[: len(batches) - len(batches) % world] if world > 1 else batches
    mine = batches[rank::world]
    params = [p for p in model.parameters() if p.requires_grad]
    hop_s = state["hop_seconds"]
    bar = tqdm(total=len(mine), initial=state["batch"], desc=f"epoch {state['epoch'] + 1}/{cfg.epochs}",
               disable=None if rank == 0 else True, leave=False, unit="batch")
    t0, audio_s = time.perf_counter(), 0.0
    for b in range(state["batch"], len(mine)):
        x, xl, y, yl = collate(data, mine[b], cmvn, device)
        if cfg.spec_augment:
            x = spec_augment(x, cfg.freq_mask, cfg.n_freq_masks, cfg.time_mask, cfg.n_time_masks)
        loss, _, _ = ctc_loss(model, x, xl, y, yl, device, cfg.precision)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        loss_value = float(loss.detach())
        if torch.isfinite(norm) and math.isfinite(loss_value):
            scaler.step(opt)
            state["loss_sum"] += loss_value * len(mine[b])
            state["loss_n"] += len(mine[b])
        else:
            state["skipped"] += 1  # non-finite gradients: skip the step, keep the weights
        scaler.update()
        state["step"] += 1
        state["batch"] = b + 1
        audio_s += float(xl.sum()) * hop_s
        if writer is not None:
            writer.add_scalar("train/loss", loss_value, state["step"])
            writer.add_scalar("train/grad_norm", float(norm), state["step"])
        bar.set_postfix(loss=f"{loss_value:.3f}", norm=f"{float(norm):.2f}",
                        audio_x=f"{audio_s * world / (time.perf_counter() - t0):.0f}")
        bar.update(1)
        if cfg.checkpoint_every and state["batch"] % cfg.checkpoint_every == 0 and state["batch"] < len(mine):
            save()
    bar.close()


# --- the whole training ---------------------------------------------------------------------------


def _setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """Rank, world size and device; joins the process group under torchrun."""
    from asr.features import pick_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(cfg.device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.enabled = True  # cuDNN RNN kernels
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
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    return {k: sum(s[k].double() for s in states).div(len(states)).to(states[0][k].dtype) for k in states[0]}


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def train(cfg: TrainConfig, features_dir: Path, out: Path, partial: Path, log=print) -> dict:
    """Train, resuming from ``partial/checkpoint.pt`` when it exists; write ``out/model.pt``.

    Returns:
        a summary: epochs, best dev WER/loss, skipped steps, too-short utterances, seconds.
    """
    rank, world, device = _setup(cfg)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    partial.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(features_dir)
    texts = [u["text"] for name in store.expand(cfg.train_sets) for u in store.open(name).utts]
    tokenizer = CharTokenizer.from_texts(texts)
    quiet = (lambda m: None) if rank else log
    train_data, short = load_data(store, cfg.train_sets, tokenizer, cfg.stack, cfg.max_utterances, cfg.seed, quiet)
    try:
        dev_data, dev_short = load_data(store, cfg.dev_sets, tokenizer, cfg.stack, log=quiet)
    except AsrError as e:
        raise AsrError(f"dev sets {cfg.dev_sets}: {e} (characters never seen in training)") from None
    if not train_data.items:
        raise AsrError(f"no usable training utterances in {cfg.train_sets}")

    model = AcousticModel(store.config.dim, len(tokenizer), cfg.model_config()).to(device)
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_decay, patience=cfg.lr_patience)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and cfg.precision == "fp16")
    state = {"epoch": 0, "batch": 0, "step": 0, "skipped": 0, "loss_sum": 0.0, "loss_n": 0, "best": None,
             "best_epoch": -1, "bad_epochs": 0, "stopped": False, "history": [],
             "hop_seconds": store.config.hop_ms / 1000, "seconds": 0.0, "train_seconds": 0.0}
    ckpt_path = partial / "checkpoint.pt"
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # our own file, holds RNG state
        core.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
        torch.set_rng_state(ckpt["rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        quiet(f"train: resuming at epoch {state['epoch'] + 1}, batch {state['batch']} (step {state['step']})")

    def save():
        if rank == 0:
            _save_atomic({"model": core.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "scaler": scaler.state_dict(), "state": state, "rng": torch.get_rng_state(),
                          "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                         ckpt_path)

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(partial / "tb"))
    cmvn = store.cmvn
    while state["epoch"] < cfg.epochs and not state["stopped"]:
        t0 = time.perf_counter()
        train_one_epoch(state, model, opt, scaler, train_data, cmvn, cfg, device, rank, world, save, writer, quiet)
        state["train_seconds"] += time.perf_counter() - t0  # without the dev evaluation
        sums = torch.tensor([state["loss_sum"], state["loss_n"]], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(sums)
        dev = evaluate(core, dev_data, cmvn, tokenizer, cfg, device) if rank == 0 else {"loss": 0, "wer": 0, "cer": 0}
        dev_loss, dev_wer, dev_cer = _broadcast([dev["loss"], dev["wer"], dev["cer"]], device)
        epoch = state["epoch"] + 1
        state["seconds"] += time.perf_counter() - t0
        row = {"epoch": epoch, "train_loss": float(sums[0] / max(sums[1], 1)), "dev_loss": dev_loss,
               "dev_wer": dev_wer, "dev_cer": dev_cer, "lr": opt.param_groups[0]["lr"],
               "skipped_steps": state["skipped"], "seconds": round(state["seconds"], 1),
               "train_seconds": round(state["train_seconds"], 1)}
        state["history"].append(row)
        quiet(f"epoch {epoch}: train loss {row['train_loss']:.4f}, dev loss {dev_loss:.4f}, "
              f"dev WER {100 * dev_wer:.2f}%, CER {100 * dev_cer:.2f}%, lr {row['lr']:.2e}")
        if writer is not None:
            for k in ("train_loss", "dev_loss", "dev_wer", "dev_cer", "lr"):
                writer.add_scalar(f"epoch/{k}", row[k], epoch)
        score = [dev_wer, dev_loss]
        if state["best"] is None or score < state["best"]:
            state.update(best=score, best_epoch=epoch, bad_epochs=0)
            if rank == 0:
                _save_atomic(core.state_dict(), partial / "best.pt")
        else:
            state["bad_epochs"] += 1
        if rank == 0:
            _save_atomic(core.state_dict(), partial / f"epoch{epoch}.pt")
            (partial / f"epoch{epoch - cfg.average_last}.pt").unlink(missing_ok=True)
        sched.step(dev_loss)
        state.update(epoch=epoch, batch=0, loss_sum=0.0, loss_n=0)
        if cfg.early_stop and state["bad_epochs"] >= cfg.early_stop:
            state["stopped"] = True
            quiet(f"train: no dev improvement for {cfg.early_stop} epochs, stopping")
        save()
    if writer is not None:
        writer.close()

    summary = {}
    if rank == 0:
        core.load_state_dict(torch.load(partial / "best.pt", map_location="cpu", weights_only=True))
        chosen = f"best (epoch {state['best_epoch']})"
        best_dev = {"wer": state["best"][0], "loss": state["best"][1]}
        last = sorted(partial.glob("epoch*.pt"), key=lambda p: int(p.stem[5:]))[-cfg.average_last:]
        if cfg.average_last > 1 and len(last) > 1:
            best_state = {k: v.clone() for k, v in core.state_dict().items()}
            core.load_state_dict(_average(last))
            avg = evaluate(core, dev_data, cmvn, tokenizer, cfg, device)
            if [avg["wer"], avg["loss"]] <= state["best"]:
                chosen, best_dev = f"average of epochs {[int(p.stem[5:]) for p in last]}", avg
            else:
                core.load_state_dict(best_state)
        quiet(f"train: keeping the {chosen}: dev WER {100 * best_dev['wer']:.2f}%")
        extra = {"train_config": to_dict(cfg), "chosen": chosen}
        torch.save(checkpoint_dict(core, tokenizer.to_dict(), to_dict(store.config), store.cmvn.to_dict(), extra),
                   out / "model.pt")
        (out / "history.json").write_text(json.dumps(state["history"], indent=1) + "\n")
        (out / "too_short.txt").write_text("".join(f"{u} {h} {n}\n" for u, h, n in short + dev_short))
        _plot(state["history"], out / "curves.png")
        if (partial / "tb").is_dir():
            os.replace(partial / "tb", out / "tb")
        summary = {"epochs": len(state["history"]), "chosen": chosen, "dev_wer": best_dev["wer"],
                   "dev_loss": best_dev["loss"], "final_train_loss": state["history"][-1]["train_loss"],
                   "skipped_steps": state["skipped"], "too_short": len(short) + len(dev_short),
                   "train_utterances": len(train_data.items), "train_seconds": round(state["seconds"], 1)}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
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
        return json.loads((ctx.out / "summary.json").read_text())
    return train(cfg, feats, ctx.out, ctx.partial, ctx.log)


def main(argv=None) -> None:
    """Entry point for ``torchrun ... -m asr.train`` (one process per GPU or CPU worker, any number of nodes)."""
    from asr.config import from_dict

    p = argparse.ArgumentParser(description="Train the acoustic model (one process of a torchrun job).")
    p.add_argument("--features", required=True, help="output directory of the features stage")
    p.add_argument("--out", required=True, help="where model.pt and the logs go")
    p.add_argument("--partial", required=True, help="checkpoint directory (shared by all processes)")
    p.add_argument("--config", default="{}", help="TrainConfig fields as JSON")
    a = p.parse_args(argv)
    cfg = from_dict(TrainConfig, {**to_dict(TrainConfig()), **json.loads(a.config)})
    train(cfg, Path(a.features), Path(a.out), Path(a.partial))


if __name__ == "__main__":
    main()
