"""Cross-validation folds: run the train, decode and score stages once per fold.

A fold ``F`` is a set of feature sets named ``<prefix>/F/{train,dev,test}`` (e.g.
the leave-one-speaker-out folds ``loso/<speaker>/...`` of the fsdd preparation).
Each fold gets its own subdirectory in every stage output; the score stage adds
a table of per-fold and mean WER to ``RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from asr.core.config import flatten
from asr.core.context import StageContext
from asr.core.errors import AsrError, ConfigError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import DecodeDir, ScoreDir
from asr.decode import stage as decode
from asr.features.store import FeatureStore
from asr.score import stage as scoring
from asr.train import stage as train

PREFIX = "loso"
VERSION = 1  # of the fold bookkeeping; each stage's version also carries the wrapped stage's


def _refuse_set_fields(section: str, config, fields: tuple[str, ...]) -> None:
    """The folds choose these fields; a value a user set would be silently replaced, so refuse it."""
    default = flatten(type(config)())
    given = flatten(config)
    changed = [f for f in fields if given[f] != default[f]]
    if changed:
        raise ConfigError(
            f"cross-validation chooses each fold's sets itself: {', '.join(f'{section}.{f}' for f in changed)} "
            f"cannot be set here (each fold trains on {PREFIX}/<fold>/train, tunes on "
            f"{PREFIX}/<fold>/dev and tests on {PREFIX}/<fold>/test)"
        )


def check_train(cfg) -> None:
    _refuse_set_fields("train", cfg, ("train_sets", "dev_sets"))
    train.check(cfg)


def check_decode(cfg) -> None:
    _refuse_set_fields("decode", cfg, ("sets", "tune_sets"))


def folds(features_dir: Path) -> list[str]:
    found = sorted({n.split("/")[1] for n in FeatureStore(features_dir).sets if n.startswith(f"{PREFIX}/")})
    if not found:
        raise AsrError(f"no {PREFIX}/<fold>/... feature sets in {features_dir}; add them to features.sets")
    return found


def _sub(ctx: StageContext, fold: str, config, inputs: dict, partial: bool = False) -> StageContext:
    out = ctx.out / fold
    out.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(
        ctx,
        config=config,
        out=out,
        inputs=inputs,
        partial=ctx.partial / fold if partial else None,
        log=lambda m: ctx.log(f"[{fold}] {m}"),
    )


def train_stage(ctx: StageContext) -> dict:
    """Train one model per fold (each resumable from its own checkpoints)."""
    cfg = ctx.config
    out = {}
    for fold in folds(ctx.inputs["features"]):
        c = dataclasses.replace(cfg, train_sets=(f"{PREFIX}/{fold}/train",), dev_sets=(f"{PREFIX}/{fold}/dev",))
        out[fold] = train.stage(_sub(ctx, fold, c, ctx.inputs, partial=True))
    return {"folds": out}


def decode_stage(ctx: StageContext) -> dict:
    """Decode each fold's test set with its model, tuned on its dev set."""
    out = {}
    for fold in folds(ctx.inputs["features"]):
        c = dataclasses.replace(ctx.config, sets=(f"{PREFIX}/{fold}/test",), tune_sets=(f"{PREFIX}/{fold}/dev",))
        inputs = {**ctx.inputs, "train": ctx.inputs["train"] / fold}
        out[fold] = decode.stage(_sub(ctx, fold, c, inputs))
    return {"folds": out}


def score_stage(ctx: StageContext) -> dict:
    """Score every fold and write ``RESULTS.md`` with the per-fold and mean WER."""
    rows, wers = [], []
    fold_names = sorted(p.name for p in ctx.inputs["decode"].iterdir() if DecodeDir(p).settings.is_file())
    for fold in fold_names:
        inputs = {**ctx.inputs, "decode": ctx.inputs["decode"] / fold, "train": ctx.inputs["train"] / fold}
        m = scoring.stage(_sub(ctx, fold, ctx.config, inputs))["metrics"][f"{PREFIX}/{fold}/test"]
        wers.append(m["wer"])
        ci = f" [{100 * m['wer_ci'][0]:.2f}, {100 * m['wer_ci'][1]:.2f}]" if "wer_ci" in m else ""
        rows.append(
            f"| {fold} | {m['utterances']} | {100 * m['wer']:.2f}{ci} | {100 * m['cer']:.2f} "
            f"| {100 * m['greedy_wer']:.2f} |"
        )
    mean = sum(wers) / len(wers)
    head = [
        "# Results: leave one speaker out",
        "",
        "Each fold trains on its train set, chooses the model and tunes decoding on its dev set, and is scored "
        "on its test set.",
        "",
        "| held-out speaker | utterances | WER % [95% CI] | CER % | greedy WER % |",
        "|---|---|---|---|---|",
        *rows,
        f"| **mean** | | {100 * mean:.2f} | | |",
        "",
        *scoring.pooled_lines(ctx),
        "Per-fold details:",
        "",
    ]
    details = [ScoreDir(ctx.out / f).results.read_text().split("\n", 2)[2] for f in fold_names]
    atomic_write_text(
        ScoreDir(ctx.out).results, "\n".join(head) + "\n".join(f"## {f}\n{d}" for f, d in zip(fold_names, details))
    )
    atomic_write_text(ScoreDir(ctx.out).folds, json.dumps({"wer": dict(zip(fold_names, wers)), "mean": mean}) + "\n")
    return {"fold_wer": dict(zip(fold_names, wers)), "mean_wer": mean}
