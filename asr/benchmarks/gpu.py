"""Benchmark: training throughput on a CUDA GPU in each precision, against the CPU in the same run.

    python -m asr.benchmarks.gpu [--recipe speechocean762] [--features DIR] [--utterances 800] [--set key=value ...]

Every setting trains the recipe's model (its ``train`` config, overrides applied) for one
pass over the same seeded subset of the training features, from the same initial weights,
through the train stage's own loop (:meth:`asr.train.Trainer.train_steps`: CMVN,
collation, autocast, gradient scaling and clipping), after one warm-up pass. The reference
is that loop on the CPU with all its cores (fp32, PyTorch's oneDNN kernels); the GPU runs
cuDNN's RNN kernels in plain fp32 (TF32 off), with TF32, and under bf16 and fp16
autocast. Throughput is audio seconds per wall second; the training loss of the pass
shows that a precision does not change what is learned.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from asr import recipe
from asr.features import FeatureStore
from asr.layout import CheckpointDir
from asr.model import AcousticModel
from asr.tokenizer import CharTokenizer
from asr.train_config import plan
from asr.train_data import load_data
from asr.trainer import Trainer, TrainState


def _pass(cfg, store, data, tokenizer, device: str, precision: str, tf32: bool, init: dict, ckpt: Path) -> dict:
    """One warm-up pass, then one timed pass, of the training loop on ``device``."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    cfg = dataclasses.replace(cfg, device=device, precision=precision, checkpoint_every=0)
    dev = torch.device(device)
    core = AcousticModel(store.config.dim, len(tokenizer), cfg.model).to(dev)
    core.load_state_dict(init)
    opt = torch.optim.Adam(core.parameters(), lr=cfg.lr)
    schedule = plan(cfg, data.frames, store.config.hop_ms / 1000)
    t = Trainer(
        cfg=cfg,
        core=core,
        model=core,
        opt=opt,
        schedule=schedule,
        scaler=torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda" and precision == "fp16"),
        device=dev,
        ckpt=CheckpointDir(ckpt),
        cmvn=store.cmvn,
        hop_seconds=store.config.hop_ms / 1000,
    )
    t.train_steps(data, schedule.batches_per_epoch)  # warm-up: cuDNN plans, allocator, oneDNN primitives
    t.state = TrainState()
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    t.train_steps(data, schedule.batches_per_epoch)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    audio = float(data.frames.sum()) * store.config.hop_ms / 1000
    return {
        "seconds": seconds,
        "throughput": audio / seconds,
        "loss": t.state.loss_sum / max(t.state.loss_n, 1),
        "memory": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="speechocean762", help="whose train config to use")
    p.add_argument("--features", help="a features stage output (default: the recipe's, data/<recipe>/features)")
    p.add_argument("--utterances", type=int, default=800, help="training utterances per pass")
    p.add_argument("--cpu-utterances", type=int, default=200, help="the CPU reference's pass (it is slower)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="train config override, e.g. train.model.hidden=384",
    )
    args = p.parse_args()
    pipe = recipe.pipeline(args.recipe, overrides=args.overrides)
    cfg = dataclasses.replace(pipe.config["train"], spec_augment=False)
    store = FeatureStore(args.features or pipe.out_dir("features"))
    texts = [u["text"] for n in store.expand(cfg.train_sets) for u in store.open(n).utts]
    tok = CharTokenizer.from_texts(texts)
    torch.manual_seed(cfg.seed)
    init = AcousticModel(store.config.dim, len(tok), cfg.model).state_dict()
    quiet = dict(seed=cfg.seed, log=lambda m: None)
    gpu_data, _ = load_data(store, cfg.train_sets, tok, cfg.model.stack, args.utterances, **quiet)
    cpu_data, _ = load_data(store, cfg.train_sets, tok, cfg.model.stack, args.cpu_utterances, **quiet)
    settings = [("cpu", "fp32", False, cpu_data)]
    if torch.cuda.is_available():
        settings += [
            ("cuda", "fp32", False, gpu_data),
            ("cuda", "fp32", True, gpu_data),
            ("cuda", "bf16", False, gpu_data),
            ("cuda", "fp16", False, gpu_data),
        ]
    m = cfg.model
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
    print(
        f"gpu: {args.recipe} train config, {m.rnn.upper()} {m.num_layers}x{m.hidden} bidirectional={m.bidirectional}, "
        f"x{m.stack} stacking, batch_frames {cfg.batch_frames}; {gpu}; CPU {torch.get_num_threads()} threads; "
        f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}"
    )
    print(
        "| device | precision | utterances | wall s | audio s / wall s | ratio to CPU | train loss of the pass "
        "| peak GPU MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ref = None
    with tempfile.TemporaryDirectory(prefix="asr-bench-gpu-") as tmp:
        for device, precision, tf32, data in settings:
            r = _pass(cfg, store, data, tok, device, precision, tf32, init, Path(tmp))
            ref = ref or r["throughput"]
            name = "fp32 + TF32" if tf32 else precision
            mem = f"{r['memory']:.0f}" if r["memory"] is not None else "-"
            print(
                f"| {device} | {name} | {len(data.items)} | {r['seconds']:.1f} | {r['throughput']:.0f} | "
                f"{r['throughput'] / ref:.1f}x | {r['loss']:.3f} | {mem} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
