"""The decode stage: the network over stored features, then the searches of :mod:`asr.search.beam`.

It tunes the LM weight, word-insertion score and mixing weight on dev by a small grid,
saves the chosen values, decodes the test sets over ``--nj`` processes, and reports the
real-time factor and the OOV rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer
import torch

from asr.core.context import StageContext
from asr.core.ctc import greedy_frames
from asr.core.fsutil import atomic_write_text
from asr.core.layout import DecodeDir, LmDir, TrainDir
from asr.core.procs import fork_pool
from asr.core.textfiles import read_lines, write_text
from asr.data.manifest import utterance_groups
from asr.features.stage import FeatureStore
from asr.model.network import Network, read_checkpoint
from asr.search.beam import BeamSearch
from asr.search.options import DecodeOptions
from asr.text.lexicon import Lexicon
from asr.text.stage import read_dir
from asr.text.tokenizer import WORD_SEP, PhoneTokenizer, tokenizer_from_dict

VERSION = 8  # of the decode stage's output: bump when the decoding or the files it writes change


@dataclass(frozen=True)
class DecodeConfig:
    """The ``decode`` stage's config section."""

    sets: tuple[str, ...] = ("test",)  # feature sets to decode and report
    tune_sets: tuple[str, ...] = ("dev",)  # sets the LM weight / word score grid is tuned on
    search: DecodeOptions = DecodeOptions()  # its lm_weight, word_score and mix_weight are replaced by the tuned ones
    lm_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # grid searched on tune_sets
    word_scores: tuple[float, ...] = (-1.0, 0.0, 1.0)
    mix_weights: tuple[float, ...] = (1.0,)  # with lm.extra_words: e.g. 0.5,0.9 (1: the in-domain n-gram alone)

    def __post_init__(self):
        if not self.lm_weights or not self.word_scores or not self.mix_weights:
            raise ValueError("lm_weights, word_scores and mix_weights need at least one value each")
        if not all(math.isfinite(x) for x in (*self.lm_weights, *self.word_scores, *self.mix_weights)):
            raise ValueError("lm_weights, word_scores and mix_weights must be finite numbers")

    def grid(self) -> list[tuple[float, float, float]]:
        """The ``(lm_weight, word_score, mix_weight)`` settings tuned on dev."""
        if self.search.method in ("greedy", "beam"):
            return [(0.0, 0.0, 1.0)]
        mixes = self.mix_weights if self.search.method == "lexicon_lm" else (1.0,)
        weights = self.lm_weights if self.search.uses_lm else (0.0,)
        return list(itertools.product(weights, self.word_scores, mixes))


# --- decoding feature sets, in worker processes -----------------------------------------------------

_W: dict = {}


def _init(model_path: str, features_dir: str, lm_dir: str | None, cfg: DecodeConfig) -> None:
    """Load the model once per process; one thread each, the parallelism is across shards."""
    torch.set_num_threads(1)
    ckpt = read_checkpoint(model_path)
    _W.update(
        network=Network(ckpt, "cpu", model_path),
        tokenizer=tokenizer_from_dict(ckpt["tokenizer"]),
        store=FeatureStore(features_dir),
        lm_dir=lm_dir,
        cfg=cfg,
        decoders={},
        sets={},
    )


def _decoder(lm_weight: float, word_score: float, mix_weight: float) -> BeamSearch:
    key = (lm_weight, word_score, mix_weight)
    if key not in _W["decoders"]:
        options = dataclasses.replace(
            _W["cfg"].search, lm_weight=lm_weight, word_score=word_score, mix_weight=mix_weight
        )
        _W["decoders"][key] = BeamSearch(_W["tokenizer"], options, _W["lm_dir"])
    return _W["decoders"][key]


def _decode_shard(task: tuple[str, list[int], list[tuple[float, float]]]) -> dict:
    """Emissions of a shard, then greedy and every ``(lm_weight, word_score, mix_weight)`` beam setting.

    The network runs on one utterance at a time, as :class:`asr.recognize.recognizer.Recognizer` runs it, so
    ``asr evaluate`` with the exported model reproduces the reported WER (a padded batch rounds
    differently and could flip a near-tie).
    """
    name, indices, grid = task
    store, network, cfg = _W["store"], _W["network"], _W["cfg"]
    fs = _W["sets"].setdefault(name, store.open(name))
    out = {"greedy": {}, **{g: {} for g in grid}}
    for i in indices:
        lp = network(store.cmvn(fs[i], fs.utts[i]["speaker"]))
        uid = fs.utts[i]["id"]
        out["greedy"][uid] = _unseparated(_W["tokenizer"].decode(u for u, _ in greedy_frames(lp)))
        for g in grid:
            if cfg.search.method != "greedy":
                out[g][uid] = _decoder(*g)(lp).text
    return out


def _phones(text: str, lexicon: Lexicon) -> str:
    """A reference in phones (each word's first pronunciation), no separators: what greedy output is scored
    against. (A word without a pronunciation, possible only with a lexicon in phones the G2P does not speak, is
    left out.)"""
    return " ".join(p for w in text.split() if w in lexicon for p in lexicon.prons[w][0])


def _unseparated(text: str) -> str:
    """Phones without the word separators (a character model's text has none)."""
    return " ".join(p for p in text.split() if p != WORD_SEP)


def oov_words(lm_dir: Path | None) -> set[str] | None:
    """The lexicon's words (the lm stage's word list), against which a set's OOV rate is counted."""
    if lm_dir is None or not LmDir(Path(lm_dir)).words.is_file():
        return None
    return {w for _, w in read_lines(LmDir(Path(lm_dir)).words)}


def decode_sets(
    model_path: Path,
    features_dir: Path,
    lm_dir: Path | None,
    cfg: DecodeConfig,
    names: list[str],
    grid: list[tuple[float, float, float]],
    nj: int = 1,
) -> dict[str, dict]:
    """Decode feature sets with every grid setting; returns ``{set: {"greedy"|setting: {id: text}, "seconds"}}``."""
    store = FeatureStore(features_dir)
    sizes = {n: len(store.open(n)) for n in names}
    results = {}
    args = (str(model_path), str(features_dir), str(lm_dir) if lm_dir else None, cfg)
    pool = fork_pool(nj, _init, args) if nj > 1 else None
    if pool is None:
        _init(*args)
    try:
        for name in names:
            shards = [(name, list(range(k, sizes[name], nj)), grid) for k in range(nj)]
            t0 = time.perf_counter()
            parts = pool.map(_decode_shard, shards) if pool else [_decode_shard(s) for s in shards]
            merged: dict = {}
            for p in parts:
                for k, v in p.items():
                    merged.setdefault(k, {}).update(v)
            merged["seconds"] = time.perf_counter() - t0
            results[name] = merged
    finally:
        if pool:
            pool.terminate()
    return results


def stage(ctx: StageContext) -> dict:
    """The ``decode`` stage: tune on dev, decode test sets, write a :class:`asr.core.layout.ReportDir` per set."""
    cfg: DecodeConfig = ctx.config
    model_path = TrainDir(ctx.inputs["train"]).model
    lm_dir = ctx.inputs.get("lm")
    store = FeatureStore(ctx.inputs["features"])
    test_sets, tune_sets = store.expand(cfg.sets), store.expand(cfg.tune_sets)
    method = cfg.search.method
    grid = cfg.grid()
    refs = {n: {u["id"]: u["text"] for u in store.open(n).utts} for n in {*tune_sets, *test_sets}}
    # a phone model of word transcripts (spelled through a lexicon; one-word transcripts too, whose phones need no
    # separator): its greedy output is phones, scored against the references' phones. Not a character model
    # trained with a lexicon for its intermediate layer (train.inter_units=phone)
    greedy_refs = None
    lexicon = read_dir(ctx.inputs["lexicon"]) if "lexicon" in ctx.inputs else None
    if lexicon is not None and isinstance(
        tokenizer_from_dict(read_checkpoint(model_path)["tokenizer"]), PhoneTokenizer
    ):
        greedy_refs = {n: {u: _phones(t, lexicon) for u, t in r.items()} for n, r in refs.items()}

    chosen, tuning, greedy_dev = grid[0], [], None
    if len(grid) > 1 and tune_sets:
        dev = decode_sets(model_path, ctx.inputs["features"], lm_dir, cfg, tune_sets, grid, ctx.nj)
        ids = [(n, u) for n in tune_sets for u in sorted(refs[n])]
        r = [refs[n][u] for n, u in ids]
        for g in grid:
            tuning.append(
                {
                    "lm_weight": g[0],
                    "word_score": g[1],
                    "mix_weight": g[2],
                    "dev_wer": jiwer.wer(r, [dev[n][g].get(u, "") for n, u in ids]),
                }
            )
        greedy_r = [greedy_refs[n][u] for n, u in ids] if greedy_refs else r
        greedy_dev = jiwer.wer(greedy_r, [dev[n]["greedy"].get(u, "") for n, u in ids])
        best = min(tuning, key=lambda t: (t["dev_wer"], t["lm_weight"], abs(t["word_score"]), -t["mix_weight"]))
        chosen = (best["lm_weight"], best["word_score"], best["mix_weight"])
        ctx.log(
            f"decode: tuned on {tune_sets}: lm_weight {chosen[0]}, word_score {chosen[1]}, mix_weight {chosen[2]} "
            f"(dev WER {100 * best['dev_wer']:.2f}%)"
        )
    key = "greedy" if method == "greedy" else chosen
    results = decode_sets(model_path, ctx.inputs["features"], lm_dir, cfg, test_sets, [chosen], ctx.nj)
    rtf, oov = {}, {}
    known = oov_words(lm_dir)
    for name in test_sets:
        audio = sum(u["duration"] for u in store.open(name).utts)
        rtf[name] = results[name]["seconds"] / max(audio, 1e-9)
        if known is not None:
            running = [w for text in refs[name].values() for w in text.split()]
            oov[name] = sum(w not in known for w in running) / max(len(running), 1)
        d = DecodeDir(ctx.out).set(name)
        write_text(d.hyp, results[name][key])
        write_text(d.greedy, results[name]["greedy"])
        write_text(d.ref, refs[name])
        if greedy_refs:
            write_text(d.greedy_ref, greedy_refs[name])
        write_text(d.utt2spk, {u["id"]: u["speaker"] for u in store.open(name).utts})
        write_text(d.audio, {u["id"]: u["audio"] for u in store.open(name).utts})
        groups = utterance_groups(store.open(name).utts)
        if groups:
            atomic_write_text(d.groups, json.dumps(groups, ensure_ascii=False) + "\n")
        ctx.log(f"decode {name}: RTF {rtf[name]:.4f} with nj={ctx.nj}")
    tuned = dataclasses.replace(cfg.search, lm_weight=chosen[0], word_score=chosen[1], mix_weight=chosen[2])
    settings = {
        **dataclasses.asdict(tuned),  # every field: one added to DecodeOptions is recorded without a change here
        "tuned_on": tune_sets,
        "greedy_dev_wer": greedy_dev,
        "grid": tuning,
        "rtf": rtf,
        "oov": oov,
        "nj": ctx.nj,
    }
    atomic_write_text(DecodeDir(ctx.out).settings, json.dumps(settings, indent=1) + "\n")
    return {
        "rtf": rtf,
        "oov": oov,
        "settings": {k: v for k, v in settings.items() if k not in ("grid", "rtf", "oov", "nj")},
        "nj": ctx.nj,
    }
