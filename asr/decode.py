"""Decoding CTC posteriors: greedy best path, and flashlight beam search (lexicon-free, or
lexicon-constrained with word n-gram shallow fusion) through torchaudio's ``ctc_decoder``.

The decode stage tunes the LM weight and word-insertion score on dev by a small
grid, saves the chosen values, decodes the test sets over ``--nj`` processes, and
reports the real-time factor.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from asr.errors import AsrError
from asr.fsutil import atomic_write_text
from asr.model import pad
from asr.tokenizer import CharTokenizer


def greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: ``(B, T, V)``.
        lengths: ``(B,)`` valid frames per item.
    Returns:
        one list of unit ids per item.
    """
    return [[u for u, _ in greedy_frames(lp[:n], blank)] for lp, n in zip(log_probs, lengths.tolist())]


def greedy_frames(log_probs: torch.Tensor, blank: int = 0) -> list[tuple[int, int]]:
    """``(T, V)`` -> ``[(unit, first frame)]`` of the best path."""
    best = log_probs.argmax(dim=-1).tolist()
    out, prev = [], blank
    for t, u in enumerate(best):
        if u != prev and u != blank:
            out.append((u, t))
        prev = u
    return out


@dataclass(frozen=True)
class DecodeConfig:
    """The ``decode`` stage's config section."""

    sets: tuple[str, ...] = ("test",)  # feature sets to decode and report
    tune_sets: tuple[str, ...] = ("dev",)  # sets the LM weight / word score grid is tuned on
    method: Literal["greedy", "beam", "lexicon", "lexicon_lm"] = "lexicon_lm"
    beam_size: int = 16
    beam_threshold: float = 25.0
    lm_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # grid searched on tune_sets
    word_scores: tuple[float, ...] = (-1.0, 0.0, 1.0)
    batch_frames: int = 40_000  # frames per forward batch

    def __post_init__(self):
        if not self.lm_weights or not self.word_scores:
            raise ValueError("lm_weights and word_scores need at least one value each")


# --- beam search --------------------------------------------------------------------------------


def write_lexicon(words: list[str], path: Path) -> None:
    """flashlight lexicon: ``word w o r d |`` (spelled with our character units, ending in the separator)."""
    atomic_write_text(path, "".join(f"{w} {' '.join(w)} |\n" for w in words))


class BeamSearch:
    """torchaudio's flashlight CTC beam search with our units, lexicon and n-gram LM.

    Args:
        units: the tokenizer's units (blank first, then the word separator ``|``).
        method: ``beam`` (lexicon-free, no LM), ``lexicon`` (words from the lexicon only),
            ``lexicon_lm`` (lexicon + word n-gram shallow fusion).
        lm_dir: folder with ``lexicon.txt``, ``words.txt`` and ``lm.arpa`` (the lm stage's output).
    """

    def __init__(self, units: list[str], method: str, lm_dir: Path | None = None, beam_size: int = 16,
                 beam_threshold: float = 25.0, lm_weight: float = 1.0, word_score: float = 0.0):
        from torchaudio.models.decoder import ctc_decoder

        from asr.lm import DecoderLM, NgramLM

        lexicon, lm, lm_dict = None, None, None
        if method in ("lexicon", "lexicon_lm"):
            if lm_dir is None:
                raise AsrError(f"decoding method {method!r} needs a lexicon (the lm stage's output or --lm)")
            lexicon = str(lm_dir / "lexicon.txt")
            lm_dict = str(lm_dir / "words.txt")
            if method == "lexicon_lm":
                words = (lm_dir / "words.txt").read_text().split()
                lm = DecoderLM(NgramLM.read_arpa(lm_dir / "lm.arpa"), words)
        elif method != "beam":
            raise AsrError(f"unknown beam method {method!r}")
        self.method = method
        self.decoder = ctc_decoder(lexicon=lexicon, tokens=list(units), lm=lm, lm_dict=lm_dict, nbest=1,
                                   beam_size=beam_size, beam_threshold=beam_threshold,
                                   lm_weight=lm_weight if lm else 0.0, word_score=word_score,
                                   blank_token=units[0], sil_token="|", unk_word="<unk>",
                                   log_add=False)
        self.units = units

    def __call__(self, log_probs: torch.Tensor) -> tuple[str, list[tuple[str, int, int]]]:
        """``(T, V)`` -> text and ``[(word, first frame, last frame)]``."""
        # flashlight's lexicon search completes a word only on a word separator, and our
        # transcripts have none at the end: append one certain separator frame, so the last
        # word is completed at no cost instead of at the price of a spurious "|"
        sep = torch.full((1, log_probs.shape[1]), -1e4)
        sep[0, 1] = 0.0
        emissions = torch.cat([log_probs.float().cpu(), sep])[None].contiguous()
        hyp = self.decoder(emissions, torch.tensor([emissions.shape[1]]))[0]
        if not hyp:
            return "", []
        best = hyp[0]
        # with a lexicon, the units spell exactly the lexicon words the decoder chose
        return words_with_frames(best.tokens.tolist(), best.timesteps.tolist(), self.units)


def words_with_frames(tokens: list[int], frames: list[int], units: list[str]) -> tuple[str, list[tuple[str, int, int]]]:
    """Group decoded units into words with the frame of their first and last unit."""
    spans, cur, start, end = [], "", 0, 0
    for u, t in zip(tokens, frames):
        sym = units[u]
        if u == 0:
            continue
        if sym == "|":
            if cur:
                spans.append((cur, start, end))
            cur = ""
            continue
        if not cur:
            start = t
        cur, end = cur + sym, t
    if cur:
        spans.append((cur, start, end))
    return " ".join(w for w, _, _ in spans), spans


# --- decoding feature sets, in worker processes -----------------------------------------------------

_W: dict = {}


def _init(model_path: str, features_dir: str, lm_dir: str | None, cfg: DecodeConfig) -> None:
    """Load the model once per process; one thread each, the parallelism is across shards."""
    from asr.features import FeatureStore
    from asr.model import build_from_checkpoint, read_checkpoint

    torch.set_num_threads(1)
    ckpt = read_checkpoint(model_path)
    _W.update(model=build_from_checkpoint(ckpt), tokenizer=CharTokenizer.from_dict(ckpt["tokenizer"]),
              store=FeatureStore(features_dir), lm_dir=Path(lm_dir) if lm_dir else None, cfg=cfg, decoders={}, sets={})


def _decoder(method: str, lm_weight: float, word_score: float) -> BeamSearch:
    key = (method, lm_weight, word_score)
    if key not in _W["decoders"]:
        cfg = _W["cfg"]
        _W["decoders"][key] = BeamSearch(_W["tokenizer"].units, method, _W["lm_dir"], cfg.beam_size, cfg.beam_threshold,
                                         lm_weight, word_score)
    return _W["decoders"][key]


@torch.inference_mode()
def _decode_shard(task: tuple[str, list[int], list[tuple[float, float]]]) -> dict:
    """Emissions of a shard, then greedy and every ``(lm_weight, word_score)`` beam setting."""
    from asr.train import make_batches

    name, indices, grid = task
    store, model, cfg = _W["store"], _W["model"], _W["cfg"]
    fs = _W["sets"].setdefault(name, store.open(name))
    frames = np.array([fs.utts[i]["frames"] for i in indices])
    out = {"greedy": {}, **{g: {} for g in grid}}
    for batch in make_batches(frames, cfg.batch_frames, 0, 0):
        x, lengths = pad([store.cmvn(fs[indices[k]], fs.utts[indices[k]]["speaker"]) for k in batch])
        log_probs, out_lengths = model(x, lengths)
        for j, k in enumerate(batch):
            uid = fs.utts[indices[k]]["id"]
            lp = log_probs[j, : int(out_lengths[j])]
            out["greedy"][uid] = _W["tokenizer"].decode(u for u, _ in greedy_frames(lp))
            for g in grid:
                if cfg.method != "greedy":
                    out[g][uid] = _decoder(cfg.method, *g)(lp)[0]
    return out


def decode_sets(model_path: Path, features_dir: Path, lm_dir: Path | None, cfg: DecodeConfig, names: list[str],
                grid: list[tuple[float, float]], nj: int = 1) -> dict[str, dict]:
    """Decode feature sets with every grid setting; returns ``{set: {"greedy"|(w, s): {id: text}, "seconds"}}``."""
    from asr.features import FeatureStore

    store = FeatureStore(features_dir)
    sizes = {n: len(store.open(n)) for n in names}
    results = {}
    args = (str(model_path), str(features_dir), str(lm_dir) if lm_dir else None, cfg)
    pool = mp.get_context("fork").Pool(nj, initializer=_init, initargs=args) if nj > 1 else None
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


def stage(ctx) -> dict:
    """The ``decode`` stage: tune on dev, decode test sets, write ``<set>/{hyp,greedy,ref}.txt``."""
    import jiwer

    from asr.features import FeatureStore
    from asr.scoring import write_text

    cfg: DecodeConfig = ctx.config
    model_path = ctx.inputs["train"] / "model.pt"
    lm_dir = ctx.inputs.get("lm")
    store = FeatureStore(ctx.inputs["features"])
    test_sets, tune_sets = store.expand(cfg.sets), store.expand(cfg.tune_sets)
    uses_lm = cfg.method == "lexicon_lm"
    grid = list(itertools.product(cfg.lm_weights if uses_lm else (0.0,), cfg.word_scores))
    if cfg.method in ("greedy", "beam"):
        grid = [(0.0, 0.0)]
    refs = {n: {u["id"]: u["text"] for u in store.open(n).utts} for n in {*tune_sets, *test_sets}}

    chosen, tuning, greedy_dev = grid[0], [], None
    if len(grid) > 1 and tune_sets:
        dev = decode_sets(model_path, ctx.inputs["features"], lm_dir, cfg, tune_sets, grid, ctx.nj)
        ids = [(n, u) for n in tune_sets for u in sorted(refs[n])]
        r = [refs[n][u] for n, u in ids]
        for g in grid:
            tuning.append({"lm_weight": g[0], "word_score": g[1],
                           "dev_wer": jiwer.wer(r, [dev[n][g].get(u, "") for n, u in ids])})
        greedy_dev = jiwer.wer(r, [dev[n]["greedy"].get(u, "") for n, u in ids])
        best = min(tuning, key=lambda t: (t["dev_wer"], t["lm_weight"], abs(t["word_score"])))
        chosen = (best["lm_weight"], best["word_score"])
        ctx.log(f"decode: tuned on {tune_sets}: lm_weight {chosen[0]}, word_score {chosen[1]} "
                f"(dev WER {100 * best['dev_wer']:.2f}%)")
    key = "greedy" if cfg.method == "greedy" else chosen
    results = decode_sets(model_path, ctx.inputs["features"], lm_dir, cfg, test_sets, [chosen], ctx.nj)
    rtf = {}
    for name in test_sets:
        audio = sum(u["duration"] for u in store.open(name).utts)
        rtf[name] = results[name]["seconds"] / max(audio, 1e-9)
        d = ctx.out / name
        d.mkdir(parents=True, exist_ok=True)
        write_text(d / "hyp.txt", results[name][key])
        write_text(d / "greedy.txt", results[name]["greedy"])
        write_text(d / "ref.txt", refs[name])
        atomic_write_text(d / "utt2spk", "".join(f"{u['id']} {u['speaker']}\n" for u in store.open(name).utts))
        ctx.log(f"decode {name}: RTF {rtf[name]:.4f} with nj={ctx.nj}")
    settings = {"method": cfg.method, "beam_size": cfg.beam_size, "lm_weight": chosen[0], "word_score": chosen[1],
                "tuned_on": tune_sets, "greedy_dev_wer": greedy_dev, "grid": tuning, "rtf": rtf, "nj": ctx.nj}
    atomic_write_text(ctx.out / "settings.json", json.dumps(settings, indent=1) + "\n")
    return {"rtf": rtf, "settings": {k: v for k, v in settings.items() if k not in ("grid", "rtf", "nj")},
            "nj": ctx.nj}
