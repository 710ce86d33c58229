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
from typing import NamedTuple

import jiwer
import torch

from asr.core.context import StageContext
from asr.core.ctc import greedy_frames
from asr.core.fsutil import atomic_write_text
from asr.core.layout import DecodeDir, LmDir, ReportDir, TrainDir
from asr.core.procs import fork_pool
from asr.core.textfiles import read_lines, write_text
from asr.data.manifest import utterance_groups
from asr.features.store import FeatureStore
from asr.model.network import Network, load
from asr.search.beam import BeamSearch, searcher
from asr.search.options import DecodeOptions
from asr.text.lexicon import Lexicon
from asr.text.stage import read_dir
from asr.text.tokenizer import WORD_SEP

VERSION = 8  # of the decode stage's output: bump when the decoding or the files it writes change


class Setting(NamedTuple):
    """One point of the grid tuned on dev: the search's weights (a key of the results, across processes)."""

    lm_weight: float = 0.0
    word_score: float = 0.0
    mix_weight: float = 1.0

    def options(self, search: DecodeOptions) -> DecodeOptions:
        """``search`` with these weights."""
        return dataclasses.replace(search, **self._asdict())


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

    def grid(self) -> list[Setting]:
        """The settings tuned on dev."""
        if self.search.method in ("greedy", "beam"):
            return [Setting()]
        mixes = self.mix_weights if self.search.method == "lexicon_lm" else (1.0,)
        weights = self.lm_weights if self.search.uses_lm else (0.0,)
        return [Setting(*g) for g in itertools.product(weights, self.word_scores, mixes)]


# --- decoding feature sets, in worker processes -----------------------------------------------------

_W: dict = {}


def _init(model_path: str, features_dir: str, lm_dir: str | None, cfg: DecodeConfig) -> None:
    """Load the model once per process; one thread each, the parallelism is across shards."""
    torch.set_num_threads(1)
    model = load(model_path)
    _W.update(
        network=Network(model, "cpu"),
        tokenizer=model.tokenizer,
        store=FeatureStore(features_dir),
        lm_dir=lm_dir,
        cfg=cfg,
        decoders={},
        sets={},
    )


def _decoder(setting: Setting) -> BeamSearch:
    if setting not in _W["decoders"]:
        _W["decoders"][setting] = searcher(_W["tokenizer"], setting.options(_W["cfg"].search), _W["lm_dir"])
    return _W["decoders"][setting]


def _decode_shard(task: tuple[str, list[int], list[Setting]]) -> dict:
    """Emissions of a shard, then greedy and every beam setting of the grid.

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
                out[g][uid] = _decoder(g)(lp).text
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
    grid: list[Setting],
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


def _tune(ctx: StageContext, cfg: DecodeConfig, sets: list[str], refs: dict, greedy_refs: dict | None):
    """Every setting of the grid on the tune sets; returns the best (fewest dev errors, then the smallest
    weights), each setting's dev WER, and greedy decoding's."""
    grid = cfg.grid()
    if len(grid) == 1 or not sets:
        return grid[0], [], None
    model, lm_dir = TrainDir(ctx.inputs["train"]).model, ctx.inputs.get("lm")
    dev = decode_sets(model, ctx.inputs["features"], lm_dir, cfg, sets, grid, ctx.nj)
    ids = [(n, u) for n in sets for u in sorted(refs[n])]
    r = [refs[n][u] for n, u in ids]
    tuning = [{**g._asdict(), "dev_wer": jiwer.wer(r, [dev[n][g].get(u, "") for n, u in ids])} for g in grid]
    greedy_r = [greedy_refs[n][u] for n, u in ids] if greedy_refs else r
    greedy_dev = jiwer.wer(greedy_r, [dev[n]["greedy"].get(u, "") for n, u in ids])
    best = min(tuning, key=lambda t: (t["dev_wer"], t["lm_weight"], abs(t["word_score"]), -t["mix_weight"]))
    chosen = Setting(best["lm_weight"], best["word_score"], best["mix_weight"])
    ctx.log(
        f"decode: tuned on {sets}: lm_weight {chosen.lm_weight}, word_score {chosen.word_score}, "
        f"mix_weight {chosen.mix_weight} (dev WER {100 * best['dev_wer']:.2f}%)"
    )
    return chosen, tuning, greedy_dev


def _greedy_refs(ctx: StageContext, refs: dict) -> dict | None:
    """A phone model of word transcripts (spelled through a lexicon; one-word transcripts too, whose phones need no
    separator): its greedy output is phones, scored against the references' phones. Not a character model trained
    with a lexicon for its intermediate layer (train.inter_units=phone). ``None``: greedy output is words."""
    lexicon = read_dir(ctx.inputs["lexicon"]) if "lexicon" in ctx.inputs else None  # None: the stage wrote none
    if lexicon is None or not load(TrainDir(ctx.inputs["train"]).model).is_phone_model:
        return None
    return {n: {u: _phones(t, lexicon) for u, t in r.items()} for n, r in refs.items()}


def _write_set(d: ReportDir, hyps: dict, greedy: dict, refs: dict, greedy_refs: dict | None, utts: list[dict]):
    """One test set's files: hypotheses (tuned and greedy), references, speakers, audio, utterance groups."""
    write_text(d.hyp, hyps)
    write_text(d.greedy, greedy)
    write_text(d.ref, refs)
    if greedy_refs:
        write_text(d.greedy_ref, greedy_refs)
    write_text(d.utt2spk, {u["id"]: u["speaker"] for u in utts})
    write_text(d.audio, {u["id"]: u["audio"] for u in utts})
    groups = utterance_groups(utts)
    if groups:
        atomic_write_text(d.groups, json.dumps(groups, ensure_ascii=False) + "\n")


def stage(ctx: StageContext) -> dict:
    """The ``decode`` stage: tune on dev, decode test sets, write a :class:`asr.core.layout.ReportDir` per set."""
    cfg: DecodeConfig = ctx.config
    lm_dir = ctx.inputs.get("lm")
    store = FeatureStore(ctx.inputs["features"])
    test_sets, tune_sets = store.expand(cfg.sets), store.expand(cfg.tune_sets)
    refs = {n: {u["id"]: u["text"] for u in store.open(n).utts} for n in {*tune_sets, *test_sets}}
    greedy_refs = _greedy_refs(ctx, refs)
    chosen, tuning, greedy_dev = _tune(ctx, cfg, tune_sets, refs, greedy_refs)
    key = "greedy" if cfg.search.method == "greedy" else chosen
    model_path = TrainDir(ctx.inputs["train"]).model
    results = decode_sets(model_path, ctx.inputs["features"], lm_dir, cfg, test_sets, [chosen], ctx.nj)
    rtf, oov = {}, {}
    known = oov_words(lm_dir)
    for name in test_sets:
        utts = store.open(name).utts
        rtf[name] = results[name]["seconds"] / max(sum(u["duration"] for u in utts), 1e-9)
        if known is not None:
            running = [w for text in refs[name].values() for w in text.split()]
            oov[name] = sum(w not in known for w in running) / max(len(running), 1)
        greedy_ref = greedy_refs[name] if greedy_refs else None
        d = DecodeDir(ctx.out).set(name)
        _write_set(d, results[name][key], results[name]["greedy"], refs[name], greedy_ref, utts)
        ctx.log(f"decode {name}: RTF {rtf[name]:.4f} with nj={ctx.nj}")
    settings = {
        # every field: one added to DecodeOptions is recorded without a change here
        **dataclasses.asdict(chosen.options(cfg.search)),
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
