"""Searching CTC posteriors for text, in numpy and flashlight-text alone (no torch): flashlight's beam
search, lexicon-free (with an n-gram over units) or over a lexicon's words (with a word n-gram) by
shallow fusion.

:class:`asr.search.options.DecodeOptions` (a module without flashlight) describes the search;
Flashlight's
decoders are driven directly (the same calls torchaudio's ``ctc_decoder`` wraps), so that
transcribing with an ONNX model never imports torch.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flashlight.lib.text.decoder import (
    LM,
    CriterionType,
    LexiconDecoder,
    LexiconDecoderOptions,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    LMState,
    SmearingMode,
    Trie,
    ZeroLM,
)
from flashlight.lib.text.dictionary import Dictionary, load_words

from asr.core.ctc import collapse, greedy_frames
from asr.core.errors import AsrError
from asr.core.layout import LmDir
from asr.core.textfiles import read_lines
from asr.lm.ngram import BOS, EOS, MixedLM, NgramLM, read_unigrams
from asr.lm.stage import write_lm_dir
from asr.search.hotwords import Hotword, PhraseBoost
from asr.search.options import DecodeOptions
from asr.text.lexicon import Lexicon, cmudict_lexicon
from asr.text.stage import Pronouncer
from asr.text.tokenizer import (
    PIECE_START,
    WORD_SEP,
    PhoneTokenizer,
    SubwordTokenizer,
    Tokenizer,
    spells_words_in_phones,
)
from asr.text.transcript import FrameWord

UNK = "<unk>"
MAX_HOMOPHONES = 6  # words flashlight's trie keeps per spelling (kTrieMaxLabel)
MAX_CACHED_SCORES = 1_000_000  # n-gram scores a search keeps (about 200 MB at most)


@dataclass(frozen=True)
class Hypothesis:
    """A search's result: the text, its words with their first and last frames, and the search's score
    (log domain; greedy: the best path's log-probability)."""

    text: str
    words: list[FrameWord]
    score: float


class GreedySearch:
    """Best path: the likeliest unit per frame, repeats merged, blanks dropped."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, log_probs: np.ndarray) -> Hypothesis:
        path = greedy_frames(log_probs)
        text, words = self.tokenizer.words([u for u, _ in path], [t for _, t in path])
        return Hypothesis(text, words, float(np.asarray(log_probs).max(axis=-1).sum()))

    def stream(self) -> GreedyStream:
        return GreedyStream(self)


class GreedyStream:
    """The best path of log-probabilities given in pieces (:meth:`step`); :meth:`partial` and :meth:`end`
    give what :class:`GreedySearch` gives for all the pieces so far."""

    def __init__(self, search: GreedySearch):
        self.search, self.best, self.score = search, [], 0.0  # best: the likeliest unit of each frame

    def step(self, log_probs: np.ndarray) -> None:
        self.best += np.asarray(log_probs).argmax(-1).tolist()
        self.score += float(np.asarray(log_probs).max(axis=-1).sum()) if len(log_probs) else 0.0

    def partial(self) -> Hypothesis:
        path = collapse(self.best)
        text, words = self.search.tokenizer.words([u for u, _ in path], [t for _, t in path])
        return Hypothesis(text, words, self.score)

    end = partial


def searcher(
    tokenizer: Tokenizer, options: DecodeOptions, lm: str | Path | None = None, hotwords: Sequence[Hotword] = ()
):
    """The search ``options`` describe, as ``log_probs -> Hypothesis``: :class:`GreedySearch`,
    :class:`LexiconFreeSearch` (``beam``, ``beam_lm``) or :class:`LexiconSearch` (``lexicon``, ``lexicon_lm``),
    with ``hotwords`` (lexicon searches only).

    Raises:
        AsrError: as :class:`BeamSearch` (a method that needs ``lm`` without it, units it cannot read words from),
            hotwords for a search without a lexicon or that the model cannot spell.
    """
    if hotwords and not options.needs_lexicon:
        raise AsrError(
            f"hotwords need a lexicon decoder (lexicon or lexicon_lm); {options.method!r} decoding has no word list "
            "to add them to"
        )
    if options.method == "greedy":
        return GreedySearch(tokenizer)
    if options.needs_lexicon:
        return LexiconSearch(tokenizer, options, lm, hotwords)
    return LexiconFreeSearch(tokenizer, options, lm)


@functools.lru_cache(maxsize=2)
def _general(path: str, mtime_ns: int) -> NgramLM:
    """The lm stage's general model, read once per process (a decode stage builds a search per setting it tunes;
    the file's time is part of the key, so a rewritten file is read again)."""
    return NgramLM.read_arpa(path)


@functools.lru_cache(maxsize=1)
def _cmudict() -> Lexicon:
    """CMUdict, read once per process (a service builds a search for each request's new hotwords)."""
    return cmudict_lexicon()


class DecoderLM(LM):
    """Shallow fusion of an :class:`asr.lm.ngram.NgramLM` in flashlight's beam search.

    Scores are natural-log probabilities (the decoder's unit); ``words[i]`` is the
    word of the decoder's LM index ``i`` (the order of the ``lm_dict`` file), and ``bonus[i]``,
    if given, is added to its every score. ``boost`` (hotwords) adds each phrase's boost as a hypothesis's
    words follow it, times ``boost_scale`` (flashlight multiplies the LM's score by its weight: the scale undoes
    that, so a boost is added to the search's score as it is).
    """

    def __init__(
        self,
        lm: NgramLM | MixedLM | SpelledLM | FlatLM,
        words: list[str],
        bonus: list[float] | None = None,
        cache: dict | None = None,
        boost: PhraseBoost | None = None,
        boost_scale: float = 1.0,
    ):
        LM.__init__(self)
        self.lm, self.words, self.bonus = lm, words, bonus
        self.boost, self.boost_scale = boost, boost_scale
        self.context: dict[LMState, tuple[str, ...]] = {}
        self.phrase: dict[LMState, tuple[str, ...]] = {}  # the hotword phrase each state is inside
        self.cache: dict[tuple, float] = {} if cache is None else cache  # shared by the streams of one search

    def copy(self) -> DecoderLM:
        """An LM state of its own over the same n-gram and cache (flashlight's decoders and this adapter hold
        one search's state)."""
        return DecoderLM(self.lm, self.words, self.bonus, self.cache, self.boost, self.boost_scale)

    def _score(self, word: str, history: tuple[str, ...]) -> float:
        key = (*history, word)
        score = self.cache.get(key)  # one lookup: another stream's thread may clear the cache meanwhile
        if score is None:
            if len(self.cache) >= MAX_CACHED_SCORES:  # a day-long stream must not grow it without bound
                self.cache.clear()
            score = self.cache[key] = self.lm.logprob(word, history) * math.log(10)
        return score

    def start(self, start_with_nothing: bool = False) -> LMState:
        state = LMState()
        self.context = {state: (BOS,)}
        self.phrase = {state: ()}
        return state

    def score(self, state: LMState, usr_token_idx: int) -> tuple[LMState, float]:
        history = self.context[state]
        word = self.words[usr_token_idx]
        child = state.child(usr_token_idx)
        if child not in self.context:
            self.context[child] = (*history, word)[-(self.lm.order - 1) :] if self.lm.order > 1 else ()
        total = self._score(word, history) + (self.bonus[usr_token_idx] if self.bonus else 0.0)
        if self.boost is not None:
            # the child's phrase is a function of the state's (a state is its word history, the phrase too)
            self.phrase[child], change = self.boost.step(self.phrase[state], word)
            total += change * self.boost_scale
        return child, total

    def finish(self, state: LMState) -> tuple[LMState, float]:
        end = self.boost.finish(self.phrase[state]) * self.boost_scale if self.boost is not None else 0.0
        return state, self._score(EOS, self.context[state]) + end


class FlatLM:
    """No word n-gram (every word log-probability 0): what a ``lexicon`` search without an LM scores its hotwords
    through."""

    order = 1

    def logprob(self, word: str, history: tuple[str, ...]) -> float:
        return 0.0


class NewWordsLM:
    """An n-gram that gives each of ``new`` words (hotwords it has never seen) the probability of its rarest word
    (a word seen about once) in any context; other words as the n-gram does."""

    def __init__(self, lm: NgramLM | MixedLM | FlatLM, new: Iterable[str]):
        self.lm, self.order, self.new = lm, lm.order, set(new)
        inner = lm.lm if isinstance(lm, MixedLM) else lm
        unigrams = [p for g, p in getattr(inner, "probs", {}).get(1, {}).items() if g[0] not in (BOS, EOS, UNK)]
        self.rarest = min(unigrams, default=0.0)

    def logprob(self, word: str, history: tuple[str, ...]) -> float:
        return self.rarest if word in self.new else self.lm.logprob(word, history)


class SpelledLM:
    """A character n-gram scoring sentencepiece pieces by their spelling (beam_lm for subword models).

    ``logprob(piece, history)`` is the log10 probability of the piece's characters after the
    characters of the history pieces, a word-initial piece starting with the word separator except
    at the start of the sentence: over a sentence, the pieces' scores add up to the character
    n-gram's score of its text, so subword and character models decode with the same LM (the lm
    stage's ``tokens.arpa``, which needs no tokenizer and can be estimated before training). A piece
    has at least one character, so ``order - 1`` pieces hold enough history.
    """

    def __init__(self, chars: NgramLM):
        self.chars, self.order = chars, chars.order

    @staticmethod
    def spell(piece: str, first: bool) -> list[str]:
        if piece in (BOS, EOS):
            return [piece]
        if piece.startswith(PIECE_START):
            return ([] if first else [WORD_SEP]) + list(piece[len(PIECE_START) :])
        return list(piece)

    def logprob(self, piece: str, history: tuple[str, ...]) -> float:
        hist: list[str] = []
        for p in history:
            hist += self.spell(p, hist == [BOS])
        total = 0.0
        for c in self.spell(piece, hist == [BOS]):
            total += self.chars.logprob(c, tuple(hist[-(self.order - 1) :]) if self.order > 1 else ())
            hist.append(c)
        return total


class BeamSearch:
    """Flashlight's CTC beam search with our units: what the two searches share (the hypotheses they give, timed,
    and streams of their own). Build one with :func:`searcher`: :class:`LexiconFreeSearch` or
    :class:`LexiconSearch`.

    Args:
        tokenizer: the model's units (characters, or subwords: lexicon-free methods only).
        options: the method (``beam``, ``beam_lm``, ``lexicon``, ``lexicon_lm``) and its settings.
        lm: for the lexicon methods, the lm stage's output folder or a word ARPA file (its
            lexicon is then written to a temporary folder, removed once the decoder has read it);
            for ``beam_lm``, the lm stage's output folder (its ``tokens.arpa``) or a unit ARPA file.
    Raises:
        AsrError: a method that needs ``lm`` without it, an ``lm`` that is neither, or units the method cannot
            read words from.
    """

    def __init__(self, tokenizer: Tokenizer, options: DecodeOptions, lm: str | Path | None = None):
        if options.method == "greedy":
            raise AsrError("BeamSearch is for the beam methods; greedy decoding needs no search")
        self.subword = isinstance(tokenizer, SubwordTokenizer)
        if self.subword and options.needs_lexicon:
            # flashlight's lexicon search completes a word on a separator unit, which sentencepiece units lack
            # (spelled in pieces, a word's last piece cannot repeat across frames: tried, it doubled words)
            raise AsrError(
                f"decoding method {options.method!r} needs character units; a model with subword "
                "units decodes with greedy, beam or beam_lm (lexicon-free, the character n-gram)"
            )
        self.phones = isinstance(tokenizer, PhoneTokenizer)
        if self.phones and options.needs_lexicon and not spells_words_in_phones(tokenizer):
            raise AsrError(
                f"decoding method {options.method!r} needs word boundaries; a phone model trained on phone "
                "transcripts (no word separator unit) decodes with greedy, beam or beam_lm (an n-gram over its phones)"
            )
        if (options.needs_lexicon or options.uses_lm) and lm is None:
            what = "a lexicon" if options.needs_lexicon else "a unit n-gram"
            raise AsrError(f"decoding method {options.method!r} needs {what} (the lm stage's output or --lm)")
        self.options, self.tokenizer = options, tokenizer
        self.units = list(tokenizer.units)
        self.tokens = Dictionary(self.units)
        self.blank = self.tokens.get_index(self.units[0])
        self.silence = self.tokens.get_index(tokenizer.separator)
        self.per_frame = options.beam_size_token or self.tokens.index_size()  # units tried per frame
        self.lm = ZeroLM()  # flashlight keeps a reference only: ours must live as long as the decoder

    def own_lm(self):
        """An LM state of its own over the same n-gram, for one more decoder."""
        return self.lm.copy() if isinstance(self.lm, DecoderLM) else ZeroLM()

    def new_decoder(self) -> tuple:
        """A decoder of its own for one stream, with its own LM state over the same n-gram, trie and options;
        returns ``(decoder, lm)``: keep the LM alive as long as the decoder."""
        raise NotImplementedError

    def stream(self) -> BeamStream:
        return BeamStream(self)

    def _spans(self, merged: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """``[(unit, frame)]`` -> ``[(first frame, last frame)]`` of each run of units between separators."""
        sep = self.tokens.get_index(WORD_SEP)
        spans: list[list[int]] = []
        inside = False
        for u, t in merged:
            if u == sep:
                inside = False
            elif inside:
                spans[-1][1] = t
            else:
                spans.append([t, t])
                inside = True
        return [(s, e) for s, e in spans]

    def end_frame(self) -> np.ndarray | None:
        """The frame a search appends at the end: flashlight's lexicon search completes a word only on a word
        separator, and our transcripts have none at the end, so one certain separator frame completes the last
        word at no cost instead of at the price of a spurious separator (``None``: lexicon-free, nothing)."""
        if not self.options.needs_lexicon:
            return None
        sep = np.full((1, len(self.tokenizer.units)), -1e4, np.float32)
        sep[0, self.tokenizer.units.index(self.tokenizer.separator)] = 0.0
        return sep

    def __call__(self, log_probs: np.ndarray) -> Hypothesis:
        """``(T, V)`` log-probabilities -> the best hypothesis."""
        best = self.nbest(log_probs, 1)
        return best[0] if best else Hypothesis("", [], float("-inf"))

    def nbest(self, log_probs: np.ndarray, n: int) -> list[Hypothesis]:
        """``(T, V)`` log-probabilities -> up to ``n`` hypotheses of different texts, the best first (those the
        beam holds at the end: a wider beam holds more)."""
        emissions = np.asarray(log_probs, dtype=np.float32)
        end = self.end_frame()
        if end is not None:
            emissions = np.concatenate([emissions, end])
        emissions = np.ascontiguousarray(emissions)
        found: dict[str, Hypothesis] = {}
        for result in self.decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1]):
            hypothesis = self.hypothesis(result, emissions.shape[0])
            found.setdefault(hypothesis.text, hypothesis)
            if len(found) == n:
                break
        return list(found.values())

    def hypothesis(self, result, frames: int) -> Hypothesis:
        """A flashlight result after ``frames`` frames (``None``: none) -> our hypothesis: its words, timed."""
        if result is None:
            return Hypothesis("", [], float("-inf"))
        path = list(result.tokens)[1 : frames + 1]  # flashlight adds a start state (and an end state at the end)
        merged = collapse(path, self.blank)  # each unit at its first frame
        if self.phones and self.options.needs_lexicon:
            # phones do not spell a word: the decoder's words, timed by the phones between separators
            chosen = [self.words.get_entry(w) for w in result.words if w >= 0]
            timed = [FrameWord(w, s, e) for w, (s, e) in zip(chosen, self._spans(merged))]
            return Hypothesis(" ".join(w.word for w in timed), timed, float(result.score))
        text, timed = self.tokenizer.words([u for u, _ in merged], [t for _, t in merged])
        if self.options.needs_lexicon:
            # the units spell the lexicon words the decoder chose, unless no hypothesis in the beam had
            # finished a word when the audio ended (a word cut off): flashlight then returns one ending
            # inside a word, whose spelled-out prefix ("thr") is no word; keep the words it completed
            completed = sum(w >= 0 for w in result.words)
            if len(timed) > completed:
                timed = timed[:completed]
                text = " ".join(w.word for w in timed)
        return Hypothesis(text, timed, float(result.score))


class LexiconFreeSearch(BeamSearch):
    """Any sequence of units (``beam``), or units scored by an n-gram over them (``beam_lm``: characters,
    phones, or subwords through their characters' n-gram: :class:`SpelledLM`)."""

    def __init__(self, tokenizer: Tokenizer, options: DecodeOptions, lm: str | Path | None = None):
        super().__init__(tokenizer, options, lm)
        if options.method == "beam_lm":
            token_lm = self._token_lm(Path(lm))
            if not self.subword:
                self.lm = DecoderLM(token_lm, self.units)
            else:
                # no separator unit: the word score goes to each word-initial piece, through the LM
                # (flashlight multiplies the LM's score by lm_weight, hence the division)
                bonus = options.word_score / options.lm_weight if options.lm_weight else 0.0
                self.lm = DecoderLM(
                    SpelledLM(token_lm), self.units, [bonus if u.startswith(PIECE_START) else 0.0 for u in self.units]
                )
        self.opts = LexiconFreeDecoderOptions(
            beam_size=options.beam_size,
            beam_size_token=self.per_frame,
            beam_threshold=options.beam_threshold,
            lm_weight=options.lm_weight if options.uses_lm else 0.0,
            # lexicon-free, a word ends at a separator: its bonus is the word score (subwords: see above)
            sil_score=0.0 if self.subword and options.method == "beam_lm" else options.word_score,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        self.decoder = LexiconFreeDecoder(self.opts, self.lm, self.silence, self.blank, [])

    def new_decoder(self) -> tuple:
        lm = self.own_lm()
        return LexiconFreeDecoder(self.opts, lm, self.silence, self.blank, []), lm

    @staticmethod
    def _token_lm(lm: Path) -> NgramLM:
        if lm.is_dir():
            if not LmDir(lm).tokens_arpa.is_file():
                raise AsrError(f"{lm}: no {LmDir(lm).tokens_arpa.name}; the lm stage writes it with lm.token_order > 0")
            return NgramLM.read_arpa(LmDir(lm).tokens_arpa)
        return NgramLM.read_arpa(lm)


class LexiconSearch(BeamSearch):
    """Words of a lexicon only (``lexicon``), scored by a word n-gram (``lexicon_lm``, mixed with the general
    English one when ``mix_weight`` < 1), by shallow fusion; ``hotwords`` (:mod:`asr.search.hotwords`) join the
    lexicon where it lacks them and are boosted."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        options: DecodeOptions,
        lm: str | Path | None = None,
        hotwords: Sequence[Hotword] = (),
    ):
        super().__init__(tokenizer, options, lm)
        with tempfile.TemporaryDirectory(prefix="asr-lexicon-") as tmp:
            d, ngram = self._lexicon(Path(lm), Path(tmp))
            lexicon = load_words(str(d.lexicon))
            self.words = Dictionary(str(d.words))
            words = [w for _, w in read_lines(d.words)]
            if options.method == "lexicon_lm":
                ngram = ngram or NgramLM.read_arpa(d.arpa)
                if options.mix_weight < 1.0 and d.unigrams.is_file():
                    general = _general(str(d.general), d.general.stat().st_mtime_ns) if d.general.is_file() else None
                    ngram = MixedLM(ngram, read_unigrams(d.unigrams), options.mix_weight, general)
        self._check_lexicon(lexicon, set(words), set(self.units), lm)
        self.spellings: dict[str, list[list[str]]] = lexicon  # each word's spellings in units (the last a separator)
        lm_weight = options.lm_weight if options.uses_lm else 0.0
        if hotwords:
            new = self._add(hotwords)
            for word, spellings in new.items():
                lexicon[word] = spellings
                self.words.add_entry(word)
                words.append(word)
            if lm_weight:
                base: NewWordsLM | FlatLM = NewWordsLM(ngram, new)
            else:  # no n-gram counts (``lexicon``, or a weight of 0): the boosts go through a flat LM of weight 1
                base, lm_weight = FlatLM(), 1.0
            self.lm = DecoderLM(base, words, boost=PhraseBoost(hotwords), boost_scale=1.0 / lm_weight)
        elif options.method == "lexicon_lm":
            self.lm = DecoderLM(ngram, words)
        self.trie = self._trie(lexicon)
        self.opts = LexiconDecoderOptions(
            beam_size=options.beam_size,
            beam_size_token=self.per_frame,
            beam_threshold=options.beam_threshold,
            lm_weight=lm_weight,
            word_score=options.word_score,
            unk_score=float("-inf"),
            sil_score=0.0,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        self.decoder, _ = self._decoder(self.lm)

    def spell(self, words: Iterable[str]) -> tuple[dict[str, list[list[str]]], dict[str, set[str]]]:
        """``words`` the word list lacks (once each), spelled in the model's units as the lm stage spells its words
        (letters, or for a phone model CMUdict's pronunciations, else the G2P's), and those it cannot spell, with
        the units they lack."""
        missing = [w for w in dict.fromkeys(words) if not self.words.contains(w)]
        if not missing:
            return {}, {}
        if self.phones:
            # the G2P (torch) is loaded only for a phone model's words CMUdict lacks
            prons = Pronouncer(_cmudict()).lexicon(missing)[0].prons
            spelled = {w: [[*p, WORD_SEP] for p in prons.get(w, [])] for w in missing}
        else:
            spelled = {w: [[*w, WORD_SEP]] for w in missing}
        units = set(self.units)
        lacking = {w: {u for s in spelled_as for u in s} - units for w, spelled_as in spelled.items()}
        spelled = {w: [s for s in spelled_as if set(s) <= units] for w, spelled_as in spelled.items()}
        return {w: s for w, s in spelled.items() if s}, {w: lacking[w] for w, s in spelled.items() if not s}

    def _add(self, hotwords: Sequence[Hotword]) -> dict[str, list[list[str]]]:
        """The hotwords' new words, spelled (:meth:`spell`).

        Raises:
            AsrError: words the model's units cannot spell (named, with the units they need).
        """
        spelled, bad = self.spell(w for h in hotwords for w in h.words)
        if bad:
            named = "; ".join(f"{w!r} needs {' '.join(sorted(need)) or 'a pronunciation'}" for w, need in bad.items())
            what = "phones" if self.phones else "characters"
            raise AsrError(
                f"{len(bad)} hotword(s) this model cannot spell, its {what} lack what they need: {named[:300]}"
            )
        return spelled

    def _trie(self, lexicon: dict) -> Trie:
        """The lexicon's spellings in units, each word scored by the LM's unigram (smeared for the beam)."""
        trie = Trie(self.tokens.index_size(), self.silence)
        start = self.lm.start(False)
        # flashlight keeps at most 6 words per spelling (homophones: phones spell "to", "two", "too", ...), and
        # says so on the console for each one past it: keep the 6 likeliest (by the LM's unigram score) ourselves
        scored = [(self.lm.score(start, self.words.get_index(w))[1], w) for w in lexicon]
        homophones: dict[tuple, int] = {}
        for score, word in sorted(scored, key=lambda x: -x[0]):
            index = self.words.get_index(word)
            for spelling in lexicon[word]:
                key = tuple(spelling)
                homophones[key] = homophones.get(key, 0) + 1
                if homophones[key] <= MAX_HOMOPHONES:
                    trie.insert([self.tokens.get_index(t) for t in spelling], index, score)
        trie.smear(SmearingMode.MAX)
        return trie

    def _decoder(self, lm) -> tuple:
        unk = self.words.get_index(UNK)
        return LexiconDecoder(self.opts, self.trie, lm, self.silence, self.blank, unk, [], False), lm

    def new_decoder(self) -> tuple:
        return self._decoder(self.own_lm())

    @staticmethod
    def _check_lexicon(lexicon: dict, words: set[str], units: set[str], source) -> None:
        """Raise unless every lexicon word is in the word list and spelled in the model's units (flashlight
        fails without a word, or reads past its tables, on a lexicon of another model)."""
        unspelled = [w for w, spellings in lexicon.items() if any(u not in units for s in spellings for u in s)]
        unlisted = [w for w in lexicon if w not in words] + ([UNK] if UNK not in words else [])
        if unspelled or unlisted:
            what = (
                f"spells {len(unspelled)} word(s) in units the model lacks (e.g. {unspelled[:3]})"
                if unspelled
                else f"has {len(unlisted)} word(s) missing from the word list (e.g. {unlisted[:3]})"
            )
            raise AsrError(f"{source}: the lexicon {what}; it belongs to another model or is damaged")

    @staticmethod
    def _lexicon(lm: Path, tmp: Path) -> tuple[LmDir, NgramLM | None]:
        if lm.is_dir():
            d = LmDir(lm)
            if not (d.lexicon.is_file() and d.words.is_file()):
                raise AsrError(
                    f"{lm}: no {d.lexicon.name}/{d.words.name}; pass the lm stage's output folder "
                    "(e.g. data/fsdd/lm) or an .arpa file"
                )
            return d, None
        ngram = NgramLM.read_arpa(lm)
        d = LmDir(tmp)
        write_lm_dir(ngram, d, arpa=False)
        return d, ngram


class BeamStream:
    """:class:`BeamSearch` over log-probabilities given in pieces, with a decoder of its own (flashlight's
    ``decode_begin``, ``decode_step``, ``decode_end``: :meth:`end` gives what the search gives for all the
    pieces at once); :meth:`partial` is the best hypothesis so far."""

    def __init__(self, search: BeamSearch):
        self.search = search
        self.decoder, self.lm = search.new_decoder()
        self.frames = 0
        self.decoder.decode_begin()

    def step(self, log_probs: np.ndarray) -> None:
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        if len(emissions):
            self.decoder.decode_step(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
            self.frames += len(emissions)

    def partial(self) -> Hypothesis:
        if not self.frames:
            return Hypothesis("", [], 0.0)
        return self.search.hypothesis(self.decoder.get_best_hypothesis(), self.frames)

    def end(self) -> Hypothesis:
        end = self.search.end_frame()
        if end is not None:
            self.step(end)
        self.decoder.decode_end()
        results = self.decoder.get_all_final_hypothesis()
        return self.search.hypothesis(results[0] if results else None, self.frames)
