"""The train stage's config and its plan: how many updates, how large the batches and the LR schedule,
all set by the amount of training audio (:func:`plan`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from asr.data.batching import make_batches
from asr.model.config import ModelConfig

CPU_BATCH_FRAMES = 20_000  # the default batch, and train.batch_frames=0's on a CPU


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage's config section."""

    train_sets: tuple[str, ...] = ("train",)  # feature sets to train on
    dev_sets: tuple[str, ...] = ("dev",)  # feature sets for LR decay, early stopping, model choice
    max_utterances: int = 0  # 0: all; else a seeded random subset of the training sets (quick runs)
    model: ModelConfig = ModelConfig()  # the network (train.model.hidden=128, ...)
    # characters; sentencepiece subwords (bpe, unigram) of vocab_size units; or phone: word transcripts spelled in
    # phones through the lexicon stage's dictionary (lexicon.path), else each space-separated token is a unit (TIMIT)
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
    # padded frames per batch (batch size x longest utterance); 0: sized to the device (on CUDA the largest that
    # fits in 80% of its memory, at most 100,000 frames; on a CPU 20,000: asr.train.trainer.device_batch_frames) ...
    batch_frames: int = CPU_BATCH_FRAMES
    min_batches: int = 10  # ... smaller for a small corpus, so that an epoch has at least this many batches
    # the learning rate: linear warm-up, then held and multiplied by lr_decay when the dev loss has not improved
    # for more than lr_patience evaluations ("plateau", as torch's ReduceLROnPlateau), or cosine decay to
    # lr x final_lr ("cosine"). Plateau with warm-up was best on the fsdd recipe, short and full (the measured
    # WERs: docs/training.md); the warm-up keeps CTC out of its blank plateau
    schedule: Literal["cosine", "plateau"] = "plateau"
    warmup: float = 0.05  # share of the updates with the LR rising linearly from 0
    final_lr: float = 0.02
    lr_decay: float = 0.5
    lr_patience: int = 1
    # dev evaluations over the run, at a fixed update interval; 0: once an epoch (on fsdd, more frequent
    # evaluations did no better: docs/training.md)
    evaluations: int = 0
    early_stop: int = 0  # stop after this many evaluations without dev improvement (0: never); not before min_updates
    average_last: int = 3  # also try the average of the last N evaluated models; keep it if dev is no worse
    # what keep-best, averaging and early stopping compare (then dev loss): greedy dev CER by default, since
    # the WER stays at or above 100% until CTC leaves its all-blank plateau, so choosing by WER can stop a run
    # whose CER is still falling (it did on speechocean762)
    select_on: Literal["cer", "wer", "loss"] = "cer"
    # augmentation
    spec_augment: bool = False
    # share of the updates trained clean before SpecAugment starts: from the start, it can keep a large BiLSTM in
    # CTC's blank plateau for tens of epochs (it did on speechocean762: docs/recipes/speechocean762.md)
    spec_augment_from: float = 0.0
    freq_mask: int = 5
    n_freq_masks: int = 2
    time_mask: int = 20
    n_time_masks: int = 2
    # weight noise (Graves et al. 2013 trained TIMIT's BiLSTM-CTC with it, std 0.075): each update's gradient is
    # taken at the weights plus Gaussian noise of this std (0: none), from this share of the updates on
    weight_noise: float = 0.0
    weight_noise_from: float = 0.0
    # the intermediate CTC loss's share of the loss, for a model with one (model.inter_ctc): (1 - w) top + w middle
    inter_ctc_weight: float = 0.3
    # that layer's units: "" the model's own (InterCTC); or char / phone (multi-task CTC: phones at a middle layer
    # under characters on top, Sanabria & Metze 2018; or characters under phones), the targets spelled through
    # the lexicon stage's pronunciations for phones. The model file keeps that head, unused by decoding
    inter_units: Literal["", "char", "phone"] = ""
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
        if self.batch_frames < 0 or self.lr <= 0 or self.evaluations < 0 or self.min_batches < 1:
            raise ValueError("lr and min_batches must be positive, batch_frames and evaluations >= 0")
        if min(self.updates, self.epochs, self.min_updates) < 0 or not 0 <= self.warmup < 1:
            raise ValueError("updates, epochs and min_updates must be >= 0, warmup in [0, 1)")
        if not 0 < self.inter_ctc_weight < 1:
            raise ValueError(f"inter_ctc_weight is a share in (0, 1), got {self.inter_ctc_weight}")
        if self.weight_noise < 0 or not 0 <= self.weight_noise_from <= 1:
            raise ValueError(
                f"weight_noise must be >= 0 and weight_noise_from in [0, 1], got {self.weight_noise}, "
                f"{self.weight_noise_from}"
            )


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
    weight_noise_from: int = 0  # update

    def lr_factor(self, step: int, cfg: TrainConfig) -> float:
        """The LR multiplier for update ``step`` (0-based), before any plateau decay."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if cfg.schedule == "plateau":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.updates - self.warmup))
        return cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def plan(
    cfg: TrainConfig, frames: np.ndarray, hop_seconds: float, world: int = 1, weights: np.ndarray | None = None
) -> Schedule:
    """The run's length, batch size, warm-up and evaluation interval, from the training data.

    The number of updates grows with the square root of the training audio
    (``updates_per_sqrt_hour``): 400 (``min_updates``) for a few minutes, about 1,500 for
    2.4 hours, 10,000 for 100 hours (about 11 epochs at 20,000-frame batches), so a small corpus
    gets many passes and a large one few. Batches shrink on a small corpus so that an epoch has
    ``min_batches``. ``updates`` or ``epochs`` set the length directly.
    """
    total = int(frames.sum())
    batch_frames = max(int(frames.max(initial=1)), min(cfg.batch_frames or CPU_BATCH_FRAMES, total // cfg.min_batches))
    per_epoch = max(1, len(make_batches(frames, batch_frames, 0, cfg.seed, weights)) // world)
    hours = total * hop_seconds / 3600
    if cfg.updates:
        updates = cfg.updates
    elif cfg.epochs:
        # each epoch's own batches: after the first (sorted by length), lengths are jittered, which packs
        # them less tightly (on speechocean762 550 batches, then about 590: epochs x 550 stopped at 7.5 of 8)
        updates = sum(len(make_batches(frames, batch_frames, e, cfg.seed, weights)) // world for e in range(cfg.epochs))
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
        weight_noise_from=round(cfg.weight_noise_from * updates),
    )


# --- data ---------------------------------------------------------------------------------------
