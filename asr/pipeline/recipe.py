"""Finding and binding recipes: ``recipes/<name>/recipe.py`` declares ``STAGES`` and ``CONFIG``."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from asr.core.config import apply_overrides
from asr.core.context import Stage
from asr.core.errors import ConfigError
from asr.core.fsutil import check_output_folder
from asr.core.layout import MODEL, RESULTS
from asr.corpora import pool
from asr.decode import stage as decode
from asr.features import stage as features
from asr.lm import stage as lm
from asr.model import export
from asr.pipeline import crossval
from asr.pipeline.runner import Pipeline
from asr.score import stage as scoring
from asr.text import stage as pronounce
from asr.train import stage as train


def recipes_dir() -> Path:
    """The folder of the recipes that come with the package: ``recipes/`` of a checkout, or
    the installed ``asr.recipes`` package."""
    checkout = Path(__file__).resolve().parents[2] / "recipes"
    if (checkout / "__init__.py").is_file():
        return checkout
    spec = importlib.util.find_spec("asr.recipes")
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else checkout


def find(name: str) -> Path:
    """A recipe name (``fsdd``), its folder, or its ``recipe.py`` -> the ``recipe.py`` path."""
    p = Path(name)
    shipped = recipes_dir()
    candidates = [p, p / "recipe.py", Path("recipes") / name / "recipe.py", shipped / name / "recipe.py"]
    for c in candidates:
        if c.is_file() and c.suffix == ".py":
            return c.resolve()
    known = sorted(d.name for d in shipped.iterdir() if (d / "recipe.py").is_file()) if shipped.is_dir() else []
    raise ConfigError(f"no recipe {name!r}; known recipes: {known}")


def load(name: str) -> ModuleType:
    path = find(name)
    spec = importlib.util.spec_from_file_location(f"asr_recipe_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ("STAGES", "CONFIG"):
        if not hasattr(module, attr):
            raise ConfigError(f"{path} does not define {attr}")
    return module


def pipeline(
    name: str, work_dir: str | None = None, overrides: list[str] = (), corpus_dir: str | None = None
) -> Pipeline:
    """Bind a recipe to a work directory (default ``data/<recipe>``) and its config overrides.

    ``corpus_dir`` (else ``$ASR_CORPORA``) becomes ``prepare.corpus_dir`` when the
    recipe's prepare section has that key, so the cache key names the corpus used.
    """
    module = load(name)
    config = dict(module.CONFIG)
    config.setdefault("lexicon", pronounce.LexiconConfig())  # a recipe of characters needs no lexicon section
    corpus_dir = corpus_dir or os.environ.get("ASR_CORPORA")
    sets = list(overrides)
    if corpus_dir and hasattr(config.get("prepare"), "corpus_dir"):
        sets.insert(0, f"prepare.corpus_dir={Path(corpus_dir).resolve()}")
    config = apply_overrides(config, sets)
    work = (
        check_output_folder(work_dir, "--work-dir") if work_dir is not None else Path("data") / find(name).parent.name
    )
    return Pipeline(module.STAGES, config, work)


def standard_stages(prepare, prepare_version: int, prepare_data=None) -> list[Stage]:
    """The usual stages: prepare (then pooling, :mod:`asr.corpora.pool`) -> features -> lexicon -> lm -> train ->
    decode -> score (RESULTS.md) -> export (model.pt).

    Args:
        prepare: the corpus module's stage function, ``prepare_version`` its ``VERSION``.
        prepare_data: ``config -> {file: stamp}`` of the corpus files it reads (see
            :class:`asr.pipeline.runner.Stage`), so an edited transcript or replaced audio re-runs it.
    """
    return [
        Stage(
            1,
            "prepare",
            pool.pooled(prepare),
            version=prepare_version,
            data=pool.pooled_fingerprint(prepare_data),
        ),
        Stage(2, "features", features.stage, inputs=("prepare",), version=features.VERSION),
        Stage(
            3,
            "lexicon",
            pronounce.stage,
            inputs=("prepare",),
            version=pronounce.VERSION,
            data=pronounce.fingerprint,
            check=pronounce.check,
        ),
        Stage(4, "lm", lm.stage, inputs=("prepare", "lexicon"), version=lm.VERSION),
        Stage(5, "train", train.stage, inputs=("features", "lexicon"), version=train.VERSION, check=train.check),
        Stage(6, "decode", decode.stage, inputs=("features", "lexicon", "lm", "train"), version=decode.VERSION),
        Stage(
            7,
            "score",
            scoring.stage,
            inputs=("prepare", "train", "decode"),
            exports=(RESULTS,),
            version=scoring.VERSION,
        ),
        Stage(
            8,
            "export",
            export.stage,
            inputs=("train", "lm", "decode", "score"),
            exports=(MODEL,),
            version=export.VERSION,
        ),
    ]


def crossval_stages(prepare, prepare_version: int, prepare_data=None) -> list[Stage]:
    """:func:`standard_stages` with train, decode and score run once per fold (:mod:`asr.pipeline.crossval`), and no
    export: a fold's model is not the one to ship."""
    stages = [s for s in standard_stages(prepare, prepare_version, prepare_data) if s.name != "export"]
    fold = {
        "train": (crossval.train_stage, train.VERSION, crossval.check_train),
        "decode": (crossval.decode_stage, decode.VERSION, crossval.check_decode),
        "score": (crossval.score_stage, scoring.VERSION, None),
    }
    return [
        dataclasses.replace(
            s, run=fold[s.name][0], version=f"{fold[s.name][1]}+cv{crossval.VERSION}", check=fold[s.name][2]
        )
        if s.name in fold
        else s
        for s in stages
    ]
