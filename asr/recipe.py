"""Finding and binding recipes: ``recipes/<name>/recipe.py`` declares ``STAGES`` and ``CONFIG``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from asr.config import apply_overrides
from asr.errors import ConfigError
from asr.stages import Pipeline

REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def find(name: str) -> Path:
    """A recipe name (``fsdd``), its folder, or its ``recipe.py`` -> the ``recipe.py`` path."""
    p = Path(name)
    candidates = [p, p / "recipe.py", Path("recipes") / name / "recipe.py", REPO_RECIPES / name / "recipe.py"]
    for c in candidates:
        if c.is_file() and c.suffix == ".py":
            return c.resolve()
    known = sorted(d.name for d in REPO_RECIPES.iterdir() if (d / "recipe.py").is_file()) if REPO_RECIPES.is_dir() else []
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


def pipeline(name: str, work_dir: str | None = None, overrides: list[str] = (),
             corpus_dir: str | None = None) -> Pipeline:
    """Bind a recipe to a work directory (default ``data/<recipe>``) and its config overrides.

    ``corpus_dir`` (else ``$ASR_CORPORA``) becomes ``prepare.corpus_dir`` when the
    recipe's prepare section has that key, so the cache key names the corpus used.
    """
    module = load(name)
    config = dict(module.CONFIG)
    corpus_dir = corpus_dir or os.environ.get("ASR_CORPORA")
    sets = list(overrides)
    if corpus_dir and hasattr(config.get("prepare"), "corpus_dir"):
        sets.insert(0, f"prepare.corpus_dir={Path(corpus_dir).resolve()}")
    config = apply_overrides(config, sets)
    work = Path(work_dir) if work_dir else Path("data") / find(name).parent.name
    return Pipeline(module.STAGES, config, work)


def standard_stages(prepare, train_stage=None, decode_stage=None, score_stage=None) -> list:
    """The usual six stages: prepare -> features -> lm -> train -> decode -> score (RESULTS.md).

    Recipes pass their own ``prepare`` (and, for cross-validation, their own
    train/decode/score); every other stage is the library's.
    """
    from asr import decode, features, lm, scoring, train
    from asr.stages import Stage

    return [
        Stage(1, "prepare", prepare),
        Stage(2, "features", features.stage, inputs=("prepare",)),
        Stage(3, "lm", lm.stage, inputs=("prepare",)),
        Stage(4, "train", train_stage or train.stage, inputs=("features",)),
        Stage(5, "decode", decode_stage or decode.stage, inputs=("features", "lm", "train")),
        Stage(6, "score", score_stage or scoring.stage, inputs=("train", "decode"), exports=("RESULTS.md",)),
    ]
