"""Decoding CTC posteriors: greedy best path, and flashlight beam search (lexicon-free, or
lexicon-constrained with word n-gram shallow fusion) through torchaudio's ``ctc_decoder``.

:class:`DecodeOptions` is the one description of a decoder, shared by the decode stage,
the recognizer (``asr.load_model``) and the CLI. The decode stage tunes the LM weight
and word-insertion score on dev by a small grid, saves the chosen values, decodes the
test sets over ``--nj`` processes, and reports the real-time factor.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jiwer
import numpy as np
import torch
from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState, ctc_decoder

from asr.batching import make_batches, pad
from asr.ctc import greedy_frames
from asr.errors import AsrError
from asr.features import FeatureStore
from asr.fsutil import atomic_write_text
from asr.layout import DecodeDir, LmDir, TrainDir
from asr.lm import BOS, EOS, MixedLM, NgramLM, read_unigrams, write_lm_dir
from asr.manifest import read_lines, write_text
from asr.model import build_from_checkpoint, read_checkpoint
from asr.procs import fork_pool
from asr.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_dict

VERSION = 2  # of the decode stage's output: bump when the decoding or the files it writes change
# beam: lexicon-free, no LM; beam_lm: lexicon-free with the unit n-gram (open vocabulary);
# lexicon: words of the lexicon only; lexicon_lm: lexicon + word n-gram
METHODS = ("greedy", "beam", "beam_lm", "lexicon", "lexicon_lm")


@dataclass(frozen=True)
class DecodeOptions:
    """How posteriors become text; the decode stage, ``asr.load_model`` and the CLI share it."""

    method: Literal["greedy", "beam", "beam_lm", "lexicon", "lexicon_lm"] = "lexicon_lm"  # see METHODS
    beam_size: int = 16  # hypotheses kept per frame
    beam_threshold: float = 25.0  # drop hypotheses this far (log score) below the best
    lm_weight: float = 1.0  # weight of the n-gram (beam_lm: over units; lexicon_lm: over words)
    word_score: float = 0.0  # bonus per word (insertion penalty when negative)
    mix_weight: float = 1.0  # lexicon_lm: weight of the in-domain n-gram against the large word list (1: none)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {list(METHODS)}")
        if not 0.0 <= self.mix_weight <= 1.0:
            raise ValueError(f"mix_weight must be in [0, 1], got {self.mix_weight}")
        if self.beam_size < 1 or self.beam_threshold <= 0:
            raise ValueError("beam_size must be >= 1 and beam_threshold > 0")

    @property
    def needs_lexicon(self) -> bool:
        return self.method in ("lexicon", "lexicon_lm")

    @property
    def uses_lm(self) -> bool:
        return self.method in ("beam_lm", "lexicon_lm")


@dataclass(frozen=True)
class DecodeConfig:
    """The ``decode`` stage's config section."""

    sets: tuple[str, ...] = ("test",)  # feature sets to decode and report
    tune_sets: tuple[str, ...] = ("dev",)  # sets the LM weight / word score grid is tuned on
    search: DecodeOptions = DecodeOptions()  # its lm_weight, word_score and mix_weight are replaced by the tuned ones
    lm_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # grid searched on tune_sets
    word_scores: tuple[float, ...] = (-1.0, 0.0, 1.0)
    mix_weights: tuple[float, ...] = (1.0,)  # with lm.extra_words: e.g. 0.5,0.9 (1: the in-domain n-gram alone)
    batch_frames: int = 40_000  # frames per forward batch

    def __post_init__(self):
        if not self.lm_weights or not self.word_scores or not self.mix_weights:
            raise ValueError("lm_weights, word_scores and mix_weights need at least one value each")

    def grid(self) -> list[tuple[float, float, float]]:
        """The ``(lm_weight, word_score, mix_weight)`` settings tuned on dev."""
        if self.search.method in ("greedy", "beam"):
            return [(0.0, 0.0, 1.0)]
        mixes = self.mix_weights if self.search.method == "lexicon_lm" else (1.0,)
        weights = self.lm_weights if self.search.uses_lm else (0.0,)
        return list(itertools.product(weights, self.word_scores, mixes))


# --- beam search --------------------------------------------------------------------------------


class DecoderLM(CTCDecoderLM):
    """Shallow fusion of an :class:`asr.lm.NgramLM` in torchaudio's flashlight beam search.

    Scores are natural-log probabilities (the decoder's unit); ``words[i]`` is the
    word of the decoder's LM index ``i`` (the order of the ``lm_dict`` file).
    """

    def __init__(self, lm: NgramLM | MixedLM, words: list[str]):
        CTCDecoderLM.__init__(self)
        self.lm, self.words = lm, words
        self.context: dict[CTCDecoderLMState, tuple[str, ...]] = {}
        self.cache: dict[tuple, float] = {}

    def _score(self, word: str, history: tuple[str, ...]) -> float:
        key = (*history, word)
        if key not in self.cache:
            self.cache[key] = self.lm.logprob(word, history) * math.log(10)
        return self.cache[key]

    def start(self, start_with_nothing: bool = False) -> CTCDecoderLMState:
        state = CTCDecoderLMState()
        self.context = {state: (BOS,)}
        return state

    def score(self, state: CTCDecoderLMState, usr_token_idx: int) -> tuple[CTCDecoderLMState, float]:
        history = self.context[state]
        word = self.words[usr_token_idx]
        child = state.child(usr_token_idx)
        if child not in self.context:
            self.context[child] = (*history, word)[-(self.lm.order - 1):] if self.lm.order > 1 else ()
        return child, self._score(word, history)

    def finish(self, state: CTCDecoderLMState) -> tuple[CTCDecoderLMState, float]:
        return state, self._score(EOS, self.context[state])


class BeamSearch:
    """torchaudio's flashlight CTC beam search with our units, lexicon and n-gram LM.

    Args:
        tokenizer: the model's units (characters, or subwords: lexicon-free methods only).
        options: the method (``beam``, ``beam_lm``, ``lexicon``, ``lexicon_lm``) and its settings.
        lm: for the lexicon methods, the lm stage's output folder or a word ARPA file (its
            lexicon is then written to a temporary folder, removed once the decoder has read it);
            for ``beam_lm``, the lm stage's output folder (its ``tokens.arpa``) or a unit ARPA file.
    Raises:
        AsrError: a method that needs ``lm`` without it, or an ``lm`` that is neither.
    """

    def __init__(self, tokenizer: Tokenizer, options: DecodeOptions, lm: str | Path | None = None):
        if options.method == "greedy":
            raise AsrError("BeamSearch is for the beam methods; greedy decoding needs no search")
        if not isinstance(tokenizer, CharTokenizer) and options.method != "beam":
            raise AsrError(f"decoding method {options.method!r} needs character units; a model with subword "
                           "units decodes with greedy or beam (lexicon-free, no LM) for now")
        units = tokenizer.units
        if (options.needs_lexicon or options.uses_lm) and lm is None:
            what = "a lexicon" if options.needs_lexicon else "a unit n-gram"
            raise AsrError(f"decoding method {options.method!r} needs {what} (the lm stage's output or --lm)")
        self.options, self.tokenizer = options, tokenizer
        with tempfile.TemporaryDirectory(prefix="asr-lexicon-") as tmp:
            lexicon = lm_dict = fusion = None
            if options.method == "beam_lm":
                fusion = DecoderLM(self._token_lm(Path(lm)), list(units))  # scored per unit
            if options.needs_lexicon:
                d, ngram = self._lexicon(Path(lm), Path(tmp))
                lexicon, lm_dict = str(d.lexicon), str(d.words)
                if options.method == "lexicon_lm":
                    ngram = ngram or NgramLM.read_arpa(d.arpa)
                    if options.mix_weight < 1.0 and d.unigrams.is_file():
                        ngram = MixedLM(ngram, read_unigrams(d.unigrams), options.mix_weight)
                    fusion = DecoderLM(ngram, [w for _, w in read_lines(d.words)])
            self.decoder = ctc_decoder(lexicon=lexicon, tokens=list(units), lm=fusion, lm_dict=lm_dict, nbest=1,
                                       beam_size=options.beam_size, beam_threshold=options.beam_threshold,
                                       lm_weight=options.lm_weight if fusion else 0.0,
                                       word_score=options.word_score, blank_token=units[0],
                                       sil_token=tokenizer.separator,
                                       # lexicon-free, a word ends at a separator: its bonus is the word score
                                       sil_score=0.0 if options.needs_lexicon else options.word_score,
                                       unk_word="<unk>", log_add=False)

    @staticmethod
    def _token_lm(lm: Path) -> NgramLM:
        if lm.is_dir():
            if not LmDir(lm).tokens_arpa.is_file():
                raise AsrError(f"{lm}: no {LmDir(lm).tokens_arpa.name}; the lm stage writes it with "
                               "lm.token_order > 0")
            return NgramLM.read_arpa(LmDir(lm).tokens_arpa)
        return NgramLM.read_arpa(lm)

    @staticmethod
    def _lexicon(lm: Path, tmp: Path) -> tuple[LmDir, NgramLM | None]:
        if lm.is_dir():
            d = LmDir(lm)
            if not (d.lexicon.is_file() and d.words.is_file()):
                raise AsrError(f"{lm}: no {d.lexicon.name}/{d.words.name}; pass the lm stage's output folder "
                               "(e.g. data/fsdd/lm) or an .arpa file")
            return d, None
        ngram = NgramLM.read_arpa(lm)
        d = LmDir(tmp)
        write_lm_dir(ngram, d, arpa=False)
        return d, ngram

    def __call__(self, log_probs: torch.Tensor) -> tuple[str, list[tuple[str, int, int]]]:
        """``(T, V)`` -> text and ``[(word, first frame, last frame)]``."""
        # flashlight's lexicon search completes a word only on a word separator, and our
        # transcripts have none at the end: append one certain separator frame, so the last
        # word is completed at no cost instead of at the price of a spurious "|"
        emissions = log_probs.float().cpu()
        if self.options.needs_lexicon:
            sep = torch.full((1, log_probs.shape[1]), -1e4)
            sep[0, self.tokenizer.units.index(self.tokenizer.separator)] = 0.0
            emissions = torch.cat([emissions, sep])
        emissions = emissions[None].contiguous()
        hyp = self.decoder(emissions, torch.tensor([emissions.shape[1]]))[0]
        if not hyp:
            return "", []
        best = hyp[0]
        # with a lexicon, the units spell exactly the lexicon words the decoder chose
        return self.tokenizer.words(best.tokens.tolist(), best.timesteps.tolist())


# --- decoding feature sets, in worker processes -----------------------------------------------------

_W: dict = {}


def _init(model_path: str, features_dir: str, lm_dir: str | None, cfg: DecodeConfig) -> None:
    """Load the model once per process; one thread each, the parallelism is across shards."""
    torch.set_num_threads(1)
    ckpt = read_checkpoint(model_path)
    _W.update(model=build_from_checkpoint(ckpt, model_path), tokenizer=tokenizer_from_dict(ckpt["tokenizer"]),
              store=FeatureStore(features_dir), lm_dir=lm_dir, cfg=cfg, decoders={}, sets={})


def _decoder(lm_weight: float, word_score: float, mix_weight: float) -> BeamSearch:
    key = (lm_weight, word_score, mix_weight)
    if key not in _W["decoders"]:
        options = dataclasses.replace(_W["cfg"].search, lm_weight=lm_weight, word_score=word_score,
                                      mix_weight=mix_weight)
        _W["decoders"][key] = BeamSearch(_W["tokenizer"], options, _W["lm_dir"])
    return _W["decoders"][key]


@torch.inference_mode()
def _decode_shard(task: tuple[str, list[int], list[tuple[float, float]]]) -> dict:
    """Emissions of a shard, then greedy and every ``(lm_weight, word_score, mix_weight)`` beam setting."""
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
                if cfg.search.method != "greedy":
                    out[g][uid] = _decoder(*g)(lp)[0]
    return out


def oov_words(lm_dir: Path | None) -> set[str] | None:
    """The lexicon's words (the lm stage's word list), against which a set's OOV rate is counted."""
    if lm_dir is None or not LmDir(Path(lm_dir)).words.is_file():
        return None
    return {w for _, w in read_lines(LmDir(Path(lm_dir)).words)}


def decode_sets(model_path: Path, features_dir: Path, lm_dir: Path | None, cfg: DecodeConfig, names: list[str],
                grid: list[tuple[float, float, float]], nj: int = 1) -> dict[str, dict]:
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


def stage(ctx) -> dict:
    """The ``decode`` stage: tune on dev, decode test sets, write a :class:`asr.layout.ReportDir` per set."""
    cfg: DecodeConfig = ctx.config
    model_path = TrainDir(ctx.inputs["train"]).model
    lm_dir = ctx.inputs.get("lm")
    store = FeatureStore(ctx.inputs["features"])
    test_sets, tune_sets = store.expand(cfg.sets), store.expand(cfg.tune_sets)
    method = cfg.search.method
    grid = cfg.grid()
    refs = {n: {u["id"]: u["text"] for u in store.open(n).utts} for n in {*tune_sets, *test_sets}}

    chosen, tuning, greedy_dev = grid[0], [], None
    if len(grid) > 1 and tune_sets:
        dev = decode_sets(model_path, ctx.inputs["features"], lm_dir, cfg, tune_sets, grid, ctx.nj)
        ids = [(n, u) for n in tune_sets for u in sorted(refs[n])]
        r = [refs[n][u] for n, u in ids]
        for g in grid:
            tuning.append({"lm_weight": g[0], "word_score": g[1], "mix_weight": g[2],
                           "dev_wer": jiwer.wer(r, [dev[n][g].get(u, "") for n, u in ids])})
        greedy_dev = jiwer.wer(r, [dev[n]["greedy"].get(u, "") for n, u in ids])
        best = min(tuning, key=lambda t: (t["dev_wer"], t["lm_weight"], abs(t["word_score"]), -t["mix_weight"]))
        chosen = (best["lm_weight"], best["word_score"], best["mix_weight"])
        ctx.log(f"decode: tuned on {tune_sets}: lm_weight {chosen[0]}, word_score {chosen[1]}, mix_weight {chosen[2]} "
                f"(dev WER {100 * best['dev_wer']:.2f}%)")
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
        write_text(d.utt2spk, {u["id"]: u["speaker"] for u in store.open(name).utts})
        ctx.log(f"decode {name}: RTF {rtf[name]:.4f} with nj={ctx.nj}")
    settings = {"method": method, "beam_size": cfg.search.beam_size, "beam_threshold": cfg.search.beam_threshold,
                "lm_weight": chosen[0], "word_score": chosen[1], "mix_weight": chosen[2],
                "tuned_on": tune_sets, "greedy_dev_wer": greedy_dev, "grid": tuning, "rtf": rtf, "oov": oov,
                "nj": ctx.nj}
    atomic_write_text(DecodeDir(ctx.out).settings, json.dumps(settings, indent=1) + "\n")
    return {"rtf": rtf, "oov": oov,
            "settings": {k: v for k, v in settings.items() if k not in ("grid", "rtf", "oov", "nj")},
            "nj": ctx.nj}
