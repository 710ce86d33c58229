"""The :class:`Trainer`: the model, its optimizer and schedule, updates, the CTC loss, dev evaluation,
and the checkpoint a resumed run restarts from (tensors and plain data, loaded with ``weights_only=True``)."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import jiwer
import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from asr.core.ctc import greedy
from asr.core.errors import AsrError
from asr.core.fsutil import atomic_write
from asr.core.layout import CheckpointDir
from asr.core.procs import stop_point
from asr.data.batching import Batch, make_batches, split_batch
from asr.model.network import AcousticModel, CtcOutput, load_weights
from asr.train.config import CPU_BATCH_FRAMES, Schedule, TrainConfig
from asr.train.data import Data, batch_loader, collate, normalise_batch
from asr.train.specaugment import spec_augment

# the largest batch train.batch_frames=0 gives: 1,000 s of audio at a 10 ms hop, the top of icefall's max-duration
# range; larger batches leave too few updates per pass for the schedule (which counts updates, not passes)
MAX_DEVICE_BATCH_FRAMES = 100_000
# the share of a GPU's memory the largest batch may take: the rest is the allocator's fragmentation, cuDNN's
# workspaces and the other processes' (train.batch_frames=0, and the GPU benchmark's default)
GPU_MEMORY_SHARE = 0.8


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return torch.autocast(device.type, enabled=False)


def ctc_loss(model, batch: Batch, device, precision, inter_weight: float = 0.0) -> tuple[torch.Tensor, CtcOutput]:
    """The batch's CTC loss (mean over utterances of the per-token loss) and the model's output;
    ``inter_weight`` > 0 (a model with an intermediate CTC layer, in training): ``(1 - w)`` the top layer's loss
    plus ``w`` the intermediate one's, against the batch's intermediate targets when its units differ, else the
    same targets."""
    with _autocast(device, precision):
        x, lengths = batch.feats, batch.lengths
        out = model(x, lengths, inter=True) if inter_weight > 0 else model(x, lengths)

    def loss_of(lp: torch.Tensor, y: torch.Tensor, yl: torch.Tensor) -> torch.Tensor:
        return F.ctc_loss(lp.transpose(0, 1), y, out.lengths, yl, blank=0, reduction="mean", zero_infinity=True)

    loss = loss_of(out.log_probs, batch.targets, batch.target_lengths)
    if out.inter_log_probs is not None:
        inter = (
            (batch.inter_targets, batch.inter_target_lengths)
            if batch.inter_targets is not None
            else (batch.targets, batch.target_lengths)
        )
        loss = (1 - inter_weight) * loss + inter_weight * loss_of(out.inter_log_probs, *inter)
    return loss, out


@torch.no_grad()
def evaluate(model, data: Data, cmvn, tokenizer, cfg: TrainConfig, device) -> dict:
    """Dev loss (mean per utterance of the per-token CTC loss) and greedy WER/CER (corpus level, jiwer)."""
    model.eval()
    total, hyps = 0.0, [""] * len(data.items)
    for batch in make_batches(data.frames, cfg.batch_frames, 0, cfg.seed):
        loss, out = ctc_loss(model, collate(data, batch, cmvn, device), device, cfg.precision)
        total += float(loss) * len(batch)
        for i, units in zip(batch, greedy(out.log_probs, out.lengths)):
            hyps[i] = tokenizer.decode(units)
    model.train()
    wer = jiwer.wer(data.texts, hyps) if data.texts else 0.0
    cer = jiwer.cer(data.texts, hyps) if data.texts else 0.0
    return {"loss": total / max(len(data.items), 1), "wer": wer, "cer": cer}


def probe_batch_frames(
    model: AcousticModel,
    longest: int,
    device: torch.device,
    share: float = GPU_MEMORY_SHARE,
    precision: str = "fp32",
) -> int:
    """The largest batch, in padded frames, of ``longest``-frame utterances whose training step (forward, CTC
    loss, backward) fits in ``share`` of the CUDA device's memory: the peaks of one and two utterances give
    the memory of each more; the count that fills the budget is then tried, halved while it does not fit."""
    budget = share * torch.cuda.get_device_properties(device).total_memory
    units = model.num_units

    def peak(b: int) -> int:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        x = torch.randn(b, longest, model.input_dim, device=device)
        xl = torch.full((b,), longest, device=device)
        yl = torch.full((b,), max(1, longest // model.cfg.stack // 4), device=device)
        y = torch.randint(1, units, (int(yl.sum()),), device=device)
        loss, _ = ctc_loss(model, Batch(x, xl, y, yl), device, precision)
        loss.backward()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)

    one = peak(1)
    each = max(1, peak(2) - one)
    b = max(1, int((budget - one) // each) + 1)
    while b > 1:
        try:
            peak(b)
            break
        except torch.OutOfMemoryError:
            b //= 2
    model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()
    return b * longest


def device_batch_frames(model: AcousticModel, longest: int, device: torch.device, precision: str = "fp32") -> int:
    """``train.batch_frames=0``: on CUDA the largest batch of ``longest``-frame utterances that fits in
    ``GPU_MEMORY_SHARE`` of the GPU's memory (:func:`probe_batch_frames`), at most ``MAX_DEVICE_BATCH_FRAMES``; on a
    CPU ``CPU_BATCH_FRAMES``."""
    if device.type != "cuda":
        return CPU_BATCH_FRAMES
    return max(longest, min(MAX_DEVICE_BATCH_FRAMES, probe_batch_frames(model, longest, device, precision=precision)))


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
    split_at: int | None = None  # batches of this many padded frames or more ran out of memory: trained in pieces
    log: Callable[[str], None] = print

    @property
    def inter_weight(self) -> float:
        """The intermediate CTC loss's share (0 for a model without that layer)."""
        return self.cfg.inter_ctc_weight if self.core.cfg.inter_ctc else 0.0

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

    def _update(
        self, batch: Batch, params: list, ids: list[str] | None = None, speakers: list[str] | None = None
    ) -> tuple[float, float, float]:
        """One optimizer update on a collated batch; returns (loss, gradient norm, audio seconds).

        A batch that does not fit in the device's memory is trained in pieces of its utterances, their
        gradients summed with each piece's share of the utterances as weight (the gradient of the whole
        batch), and batches as large are cut up front from then on; an utterance that does not fit alone is
        left out, by name (``ids``: the batch's utterances). The batch comes as stored (padded); CMVN runs here,
        on the device, with ``speakers`` for speaker statistics.
        """
        cfg, st = self.cfg, self.state
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * self.schedule.lr_factor(st.step, cfg) * st.lr_scale
        ids = ids or [f"utterance {k + 1} of the batch" for k in range(len(batch))]
        batch = batch.to(self.device, non_blocking=True)
        speakers = speakers or [""] * len(ids)
        batch = replace(batch, feats=normalise_batch(self.cmvn, batch.feats, batch.lengths, speakers))
        noise = None
        if cfg.weight_noise and st.step >= self.schedule.weight_noise_from:
            # Graves et al. 2013 (TIMIT's BiLSTM-CTC): the gradient taken at weights with Gaussian noise added,
            # the update applied to the weights without it
            noise = [torch.randn_like(p) * cfg.weight_noise for p in params]
            torch._foreach_add_([p.data for p in params], noise)
        try:
            while True:
                loss, failed = self._pieces_backward(batch)
                if failed is None:
                    break
                batch, ids = self._out_of_memory(batch, ids, failed)  # outside the handler: the graph is freed
                if batch is None:  # nothing of it fits: an update without gradient
                    st.skipped, st.step = st.skipped + 1, st.step + 1
                    return 0.0, 0.0, 0.0
        finally:
            if noise is not None:
                torch._foreach_sub_([p.data for p in params], noise)
        self.scaler.unscale_(self.opt)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        loss_value = float(loss.detach())
        n = len(batch)
        if torch.isfinite(norm) and math.isfinite(loss_value):
            self.scaler.step(self.opt)
            st.loss_sum += loss_value * n
            st.loss_n += n
        else:
            st.skipped += 1  # non-finite gradients: skip the update, keep the weights
        self.scaler.update()
        st.step += 1
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss_value, st.step)
            self.writer.add_scalar("train/grad_norm", float(norm), st.step)
            self.writer.add_scalar("train/lr", self.opt.param_groups[0]["lr"], st.step)
        return loss_value, float(norm), float(batch.lengths.sum()) * self.hop_seconds

    def _pieces_backward(self, batch: Batch) -> tuple[torch.Tensor, list[int] | None]:
        """Gradients of ``batch``, in pieces of fewer than ``split_at`` padded frames; returns the loss, and the
        piece (its utterances' places in the batch) that ran out of memory (then the gradients are zeroed), if
        one did."""
        pieces = split_batch(batch.lengths, self.split_at)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=self.device)
        for k, piece in enumerate(pieces):
            try:
                part = batch.select(piece) if len(pieces) > 1 else batch
                loss = loss + self._backward(part, len(batch), k < len(pieces) - 1)
            except torch.OutOfMemoryError:
                break
        else:
            return loss, None
        self.opt.zero_grad(set_to_none=True)
        return loss, piece

    def _backward(self, piece: Batch, batch_size: int, more: bool) -> torch.Tensor:
        """Forward and backward of one piece of a batch, its loss weighted by its share of the batch's
        utterances (on the device already); ``more``: pieces follow (DDP sums gradients across processes after the
        last one only)."""
        if self.cfg.spec_augment and self.state.step >= self.schedule.spec_augment_from:
            cfg = self.cfg
            masked = spec_augment(piece.feats, cfg.freq_mask, cfg.n_freq_masks, cfg.time_mask, cfg.n_time_masks)
            piece = replace(piece, feats=masked)
        sync = self.model.no_sync() if more and hasattr(self.model, "no_sync") else contextlib.nullcontext()
        with sync:
            loss, _ = ctc_loss(self.model, piece, self.device, self.cfg.precision, self.inter_weight)
            loss = loss * (len(piece) / batch_size)
            self.scaler.scale(loss).backward()
        return loss.detach()

    def _out_of_memory(self, batch: Batch, ids: list[str], failed: list[int]) -> tuple[Batch | None, list[str]]:
        """After the piece ``failed`` of ``batch`` ran out of memory: an utterance alone is left out, by name;
        else batches of the piece's padded frames are cut into pieces from now on. Returns what to retry.

        Raises:
            AsrError: in a DDP job, whose processes must run the same pieces (set a smaller batch).
        """
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        lengths = batch.lengths[failed]
        frames = len(failed) * int(lengths.max())
        if self.world > 1:
            raise AsrError(
                f"a batch of {len(failed)} utterances x {int(lengths.max())} frames did not fit in "
                f"{self.device} memory in process {self.rank}; set train.batch_frames below {frames} and run "
                "again (training resumes from the last checkpoint)"
            )
        if len(failed) > 1:
            self.split_at = frames
            self.log(
                f"train: a batch of {frames} padded frames did not fit in {self.device} memory; batches of "
                f"{frames} frames or more are trained in pieces from now on (train.batch_frames={frames // 2} "
                "would avoid it)"
            )
            return batch, ids
        lost = failed[0]
        self.log(
            f"train: {ids[lost]} ({frames} frames) does not fit in {self.device} memory on its own; left "
            "out of this update (cut long recordings into shorter utterances)"
        )
        keep = [k for k in range(len(ids)) if k != lost]
        return (batch.select(keep), [ids[k] for k in keep]) if keep else (None, [])

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
            batches = make_batches(data.frames, self.schedule.batch_frames, st.epoch, cfg.seed, data.weights)
            batches = batches[: len(batches) - len(batches) % self.world] if self.world > 1 else batches
            mine = batches[self.rank :: self.world]
            self.epoch_batches = len(mine)
            workers = cfg.loader_workers if cfg.loader_workers >= 0 else 2 * (self.device.type == "cuda")
            ahead = batch_loader(data, mine[st.batch :], workers, self.device.type == "cuda")
            while st.batch < len(mine) and done < n:
                items = mine[st.batch]
                loss, norm, audio = self._update(
                    next(ahead), params, [data.ids[i] for i in items], [data.speakers[i] for i in items]
                )
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


def make_trainer(
    cfg: TrainConfig,
    core: AcousticModel,
    schedule: Schedule,
    device: torch.device,
    ckpt: CheckpointDir,
    cmvn,
    hop_seconds: float,
    rank: int = 0,
    world: int = 1,
    writer: SummaryWriter | None = None,
    log: Callable[[str], None] = print,
) -> Trainer:
    """The :class:`Trainer` of ``core`` (on ``device`` already): DDP-wrapped in a job of ``world`` > 1 processes,
    the optimizer ``cfg`` names, the gradient scaler fp16 on CUDA needs (the train stage and the GPU benchmark
    both build theirs here)."""
    model = core
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return Trainer(
        cfg=cfg,
        core=core,
        model=model,
        opt=opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        schedule=schedule,
        scaler=torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and cfg.precision == "fp16"),
        device=device,
        ckpt=ckpt,
        cmvn=cmvn,
        hop_seconds=hop_seconds,
        rank=rank,
        world=world,
        writer=writer,
        log=log,
    )


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` as :func:`asr.core.fsutil.atomic_write` writes: the old file or the new one, no ``.tmp`` left
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
