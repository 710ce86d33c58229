"""Bring-your-own-data: train/dev/test sets given as Kaldi data directories or JSONL manifests.

Each set becomes ``<split>/<name>.jsonl`` in the prepare output (``name`` is the
folder or file name), so the generic stages address them as ``train/*``,
``dev/*`` and ``test/*``. Every entry is validated; the alphabet is learned from
the training text, and dev/test text holding characters outside it is reported
by utterance id (such characters could never be recognised).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import ConfigError, ManifestError
from asr.data.manifest import check, data_fingerprint, load_data, write_manifest
from asr.text.tokenizer import CharTokenizer

VERSION = 1  # of the prepare stage's output: bump when the manifests it writes change


@dataclass(frozen=True)
class CustomConfig(corpora.Pooling):
    """The ``prepare`` section of the custom recipe: paths of the user's sets."""

    train: tuple[str, ...] = ()  # Kaldi data directories or .jsonl manifests
    dev: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


def fingerprint(cfg: CustomConfig) -> dict[str, str]:
    """Every listing file of the sets (hashed) and every audio file they name (size, modification time)."""
    out: dict[str, str] = {}
    for path in (*cfg.train, *cfg.dev, *cfg.test):
        p = Path(path)
        out.update(data_fingerprint(p) if p.exists() else {str(p): "missing"})
    return out


def _name(path: str) -> str:
    p = Path(path)
    return p.stem if p.suffix == ".jsonl" else p.name


def stage(ctx: StageContext) -> dict:
    cfg: CustomConfig = ctx.config
    for split in ("train", "dev", "test"):
        if not getattr(cfg, split):
            raise ConfigError(
                f"the custom recipe needs {split} data: --set prepare.{split}=PATH[,PATH...] "
                "(a Kaldi data directory or a .jsonl manifest)"
            )
    sets = {split: {_name(p): load_data(p) for p in getattr(cfg, split)} for split in ("train", "dev", "test")}
    for split, named in sets.items():
        if len(named) != len(getattr(cfg, split)):
            raise ConfigError(f"prepare.{split}: two sets share a name; give them distinct folder or file names")
    alphabet = CharTokenizer.from_texts(u.text for utts in sets["train"].values() for u in utts).alphabet
    counts, problems = {}, []
    for split, named in sets.items():
        for name, utts in named.items():
            try:
                check(utts, f"{split}/{name}", alphabet=alphabet)
            except ManifestError as e:
                problems += [(f"{split}/{name} {uid}", why) for uid, why in e.problems]
                continue
            write_manifest(ctx.out / split / f"{name}.jsonl", utts)
            counts[f"{split}/{name}"] = len(utts)
    if problems:
        raise ManifestError("custom data", problems)
    return {"counts": counts, "alphabet": "".join(sorted(alphabet))}
