"""Ensembles of CTC models trained apart, combined at the level of hypotheses: each member's lexicon search
proposes its N best word sequences, and every proposal is scored by each member's CTC likelihood of it (the
mean of their log-likelihoods, each word in its best pronunciation) plus the search's LM and word scores; the
best wins.

Averaging the members' posteriors frame by frame before one search (the ensemble before this one) blurs their
spikes, which sit on different frames in models trained apart: on speechocean762 it raised deletions (dev WER
48.29% against 46.13% alone). Scored as whole sequences, the members do not need to agree on frames: two
models took dev WER from 45.87% to 43.31% there, devtest from 47.84% to 42.99% (docs/transcribing.md). In
numpy alone, as the searches are (an ONNX model transcribes without torch): the CTC forward pass is written
here for that reason.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from asr.search.beam import Hypothesis, LexiconSearch

NBEST = 16  # proposals per member (speechocean762 dev, two members, weights tuned: 4 each 43.11%, 16 each 42.26%)
MAX_PRONUNCIATIONS = 32  # pronunciation combinations scored per proposal (the words with most variants cut first)


def ctc_log_likelihood(log_probs: np.ndarray, labels: Sequence[Sequence[int]], blank: int = 0) -> np.ndarray:
    """``log p(labels[b] | log_probs)`` under CTC for each label sequence (the forward algorithm in log space,
    vectorised over the sequences); ``-inf`` where a sequence needs more frames than there are."""
    lp = np.asarray(log_probs, dtype=np.float64)
    frames, batch = len(lp), len(labels)
    if batch == 0:
        return np.zeros(0)
    if frames == 0:
        return np.array([0.0 if not seq else -math.inf for seq in labels])
    width = 2 * max(len(seq) for seq in labels) + 1
    ext = np.full((batch, width), blank, dtype=np.int64)  # blank, l1, blank, l2, ..., blank
    for b, seq in enumerate(labels):
        ext[b, 1 : 2 * len(seq) : 2] = seq
    skip = np.zeros((batch, width), dtype=bool)  # from s-2 to s: a label unlike the one before it
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    alpha = np.full((batch, width), -np.inf)
    alpha[:, 0] = lp[0, blank]
    if width > 1:
        alpha[:, 1] = lp[0, ext[:, 1]]
    for t in range(1, frames):
        one = np.concatenate([np.full((batch, 1), -np.inf), alpha[:, :-1]], axis=1)
        two = np.concatenate([np.full((batch, 2), -np.inf), alpha[:, :-2]], axis=1)[:, :width]
        two = np.where(skip, two, -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, one), two) + lp[t][ext]
    last = np.array([2 * len(seq) for seq in labels])
    end = alpha[np.arange(batch), last]
    before = np.where(last > 0, alpha[np.arange(batch), np.maximum(last - 1, 0)], -np.inf)
    return np.logaddexp(end, before)


class HypothesisEnsemble:
    """``search`` run on each of ``members`` blocks of log-probabilities side by side (``(T, members x V)``, one
    member's units after another's), its proposals rescored by all members: a callable as a search is.

    ``search`` is a :class:`~asr.search.beam.LexiconSearch` (the proposals are word sequences spelled through its
    lexicon); :class:`~asr.recognize.recognizer.Recognizer` refuses an ensemble of any other decoding by name.
    """

    def __init__(self, search: LexiconSearch, members: int, nbest: int = NBEST):
        if not isinstance(search, LexiconSearch):
            raise TypeError(f"a HypothesisEnsemble needs a LexiconSearch, not {type(search).__name__}")
        self.search, self.members, self.nbest = search, members, nbest
        self.units = len(search.units)
        self.separator = search.tokens.get_index(search.tokenizer.separator)

    def spell(self, words):
        """As :meth:`asr.search.beam.LexiconSearch.spell` (the words a hotword list would add)."""
        return self.search.spell(words)

    def _spellings(self, text: str) -> list[list[int]]:
        """``text``'s unit sequences as training spelled transcripts (a separator between words, none at the
        ends), one per combination of its words' pronunciations (at most :data:`MAX_PRONUNCIATIONS`)."""
        variants = [[s[:-1] for s in self.search.spellings.get(w, [])] for w in text.split()]
        if any(not v for v in variants):
            return []
        while math.prod(len(v) for v in variants) > MAX_PRONUNCIATIONS:
            most = max(range(len(variants)), key=lambda i: len(variants[i]))
            variants[most] = variants[most][:-1]
        out = []
        for combination in itertools.product(*variants):
            units: list[int] = []
            for k, spelling in enumerate(combination):
                units += ([self.separator] if k else []) + [self.search.tokens.get_index(u) for u in spelling]
            out.append(units)
        return out

    def _lm_score(self, text: str) -> float:
        """The search's LM and word scores of ``text``, weighted as the search weighs them."""
        opts, words = self.search.opts, text.split()
        lm = self.search.own_lm()  # the search's n-gram and hotword boosts, or a zero LM where it has none
        state, score = lm.start(False), 0.0
        for w in words:
            state, s = lm.score(state, self.search.words.get_index(w))
            score += s
        score += lm.finish(state)[1]
        return opts.word_score * len(words) + opts.lm_weight * score

    def __call__(self, log_probs: np.ndarray) -> Hypothesis:
        blocks = [log_probs[:, k * self.units : (k + 1) * self.units] for k in range(self.members)]
        proposals: dict[str, Hypothesis] = {}
        for block in blocks:
            for h in self.search.nbest(block, self.nbest):
                proposals.setdefault(h.text, h)
        if not proposals:
            return Hypothesis("", [], float("-inf"))
        texts = list(proposals)
        spelled = [self._spellings(t) if t else [[]] for t in texts]
        labels = [s for each in spelled for s in each]
        owner = np.repeat(np.arange(len(texts)), [len(each) for each in spelled])
        acoustic = np.zeros(len(texts))
        for block in blocks:
            each = np.full(len(texts), -np.inf)
            if labels:
                np.maximum.at(each, owner, ctc_log_likelihood(block, labels, self.search.blank))
            acoustic += each / self.members
        scores = acoustic + np.array([self._lm_score(t) for t in texts])
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):
            return next(iter(proposals.values()))
        return Hypothesis(texts[best], proposals[texts[best]].words, float(scores[best]))
