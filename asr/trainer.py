"""The :class:`Trainer`: the model, its optimizer and schedule, updates, the CTC loss, dev evaluation,
and the checkpoint a resumed run restarts from (tensors and plain data, loaded with ``weights_only=True``)."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jiwer
import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from asr.batching import make_batches
from asr.ctc import greedy
from asr.errors import AsrError
from asr.features import spec_augment
from asr.fsutil import atomic_write
from asr.layout import CheckpointDir
from asr.model import AcousticModel, load_weights
from asr.procs import stop_point
from asr.train_config import Schedule, TrainConfig
from asr.train_data import Data, batch_loader, collate


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


@dataclass(kw_only=True)  # built by name: thirteen fields in a row are easy to swap
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
        save_atomic(
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


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` as :func:`asr.fsutil.atomic_write` writes: the old file or the new one, no ``.tmp`` left
    behind; a failed write (a full disk: torch says only "unexpected pos") names the file and the space left.

    Raises:
        AsrError: the file could not be written.
    """
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except (OSError, RuntimeError) as e:
        free = shutil.disk_usage(path.parent).free / 1e6
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
        raise AsrError(
            f"{path}: could not be written ({reason}); {free:,.0f} MB are free on its disk: free some "
            "space and run again (training resumes from the last checkpoint)"
        ) from None
