"""The training stage: CTC training of the acoustic model, resumable, reproducible, DDP-ready.

The pieces, each in its own module: the config and its :func:`~asr.train.config.plan` (how many
updates, how large the batches, the LR schedule: set by the amount of training audio,
:mod:`asr.train.config`); the data in memory and its batches (:mod:`asr.train.data`); the
:class:`~asr.train.trainer.Trainer` (updates, CTC loss, dev evaluation, checkpoints: :mod:`asr.train.trainer`);
the device and the DDP job (:mod:`asr.train.distributed`). Here: :func:`train`, which ties them
together with dev evaluation at a fixed update interval, keep-best, early stopping and averaging
of the last evaluated models, and the stage around it. Everything a resumed run needs is in
:class:`~asr.train.trainer.TrainState` and the checkpoint, which holds tensors and plain data only and is
loaded with ``weights_only=True``.

Several processes (``torchrun --nproc_per_node N -m asr.train.stage ...``) train with
DistributedDataParallel: NCCL on GPUs, Gloo on CPUs. The stage launches torchrun
itself when ``train.nproc > 1``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter

from asr.core.config import from_dict, to_dict
from asr.core.context import StageContext
from asr.core.errors import AsrError, ConfigError, TokenizerError
from asr.core.layout import CheckpointDir, TrainDir
from asr.core.procs import stop_point
from asr.features.store import FeatureStore
from asr.model.network import AcousticModel, checkpoint_dict, load_weights
from asr.text.lexicon import phone_sentence
from asr.text.stage import read_dir, transcript_lexicon
from asr.text.tokenizer import CharTokenizer, PhoneTokenizer, SubwordTokenizer
from asr.train import curves
from asr.train.config import EPOCH_PLATEAU, TrainConfig, plan
from asr.train.data import Data, Spelling, load_data
from asr.train.distributed import broadcast, pick_device, setup
from asr.train.trainer import Trainer, device_batch_frames, evaluate, make_trainer, save_atomic

__all__ = ["EPOCH_PLATEAU", "VERSION", "TrainConfig", "plan", "pick_device", "stage", "train"]  # the recipes' names

VERSION = 4  # of the train stage's output: bump when the training or the files it writes change


def _refused(cls, text: str) -> bool:
    try:
        cls.from_texts([text])
    except TokenizerError:
        return True
    return False


def check(cfg: TrainConfig) -> None:
    """Refuse, before anything runs, settings that cannot train (each override is checked alone, so those
    across fields are checked here)."""
    if cfg.inter_units and cfg.inter_units != cfg.units and not cfg.model.inter_ctc:
        raise ConfigError(
            f"train.inter_units={cfg.inter_units} is the units of the intermediate CTC layer: set "
            "train.model.inter_ctc to the RNN layer it reads (1 .. num_layers - 1)"
        )


def _tokenizer(units: str, vocab_size: int, utts: list[dict], spell: Callable[[str], str] | None):
    """The tokenizer of ``units`` over the training transcripts (spelled through ``spell``: words into phones);
    a transcript it cannot take is named."""
    texts = [spell(u["text"]) if spell else u["text"] for u in utts]
    if units not in ("char", "phone"):
        return SubwordTokenizer.train(texts, vocab_size, units)
    cls = CharTokenizer if units == "char" else PhoneTokenizer
    try:
        return cls.from_texts(texts)
    except TokenizerError as e:  # name the utterances (only on failure: one tokenizer per transcript)
        bad = [u["id"] for u, text in zip(utts, texts) if _refused(cls, text)]
        raise AsrError(
            f"{e}; it is in the transcript(s) of {bad[:5]}{' ...' if len(bad) > 5 else ''} "
            f"({len(bad)} in all): fix them in the corpus and run again"
        ) from None


def _average(paths: list[Path]) -> dict:
    """The average of saved state dicts (loaded safely: a planted file is refused)."""
    states = [load_weights(p) for p in paths]
    return {k: sum(s[k].double() for s in states).div(len(states)).to(states[0][k].dtype) for k in states[0]}


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
    dev_loss, dev_wer, dev_cer = broadcast([dev["loss"], dev["wer"], dev["cer"]], device)
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
            save_atomic(t.core.state_dict(), t.ckpt.best)
    else:
        st.bad_evals += 1
    if t.rank == 0:
        save_atomic(t.core.state_dict(), t.ckpt.snapshot(n))
        t.ckpt.snapshot(n - cfg.average_last).unlink(missing_ok=True)
    if cfg.schedule == "plateau":
        st.plateau(dev_loss, cfg.lr_patience, cfg.lr_decay)
    st.loss_sum, st.loss_n = 0.0, 0
    if cfg.early_stop and st.bad_evals >= cfg.early_stop and st.step >= cfg.min_updates:
        st.stopped = True
        log(f"train: no dev improvement in {cfg.early_stop} evaluations, stopping at update {st.step}")


@dataclass
class Run:
    """What a training run is built from (:func:`build`) and works on until :func:`finish`."""

    cfg: TrainConfig  # batch_frames resolved when it was 0 (sized to the device)
    trainer: Trainer
    store: FeatureStore
    units: Spelling  # the output layer's units
    inter: Spelling | None  # the intermediate CTC layer's, when they differ
    train_data: Data
    dev_data: Data
    too_short: list[tuple[str, int, int]]  # (utterance, frames, frames needed), train and dev
    log: Callable[[str], None]  # rank 0's log; other processes stay quiet


def _units(cfg: TrainConfig, store: FeatureStore, utts: list[dict], lexicon_dir: Path | None):
    """The output layer's units and the intermediate layer's (when they differ), over the training transcripts;
    phones spell words through the lexicon stage's pronunciations (every train and dev word must have one)."""
    lexicon = read_dir(lexicon_dir) if lexicon_dir is not None and "phone" in (cfg.units, cfg.inter_units) else None
    spell = None
    if lexicon is not None:
        dev_utts = [u for name in store.expand(cfg.dev_sets) for u in store.open(name).utts]
        transcript_lexicon(lexicon, {u["id"]: u["text"] for u in utts + dev_utts}, "train and dev transcripts")
        spell = functools.partial(phone_sentence, lexicon=lexicon)
    main_spell = spell if cfg.units == "phone" else None
    units = Spelling(_tokenizer(cfg.units, cfg.vocab_size, utts, main_spell), main_spell)
    if not cfg.inter_units or cfg.inter_units == cfg.units:
        return units, None
    if cfg.inter_units == "phone" and spell is None:
        raise AsrError(
            "train.inter_units=phone spells the transcripts in phones through a pronunciation lexicon: set "
            "lexicon.path (cmudict, or a lexicon.txt file)"
        )
    inter_spell = spell if cfg.inter_units == "phone" else None
    return units, Spelling(_tokenizer(cfg.inter_units, 0, utts, inter_spell), inter_spell)


def build(
    cfg: TrainConfig,
    features_dir: Path,
    partial: Path,
    log: Callable[[str], None],
    lexicon_dir: Path | None = None,
) -> Run:
    """Units, data, model, schedule and trainer of a run (this process's part of a DDP job), resumed from the
    checkpoint in ``partial`` when there is one."""
    rank, world, device = setup(cfg)
    torch.manual_seed(cfg.seed)
    partial.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(features_dir)
    utts = [u for name in store.expand(cfg.train_sets) for u in store.open(name).utts]
    if not utts:  # before: reported as dev characters outside the (empty) alphabet
        raise AsrError(
            f"the train sets {list(cfg.train_sets)} hold no utterances; check the prepare stage's output "
            "and train.train_sets"
        )
    units, inter = _units(cfg, store, utts, lexicon_dir)
    quiet = (lambda m: None) if rank else log
    stack = cfg.model.stack
    train_data, short = load_data(store, cfg.train_sets, units, stack, cfg.max_utterances, cfg.seed, quiet, inter)
    try:
        dev_data, dev_short = load_data(store, cfg.dev_sets, units, stack, log=quiet)
    except AsrError as e:
        raise AsrError(f"dev sets {cfg.dev_sets}: {e} (characters never seen in training)") from None
    if not train_data.items:
        raise AsrError(f"no usable training utterances in {cfg.train_sets}")
    model_cfg = replace(cfg.model, inter_vocab=len(inter.tokenizer)) if inter else cfg.model
    core = AcousticModel(store.config.dim, len(units.tokenizer), model_cfg).to(device)
    if cfg.batch_frames == 0:  # sized to the device, the same in every process
        frames = device_batch_frames(core, int(train_data.frames.max()), device, cfg.precision)
        cfg = replace(cfg, batch_frames=int(broadcast([frames], device)[0]))
    hop = store.config.hop_ms / 1000
    schedule = plan(cfg, train_data.frames, hop, world, train_data.weights)
    quiet(
        f"train: {schedule.hours:.2f} h of audio, {len(train_data.items)} utterances: {schedule.updates} updates "
        f"of {schedule.batch_frames}-frame batches ({schedule.epochs:g} epochs), "
        f"{schedule.warmup} warm-up, {cfg.schedule} LR, dev every {schedule.eval_every}"
    )
    ckpt = CheckpointDir(partial)
    writer = SummaryWriter(str(ckpt.tensorboard)) if rank == 0 else None
    t = make_trainer(cfg, core, schedule, device, ckpt, store.cmvn, hop, rank, world, writer, log)
    if t.resume():
        quiet(f"train: resuming at update {t.state.step + 1} (epoch {t.state.epoch + 1}, batch {t.state.batch})")
    return Run(cfg, t, store, units, inter, train_data, dev_data, short + dev_short, quiet)


def run_updates(run: Run) -> None:
    """The updates the schedule has left, a dev evaluation and a checkpoint after every ``eval_every``."""
    t, st, schedule = run.trainer, run.trainer.state, run.trainer.schedule
    while st.step < schedule.updates and not st.stopped:
        t0 = time.perf_counter()
        t.train_steps(
            run.train_data, min(schedule.eval_every - st.step % schedule.eval_every, schedule.updates - st.step)
        )
        st.train_seconds += time.perf_counter() - t0  # without the dev evaluation
        _evaluate_now(t, run.dev_data, run.units.tokenizer, run.log, t0)
        t.save_checkpoint()
        stop_point("train.eval")
    if t.writer is not None:
        t.writer.close()


def _choose(run: Run) -> tuple[str, dict]:
    """Load into the model the best evaluated one, or the average of the last ``average_last`` when dev says it is
    better; returns which, and its dev measures."""
    t, cfg, st = run.trainer, run.cfg, run.trainer.state
    core = t.core
    core.load_state_dict(load_weights(t.ckpt.best))
    chosen = f"best (update {st.best_update})"
    best_dev = next(h for h in st.history if h["update"] == st.best_update)
    best_dev = {"wer": best_dev["dev_wer"], "cer": best_dev["dev_cer"], "loss": best_dev["dev_loss"]}
    last = t.ckpt.snapshots()[-cfg.average_last :]
    if cfg.average_last > 1 and len(last) > 1:
        best_state = {k: v.clone() for k, v in core.state_dict().items()}
        core.load_state_dict(_average(last))
        avg = evaluate(core, run.dev_data, t.cmvn, run.units.tokenizer, cfg, t.device)
        if _selection_score(cfg, avg) <= st.best:
            at = [st.history[t.ckpt.snapshot_number(p) - 1]["update"] for p in last]
            chosen, best_dev = f"average of the models at updates {at}", avg
        else:
            core.load_state_dict(best_state)
    run.log(f"train: keeping the {chosen}: dev WER {100 * best_dev['wer']:.2f}%, CER {100 * best_dev['cer']:.2f}%")
    return chosen, best_dev


def finish(run: Run, out: Path) -> dict:
    """Choose the model (:func:`_choose`) and write ``out``'s files (the model file, history, too-short
    utterances, curves, TensorBoard logs, summary); returns the summary."""
    t, cfg, st, store = run.trainer, run.cfg, run.trainer.state, run.store
    chosen, best_dev = _choose(run)
    result = TrainDir(out)
    extra = {"train_config": to_dict(cfg), "chosen": chosen}
    if run.inter:  # what the intermediate layer's units are, for reading it (phone posteriors of a character model)
        extra["inter_tokenizer"] = run.inter.tokenizer.to_dict()
    tokenizer = run.units.tokenizer.to_dict()
    torch.save(checkpoint_dict(t.core, tokenizer, to_dict(store.config), store.cmvn.to_dict(), extra), result.model)
    result.history.write_text(json.dumps(st.history, indent=1) + "\n")
    result.too_short.write_text("".join(f"{u} {h} {n}\n" for u, h, n in run.too_short))
    curves.save_png(st.history, result.curves)
    if t.ckpt.tensorboard.is_dir():
        os.replace(t.ckpt.tensorboard, result.tensorboard)
    summary = {
        "schedule": asdict(t.schedule),
        "updates": st.step,
        "epochs": t.epochs_done,
        "evaluations": len(st.history),
        "chosen": chosen,
        "dev_wer": best_dev["wer"],
        "dev_cer": best_dev["cer"],
        "dev_loss": best_dev["loss"],
        "final_train_loss": st.history[-1]["train_loss"],
        "skipped_steps": st.skipped,
        "too_short": len(run.too_short),
        "train_utterances": len(run.train_data.items),
        "train_seconds": round(st.seconds, 1),
    }
    result.summary.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def train(
    cfg: TrainConfig,
    features_dir: Path,
    out: Path,
    partial: Path,
    log: Callable[[str], None] | None = None,
    lexicon_dir: Path | None = None,
) -> dict:
    """Train, resuming from the checkpoint in ``partial`` when there is one; write ``out``'s model file.
    With ``units="phone"`` and a pronunciation lexicon (the lexicon stage's output ``lexicon_dir``), word
    transcripts become phone targets, a word separator between words.

    Returns:
        a summary: the schedule, updates, best dev WER/CER/loss, skipped updates, too-short utterances, seconds
        (empty in the processes of a DDP job other than the first).
    """
    log = log or logging.getLogger("asr.train.stage").info
    check(cfg)  # the stage checked it before anything ran; a torchrun process or a caller may not have
    out.mkdir(parents=True, exist_ok=True)
    run = build(cfg, features_dir, partial, log, lexicon_dir)
    run_updates(run)
    summary = finish(run, out) if run.trainer.rank == 0 else {}
    if run.trainer.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def stage(ctx: StageContext) -> dict:
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
            "asr.train.stage",
            "--features",
            str(feats),
            "--out",
            str(ctx.out),
            "--partial",
            str(ctx.partial),
            "--config",
            json.dumps(to_dict(cfg)),
        ] + (["--lexicon", str(ctx.inputs["lexicon"])] if "lexicon" in ctx.inputs else [])
        ctx.log("train: " + " ".join(cmd[:6]) + " ...")
        if subprocess.run(cmd).returncode != 0:
            raise AsrError(f"distributed training failed (see the output above); checkpoints are kept in {ctx.partial}")
        return json.loads(TrainDir(ctx.out).summary.read_text())
    if ctx.threads and not cfg.threads:  # the runner's share of the cores (train.threads, when set, wins)
        torch.set_num_threads(ctx.threads)
    return train(cfg, feats, ctx.out, ctx.partial, ctx.log, ctx.inputs.get("lexicon"))


def main(argv=None) -> None:
    """Entry point for ``torchrun ... -m asr.train.stage`` (one process per GPU or CPU worker, any number of nodes)."""
    p = argparse.ArgumentParser(description="Train the acoustic model (one process of a torchrun job).")
    p.add_argument("--features", required=True, help="output directory of the features stage")
    p.add_argument("--out", required=True, help="where model.pt and the logs go")
    p.add_argument("--partial", required=True, help="checkpoint directory (shared by all processes)")
    p.add_argument("--lexicon", help="output directory of the lexicon stage (phone models of word transcripts)")
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
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # this process's own output
    try:
        train(cfg, Path(a.features), Path(a.out), Path(a.partial), lexicon_dir=Path(a.lexicon) if a.lexicon else None)
    except AsrError as e:
        print(f"asr.train.stage: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
