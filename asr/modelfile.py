"""What a model file holds, without torch: its required entries, the decoding it carries, its LM files.

A model file is a dict of plain data (the network config, tokenizer units, feature config,
CMVN statistics) plus the weights: ``torch.save``d as ``model.pt`` (weights as tensors,
loaded with ``weights_only=True``), or as an ONNX graph whose metadata holds the rest
(:mod:`asr.onnxrt`). An exported file (the recipes' ``export`` stage) adds the decoding
tuned on dev, the lexicon and LM files that decoding reads, the training summary, the
scored results and the git commit. Both kinds are read through the checks here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from asr.errors import AsrError
from asr.search import DecodeOptions

FORMAT_VERSION = 1
# what a model file must hold, with the type of each entry (the weights are checked by whoever loads them)
REQUIRED = {"model": dict, "input_dim": int, "tokenizer": dict, "features": dict, "cmvn": dict}


def check(d: object, source: str) -> dict:
    """``d`` if it is a model file's dict of our format.

    Raises:
        AsrError: not a model file, a newer format, or missing entries (names ``source``).
    """
    if not isinstance(d, dict) or d.get("format") != FORMAT_VERSION:
        raise AsrError(f"{source}: not an asr model file of format {FORMAT_VERSION}")
    bad = [k for k, kind in REQUIRED.items() if not isinstance(d.get(k), kind)]
    if bad or not isinstance(d["tokenizer"].get("units"), list):
        raise AsrError(f"{source}: the model file lacks {bad or ['tokenizer units']} (damaged, or not written by "
                       "`asr run`); retrain or use another model file")
    return d


def stored_options(d: dict, source: str = "model file") -> DecodeOptions | None:
    """The decoding a model file carries, or ``None`` (a file from before the export stage)."""
    stored = d.get("decoding")
    if not stored:
        return None
    fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    try:
        return DecodeOptions(**{k: v for k, v in stored.items() if k in fields})
    except (TypeError, ValueError) as e:
        raise AsrError(f"{source}: bad decoding settings in the model file ({e})") from None


_SAID: set[str] = set()


def decoding(d: dict, lm: str | Path | None, overrides: dict, source: str = "model file") -> DecodeOptions:
    """The decoding to use: the file's tuned one with ``overrides`` (fields of :class:`DecodeOptions`).

    Another ``method`` than the stored one starts from that method's defaults. A file without a
    tuned decoding decodes with lexicon + LM beam search when ``lm`` is given, else greedily, and
    says so once per file.

    Raises:
        AsrError: unknown fields or bad values.
    """
    fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise AsrError(f"unknown decoding option(s) {unknown}; options: {sorted(fields)}")
    stored = stored_options(d, source)
    same_method = stored is not None and overrides.get("method", stored.method) == stored.method
    chosen = {**(dataclasses.asdict(stored) if same_method else {}), **overrides}
    if "method" not in chosen:
        chosen["method"] = "lexicon_lm" if lm else "greedy"
        if not lm and source not in _SAID:
            _SAID.add(source)
            print(f"asr: {source} holds no tuned decoding (a train-stage model file), so it decodes greedily; "
                  "the recipe's export stage writes data/<recipe>/model.pt with the decoding tuned on dev",
                  file=sys.stderr)
    try:
        return DecodeOptions(**chosen)
    except ValueError as e:
        raise AsrError(f"decoding options: {e}") from None


@contextlib.contextmanager
def lm_folder(d: dict) -> Iterator[Path | None]:
    """The file's embedded LM files as an lm stage folder for the decoder to read, removed afterwards;
    ``None`` when it embeds none."""
    files = d.get("lm_files") or {}
    if not files:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="asr-model-lm-") as tmp:
        for name, text in files.items():
            if not isinstance(text, str) or Path(name).name != name or name.startswith("."):
                raise AsrError(f"the model file's embedded LM file {name!r} is not a plain file name with text; "
                               "the file is damaged")
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        yield Path(tmp)
