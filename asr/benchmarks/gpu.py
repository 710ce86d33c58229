"""Benchmark: training throughput on a CUDA GPU, by batch size, RNN path and precision, against the CPU in
the same run.

    python -m asr.benchmarks.gpu [--models speechocean762,librispeech] [--hours 2] [--cpu-hours 0.05]

For each recipe's model (its ``train`` config: layers, width, stacking, units) every setting trains one
pass over the same seeded utterances, from the same initial weights, through the train stage's own loop
(:meth:`asr.train.trainer.Trainer.train_steps`: the DataLoader's worker processes building batches with pinned
memory, CMVN, SpecAugment on the model's device, autocast, clipping), after a warm-up pass. The utterances
are synthetic, lengths drawn like LibriSpeech's (normal around train-960's mean, 960.9 h / 281,241
utterances = 12.3 s, sd 3.5 s, clipped to 1-35 s), random features and labels (14 units a second), so no
corpus needs to be on the GPU machine.

Settings: the recipe's batch size (``train.batch_frames``, as the recipe trains) and larger frame
budgets up to 400,000 or the largest batch that fits in the GPU's memory (the probe that
``train.batch_frames=0`` uses, :func:`asr.train.trainer.probe_batch_frames`); packed sequences (cuDNN's packed RNN,
the default on CUDA) against the padded batch run one direction at a time (the CPU's path); fp32 (cuDNN's default
TF32) against bf16 autocast. Each recipe's model as it trains: the speechocean762 model's intermediate CTC
layer splits its packed RNN into two cuDNN calls. The reference is the same loop on the CPU with all its
cores. Reported: audio seconds per wall second, the ratio to the CPU, GPU utilisation (``nvidia-smi`` sampled
every 100 ms over the timed pass), peak GPU memory, and the projected time of one pass over LibriSpeech's 960
hours at that throughput. The train loss of the pass shows that a setting does not change what is learned.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr.core.ctc import ctc_min_frames
from asr.core.layout import CheckpointDir
from asr.features.frontend import Cmvn
from asr.model.network import AcousticModel
from asr.pipeline import recipe
from asr.train.config import plan
from asr.train.data import Data
from asr.train.trainer import GPU_MEMORY_SHARE, TrainState, make_trainer, probe_batch_frames

LIBRISPEECH_HOURS = 960.9
LIBRISPEECH_MEAN_S = LIBRISPEECH_HOURS * 3600 / 281_241  # train-960: 12.3 s an utterance
UNITS_PER_SECOND = 14  # characters (with spaces) of read English; phones are a few fewer


class SyntheticSet:
    """A feature set look-alike: utterance ``i`` is a slice of one random pool (reading it costs a copy, as
    ``pread`` of a stored set does)."""

    def __init__(self, frames: np.ndarray, dim: int, seed: int):
        rng = np.random.default_rng(seed)
        self.pool = rng.standard_normal((int(frames.max()) * 4, dim), dtype=np.float32)
        self.frames = frames
        self.starts = rng.integers(0, len(self.pool) - frames + 1)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.pool[self.starts[i] : self.starts[i] + self.frames[i]]


def synthetic_data(hours: float, dim: int, units: int, stack: int, hop_s: float, seed: int = 0) -> Data:
    """About ``hours`` of LibriSpeech-like utterances with random features and labels (CTC-feasible)."""
    rng = np.random.default_rng(seed)
    n = max(1, round(hours * 3600 / LIBRISPEECH_MEAN_S))
    seconds = np.clip(rng.normal(LIBRISPEECH_MEAN_S, 3.5, n), 1.0, 35.0)
    frames = np.maximum(1, np.round(seconds / hop_s)).astype(np.int64)
    labels = []
    for s, f in zip(seconds, frames):
        lab = rng.integers(1, units, max(1, round(s * UNITS_PER_SECOND))).tolist()
        while ctc_min_frames(lab) > math.ceil(f / stack):
            lab = lab[:-1]
        labels.append(lab or [1])
    ids = [f"synthetic-{i}" for i in range(n)]
    return Data([SyntheticSet(frames, dim, seed)], [(0, i) for i in range(n)], labels, frames, ids, ["s"] * n, ids)


class GpuUtilisation:
    """``nvidia-smi``'s GPU utilisation sampled every 100 ms while in the ``with`` block; ``mean`` is ``None``
    where there is no ``nvidia-smi``."""

    def __enter__(self):
        self.proc = None
        if shutil.which("nvidia-smi") and torch.cuda.is_available():
            cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
            cmd += ["-i", str(torch.cuda.current_device())]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        self.mean = None
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate()
            values = [float(v) for v in out.split() if v.strip().replace(".", "", 1).isdigit()]
            self.mean = sum(values) / len(values) if values else None


def run_pass(cfg, data: Data, dim: int, units: int, init: dict, setting: dict, hop_s: float, ckpt: Path) -> dict:
    """One warm-up pass, then one timed pass, of the training loop in ``setting`` (device, precision,
    batch_frames, packed)."""
    cfg = dataclasses.replace(
        cfg,
        device=setting["device"],
        precision=setting["precision"],
        batch_frames=setting["batch_frames"],
        checkpoint_every=0,
        min_batches=1,
    )
    dev = torch.device(cfg.device)
    core = AcousticModel(dim, units, cfg.model).to(dev)
    core.load_state_dict(init)
    core.pack = setting.get("packed")
    schedule = plan(cfg, data.frames, hop_s)
    cmvn = Cmvn("global", np.zeros(dim), np.ones(dim))
    t = make_trainer(cfg, core, schedule, dev, CheckpointDir(ckpt), cmvn, hop_s, log=lambda m: None)
    t.train_steps(data, schedule.batches_per_epoch)  # warm-up: cuDNN plans, the allocator, oneDNN primitives
    t.state = TrainState()
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with GpuUtilisation() as util:
        t0 = time.perf_counter()
        t.train_steps(data, schedule.batches_per_epoch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    audio = float(data.frames.sum()) * hop_s
    return {
        "seconds": seconds,
        "throughput": audio / seconds,
        "loss": t.state.loss_sum / max(t.state.loss_n, 1),
        "memory": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
        "utilisation": util.mean if dev.type == "cuda" else None,
        "batches": schedule.batches_per_epoch,
    }


def settings_for(cfg, probed: int | None) -> list[dict]:
    """The CPU reference, then the GPU's settings (none without CUDA): frame budgets from the recipe's up to
    400,000 that fit (``probed``), packed fp32 at each; padded and bf16 at the two largest."""
    rows = [dict(device="cpu", precision="fp32", batch_frames=cfg.batch_frames, packed=None)]
    if probed is None:
        return rows
    budgets = sorted({cfg.batch_frames, *(b for b in (50_000, 100_000, 200_000, 400_000) if b <= probed)})
    for b in budgets:
        rows.append(dict(device="cuda", precision="fp32", batch_frames=b, packed=True))
    for b in budgets[-2:]:
        rows.append(dict(device="cuda", precision="fp32", batch_frames=b, packed=False))
        rows.append(dict(device="cuda", precision="bf16", batch_frames=b, packed=True))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="speechocean762,librispeech", help="recipes whose train config to use")
    p.add_argument("--hours", type=float, default=2.0, help="audio per GPU pass")
    p.add_argument("--cpu-hours", type=float, default=0.05, help="audio of the CPU reference's pass (it is slower)")
    p.add_argument(
        "--memory-share", type=float, default=GPU_MEMORY_SHARE, help="of the GPU's memory the largest batch may use"
    )
    args = p.parse_args()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
    print(
        f"gpu: {gpu}; CPU {torch.get_num_threads()} threads; torch {torch.__version__}, "
        f"cuDNN {torch.backends.cudnn.version()}; synthetic LibriSpeech-like utterances"
    )
    print(
        "| model | device | RNN path | precision | batch frames | batches | audio s / wall s | ratio to CPU "
        "| GPU util % | peak GPU MiB | one pass over 960 h | train loss |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        pipe = recipe.pipeline(name)
        cfg = dataclasses.replace(pipe.config["train"], max_utterances=0)
        fcfg = pipe.config["features"]
        hop_s, dim, m = fcfg.hop_ms / 1000, fcfg.dim, cfg.model
        units = 42 if cfg.units == "phone" else 30 if cfg.units == "char" else cfg.vocab_size  # with the blank
        torch.manual_seed(cfg.seed)
        init = AcousticModel(dim, units, m).state_dict()
        probed = None
        if torch.cuda.is_available():
            probe = AcousticModel(dim, units, m).cuda()
            longest = int(round(35.0 / hop_s))
            probed = probe_batch_frames(probe, longest, torch.device("cuda"), args.memory_share)
            del probe
            torch.cuda.empty_cache()
        label = f"{name} ({m.rnn.upper()} {m.num_layers} x {m.hidden}, x{m.stack})"
        if probed is not None:
            share = f"{args.memory_share:.0%}"
            print(f"{label}: the largest batch of 35 s utterances in {share} of the GPU: {probed:,} frames")
        ref = None
        data_on = {"cpu": synthetic_data(args.cpu_hours, dim, units, m.stack, hop_s)}  # the same for every setting
        if probed is not None:
            data_on["cuda"] = synthetic_data(args.hours, dim, units, m.stack, hop_s)
        with tempfile.TemporaryDirectory(prefix="asr-bench-gpu-") as tmp:
            for setting in settings_for(cfg, probed):
                data = data_on[setting["device"]]
                r = run_pass(cfg, data, dim, units, init, setting, hop_s, Path(tmp))
                ref = ref or r["throughput"]
                path = "padded" if setting["device"] == "cpu" or setting["packed"] is False else "packed"
                util = f"{r['utilisation']:.0f}" if r["utilisation"] is not None else "-"
                mem = f"{r['memory']:.0f}" if r["memory"] is not None else "-"
                hours = LIBRISPEECH_HOURS * 3600 / r["throughput"] / 3600
                print(
                    f"| {label} | {setting['device']} | {path} | {setting['precision']} | "
                    f"{setting['batch_frames']:,} | {r['batches']} | {r['throughput']:,.0f} | "
                    f"{r['throughput'] / ref:.1f}x | {util} | {mem} | {hours:.2f} h | {r['loss']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
