"""Benchmark: training throughput of the train stage against a plain reference loop.

    python -m asr.benchmarks.train [--corpus-dir DIR] [--utterances 1000] [--epochs 3]

Both train the recipe's default model (BiLSTM, same layers, units and dropout) on the
same FSDD features for the same number of epochs, then report greedy dev WER; neither
uses speed perturbation or SpecAugment, which the recipe adds on top.
Ours: frame stacking x3, frame-bounded length-grouped batches, and on CPU the RNN run one
direction at a time over the padded batch (PyTorch's oneDNN LSTM kernel), the reverse
direction fed each utterance reversed within its own length.
Reference: no stacking, padded batches of 16 in random order, no packing, no
bucketing. Throughput is audio seconds per wall second of training (ours
excludes its per-epoch dev evaluation, as the reference has none). The RNN's effective FLOP rate is set
against one large float32 matmul on the same machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from asr.core.layout import TrainDir
from asr.features.store import FeatureStore
from asr.model.network import AcousticModel
from asr.pipeline import recipe
from asr.text.tokenizer import CharTokenizer
from asr.train.data import Spelling, collate, load_data
from asr.train.stage import TrainConfig, train
from asr.train.trainer import evaluate


def matmul_peak_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def rnn_train_flops(cfg: TrainConfig, input_dim: int, steps: int) -> float:
    """Multiply-adds x2 of the LSTM/GRU over ``steps`` time steps, x3 for forward + backward."""
    m = cfg.model
    gates = 4 if m.rnn == "lstm" else 3
    dirs = 2 if m.bidirectional else 1
    total, inp = 0, input_dim * m.stack
    for _ in range(m.num_layers):
        total += dirs * 2 * gates * m.hidden * (inp + m.hidden)
        inp = m.hidden * dirs
    return 3.0 * total * steps


def _unstacked(cfg: TrainConfig) -> TrainConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, stack=1))


def reference_loop(cfg: TrainConfig, store: FeatureStore, epochs: int, seed: int = 0) -> dict:
    """The plain loop: padded batches of 16, random order, no stacking, no packing."""
    torch.manual_seed(seed)
    texts = [u["text"] for n in store.expand(cfg.train_sets) for u in store.open(n).utts]
    tok = CharTokenizer.from_texts(texts)
    data, _ = load_data(store, cfg.train_sets, Spelling(tok), 1, cfg.max_utterances, cfg.seed, log=lambda m: None)
    dev, _ = load_data(store, cfg.dev_sets, Spelling(tok), 1, log=lambda m: None)
    model = AcousticModel(store.config.dim, len(tok), dataclasses.replace(cfg.model, stack=1))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(seed)
    audio, t0 = 0.0, time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(data.items))
        for k in range(0, len(order), 16):
            b = collate(data, order[k : k + 16].tolist(), store.cmvn, torch.device("cpu"))
            h, _ = model.rnn(b.feats)  # the padded batch straight through the RNN
            log_probs = model.output(model.dropout(h)).log_softmax(-1)
            loss = F.ctc_loss(log_probs.transpose(0, 1), b.targets, b.lengths, b.target_lengths, zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            audio += float(b.lengths.sum()) * store.config.hop_ms / 1000
    seconds = time.perf_counter() - t0
    steps = int(data.frames.sum()) * epochs
    res = evaluate(model, dev, store.cmvn, tok, _unstacked(cfg), torch.device("cpu"))
    return {"seconds": seconds, "audio": audio, "dev_wer": res["wer"], "steps": steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir")
    p.add_argument("--work-dir", default=None, help="fsdd work dir whose features to use (default: a temporary one)")
    p.add_argument("--utterances", type=int, default=1600, help="training subset size")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsdd config override for our side, e.g. train.batch_frames=12000",
    )
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="asr-bench-train-")
    work = args.work_dir or tmp
    overrides = ["features.speed_perturb=", *args.overrides]  # the loop's speed, not the augmentation's
    pipe = recipe.pipeline("fsdd", work, [o for o in overrides if not o.startswith("train.")], args.corpus_dir)
    train_cfg = recipe.pipeline("fsdd", work, overrides, args.corpus_dir).config["train"]
    pipe.run(stop_stage="features", log=lambda m: None)
    store = FeatureStore(pipe.out_dir("features"))
    cfg = dataclasses.replace(
        train_cfg,
        epochs=args.epochs,
        max_utterances=args.utterances,
        spec_augment=False,
        early_stop=0,
        average_last=1,
        checkpoint_every=0,
    )
    threads = torch.get_num_threads()
    peak = matmul_peak_gflops()

    data, _ = load_data(
        store,
        cfg.train_sets,
        Spelling(CharTokenizer.from_texts(u["text"] for n in store.expand(cfg.train_sets) for u in store.open(n).utts)),
        cfg.model.stack,
        cfg.max_utterances,
        cfg.seed,
        log=lambda m: None,
    )
    audio_per_epoch = float(data.frames.sum()) * store.config.hop_ms / 1000
    summary = train(cfg, store.root, Path(tmp) / "ours", Path(tmp) / "ours_partial", log=lambda m: None)
    history = json.loads(TrainDir(Path(tmp) / "ours").history.read_text())
    ours_s = history[-1]["train_seconds"]  # training only; the per-epoch dev evaluation is left out
    ours_steps = int(np.ceil(data.frames / cfg.model.stack).sum()) * args.epochs
    ref = reference_loop(cfg, store, args.epochs)

    ours_tp = audio_per_epoch * args.epochs / ours_s
    ref_tp = ref["audio"] / ref["seconds"]
    ours_gf = rnn_train_flops(cfg, store.config.dim, ours_steps) / ours_s / 1e9
    ref_gf = rnn_train_flops(_unstacked(cfg), store.config.dim, ref["steps"]) / ref["seconds"] / 1e9
    print(
        f"train: FSDD features, {len(data.items)} utterances ({audio_per_epoch:.0f} s of audio), {args.epochs} epochs, "
        f"{cfg.model.rnn.upper()} {cfg.model.num_layers}x{cfg.model.hidden} bidirectional={cfg.model.bidirectional}, "
        f"{threads} CPU threads; matmul peak {peak:.1f} GFLOP/s"
    )
    print("| loop | wall s | audio s / wall s | ratio | dev WER (greedy) | RNN GFLOP/s | share of matmul peak |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| reference (batches of 16, random order, no stacking) | {ref['seconds']:.1f} | {ref_tp:.0f} | 1.0x | "
        f"{100 * ref['dev_wer']:.2f}% | {ref_gf:.1f} | {100 * ref_gf / peak:.0f}% |"
    )
    print(
        f"| ours (x{cfg.model.stack} stacking, length-grouped, oneDNN kernel per direction) "
        f"| {ours_s:.1f} | {ours_tp:.0f} | "
        f"{ours_tp / ref_tp:.1f}x | {100 * summary['dev_wer']:.2f}% | {ours_gf:.1f} | {100 * ours_gf / peak:.0f}% |"
    )


if __name__ == "__main__":
    main()
