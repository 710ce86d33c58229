"""A model a user can ship: one file that holds everything ``asr.load_model`` needs.

The ``export`` stage adds to the train stage's model file the decoding the recipe tuned
on dev (method, beam, LM weight, word score, mixing weight), the lexicon and language
models that decoding reads (as text), the training summary and the scored results, and
copies it to ``data/<recipe>/model.pt`` beside ``RESULTS.md``. It is plain data: it loads
with ``torch.load(..., weights_only=True)``. :mod:`asr.model.onnx_export` writes the network as ONNX with
the rest in its metadata, for :mod:`asr.model.onnxrt`; :mod:`asr.model.info` is ``asr info``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.core.context import StageContext
from asr.core.errors import AsrError
from asr.core.layout import RECORD, DecodeDir, ExportDir, LmDir, TrainDir
from asr.core.provenance import git_commit
from asr.model.modelfile import OPTIONAL_LM_FILES, needed_lm_files, stored_options
from asr.model.network import read_checkpoint
from asr.search.options import DecodeOptions

_GENERAL = LmDir(Path()).general.name  # lm.general's model among an exported file's LM files

VERSION = 1  # of the export stage's output: bump when what the shipped file holds changes


@dataclass(frozen=True)
class ExportConfig:
    """The ``export`` stage's config section: nothing to choose yet (everything comes from the stages before)."""


def lm_files(options: DecodeOptions, lm_dir: Path | None) -> dict[str, str]:
    """The lm stage's files a decoding reads, by file name, as text (none for greedy and beam)."""
    names = needed_lm_files(options)
    if not names:
        return {}
    if lm_dir is None:
        raise AsrError(f"decoding {options.method!r} needs the lm stage's output, and there is none")
    paths = [Path(lm_dir) / name for name in names if name not in OPTIONAL_LM_FILES or (Path(lm_dir) / name).is_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise AsrError(f"the decoding {options.method!r} needs {', '.join(missing)}, which the lm stage did not write")
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


def bundle(model_path: Path, lm_dir: Path | None, settings: dict, results: dict, training: dict) -> dict:
    """The shipped model: the trained model file plus decoding, LM files, training summary and results."""
    ckpt = read_checkpoint(model_path)
    options = stored_options({"decoding": settings}, "the decode stage's settings")
    ckpt["decoding"] = {**dataclasses.asdict(options), "tuned_on": settings.get("tuned_on", [])}
    ckpt["lm_files"] = lm_files(options, lm_dir)
    ckpt["training"] = training
    ckpt["results"] = results
    ckpt["git_commit"] = git_commit()
    return ckpt


def stage(ctx: StageContext) -> dict:
    """The ``export`` stage: write ``model.pt`` (copied to the work directory) with the tuned decoding."""
    settings = json.loads(DecodeDir(ctx.inputs["decode"]).settings.read_text())
    results = json.loads((Path(ctx.inputs["score"]) / RECORD).read_text()).get("metrics", {})
    summary = TrainDir(ctx.inputs["train"]).summary
    training = json.loads(summary.read_text()) if summary.is_file() else {}
    ckpt = bundle(TrainDir(ctx.inputs["train"]).model, ctx.inputs.get("lm"), settings, results, training)
    out = ExportDir(ctx.out).model
    torch.save(ckpt, out)
    ctx.log(f"export: {out.name} with decoding {stored_options(ckpt).summary()}, {out.stat().st_size / 1e6:.1f} MB")
    return {"method": settings["method"], "bytes": out.stat().st_size, "lm_files": sorted(ckpt["lm_files"])}
