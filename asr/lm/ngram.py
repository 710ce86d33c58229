"""Word (and unit) n-gram language models: estimation, ARPA files, queries, and mixing with a large word list.

Written by hand because no maintained Python package here both estimates n-gram
models and writes ARPA (KenLM's estimator is a C++ binary; flashlight-text's
wheel has no KenLM). The estimator is interpolated Kneser-Ney with one discount
per order, D = n1 / (n1 + 2 n2) (Ney et al. 1994), written as a backoff ARPA
model: a listed n-gram carries its interpolated probability and a history's
backoff weight is its interpolation weight, so every history's probabilities
sum to 1 (checked in the tests, and KenLM's reader scores it identically).
The beam search reads these models through its adapter (:class:`asr.search.beam.DecoderLM`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from asr.core.errors import AsrError
from asr.core.fsutil import atomic_write_text
from asr.core.textfiles import read_lines

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG0 = -99.0  # ARPA's stand-in for log10(0)


class NgramLM:
    """A backoff n-gram model: ``probs[n][ngram] = log10 p`` and ``backoffs[ngram] = log10 bow``."""

    def __init__(self, order: int, probs: dict[int, dict[tuple, float]], backoffs: dict[tuple, float]):
        self.order, self.probs, self.backoffs = order, probs, backoffs
        self.vocab = {w for (w,) in probs[1]}

    # --- estimation -----------------------------------------------------------------------------

    @classmethod
    def estimate(cls, sentences: Iterable[str], order: int = 3) -> NgramLM:
        """Interpolated Kneser-Ney on whitespace-separated sentences.

        Raises:
            AsrError: no sentences, or ``order`` < 1.
        """
        if order < 1:
            raise AsrError(f"n-gram order must be >= 1, got {order}")
        raw: dict[int, Counter] = {n: Counter() for n in range(1, order + 1)}
        n_sent = 0
        for s in sentences:
            words = [BOS, *s.split(), EOS]
            n_sent += 1
            for n in range(1, order + 1):
                for i in range(len(words) - n + 1):
                    raw[n][tuple(words[i : i + n])] += 1
        if not n_sent:
            raise AsrError("cannot estimate a language model from no sentences")
        # Kneser-Ney counts: the highest order (and n-grams starting with <s>, which nothing
        # precedes) keep raw counts; lower orders count distinct left contexts.
        counts: dict[int, Counter] = {order: raw[order]}
        for n in range(order - 1, 0, -1):
            cont = Counter(g[1:] for g in raw[n + 1])
            counts[n] = Counter({g: (c if g[0] == BOS else cont[g]) for g, c in raw[n].items()})
        counts[1][(UNK,)] = 0
        vocab = [g[0] for g in counts[1] if g[0] != BOS]

        probs: dict[int, dict[tuple, float]] = {n: {} for n in range(1, order + 1)}
        backoffs: dict[tuple, float] = {}
        lower: dict[tuple, float] = {}  # interpolated p of the order below, linear
        for n in range(1, order + 1):
            table = counts[n]
            nk = Counter(c for c in table.values() if c in (1, 2))
            d = nk[1] / (nk[1] + 2 * nk[2]) if nk[1] and nk[2] else 0.5
            totals, types = defaultdict(int), defaultdict(int)
            for g, c in table.items():
                if g[-1] != BOS and c > 0:
                    totals[g[:-1]] += c
                    types[g[:-1]] += 1
            gamma = {h: d * types[h] / totals[h] for h in totals}
            cur: dict[tuple, float] = {}
            for g, c in table.items():
                if g[-1] == BOS:
                    continue
                h = g[:-1]
                base = 1.0 / len(vocab) if n == 1 else lower[g[1:]]
                cur[g] = max(c - d, 0.0) / totals[h] + gamma[h] * base if h in totals else base
            if n == 1:
                for w in vocab:
                    cur.setdefault((w,), gamma[()] / len(vocab))
            for g, p in cur.items():
                probs[n][g] = math.log10(p)
            if n > 1:
                for h, gm in gamma.items():
                    backoffs[h] = math.log10(gm) if gm > 0 else LOG0
            if n == 1:
                probs[1][(BOS,)] = LOG0  # <s> is never predicted
            lower = cur  # every (n+1)-gram's suffix is a listed n-gram, by construction of the KN counts
        return cls(order, probs, backoffs)

    # --- queries ---------------------------------------------------------------------------------

    def logprob(self, word: str, history: tuple[str, ...]) -> float:
        """log10 p(word | history) with standard backoff; unknown words map to <unk>."""
        if word not in self.vocab:
            word = UNK
        history = history[-(self.order - 1) :] if self.order > 1 else ()
        bow = 0.0
        while True:
            g = (*history, word)
            p = self.probs.get(len(g), {}).get(g)
            if p is not None:
                return p + bow
            if not history:
                return LOG0
            bow += self.backoffs.get(history, 0.0)
            history = history[1:]

    def prune(self, max_ngrams: int, vocabulary: set[str] | None = None) -> NgramLM:
        """A smaller model: the n-grams over ``vocabulary`` (all words when None), then of each order above the
        first the ``max_ngrams`` that matter most, by ``p(h, w) |log p(w|h) - log p_backoff(w|h)|`` (the
        weighted difference of Seymore and Rosenfeld 1996, the n-gram's share of the relative entropy pruning it
        would cost). Backoff weights are kept, not re-estimated: the pruned n-grams' probability mass is lost
        (a history's probabilities then sum to a little less than one), a price the decoder's scores bear.
        Every history of a kept n-gram is kept."""
        words = self.vocab if vocabulary is None else (set(vocabulary) | {BOS, EOS, UNK}) & self.vocab

        seen: dict[tuple[str, ...], float] = {}  # p(h), once per history (histories repeat across n-grams)

        def history_prob(h: tuple[str, ...]) -> float:
            if h not in seen:
                seen[h] = 10 ** sum(self.logprob(w, h[:i]) for i, w in enumerate(h) if w != BOS)
            return seen[h]

        probs: dict[int, dict[tuple, float]] = {1: {g: p for g, p in self.probs[1].items() if g[0] in words}}
        for n in range(2, self.order + 1):
            scored = []
            for g, p in self.probs[n].items():
                if all(w in words for w in g):
                    lower = self.backoffs.get(g[:-1], 0.0) + self.logprob(g[-1], g[1:-1])
                    scored.append((history_prob(g[:-1]) * 10**p * abs(p - lower), g))
            scored.sort(reverse=True)
            probs[n] = {g: self.probs[n][g] for _, g in scored[:max_ngrams]}
        for n in range(self.order, 2, -1):  # a kept n-gram's listed history stays, down to the bigrams
            for g in probs[n]:
                if g[:-1] in self.probs[n - 1]:
                    probs[n - 1].setdefault(g[:-1], self.probs[n - 1][g[:-1]])
        backoffs = {g: b for g, b in self.backoffs.items() if len(g) < self.order and g in probs[len(g)]}
        return NgramLM(self.order, probs, backoffs)

    def sentence_logprob(self, sentence: str) -> float:
        words, total = [BOS, *sentence.split(), EOS], 0.0
        for i in range(1, len(words)):
            total += self.logprob(words[i], tuple(words[max(0, i - self.order + 1) : i]))
        return total

    # --- ARPA -------------------------------------------------------------------------------------

    def write_arpa(self, path: str | Path) -> None:
        lines = ["", "\\data\\"] + [f"ngram {n}={len(self.probs[n])}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for g in sorted(self.probs[n]):
                row = f"{self.probs[n][g]:.6f}\t{' '.join(g)}"
                if g in self.backoffs and n < self.order:
                    row += f"\t{self.backoffs[g]:.6f}"
                lines.append(row)
        lines += ["", "\\end\\", ""]
        atomic_write_text(path, "\n".join(lines))

    @classmethod
    def read_arpa(cls, path: str | Path) -> NgramLM:
        """Raises: AsrError for a missing file or one that is not ARPA."""
        if not Path(path).is_file():
            raise AsrError(
                f"{path}: no such ARPA file (give the lm stage's output folder, e.g. data/fsdd/lm, "
                "or an ARPA language model)"
            )
        probs: dict[int, dict[tuple, float]] = {}
        backoffs: dict[tuple, float] = {}
        n, started = 0, False
        try:
            for _, line in read_lines(path):
                line = line.strip()
                started = started or line == "\\data\\"
                if not started:  # free text before \data\ (CMU Sphinx writes a line of it): read past it
                    continue
                if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    n = int(line[1:-7])
                    probs[n] = {}
                    continue
                parts = line.split()
                if n == 0 or len(parts) < n + 1:
                    raise ValueError(f"bad line {line!r}")
                g = tuple(parts[1 : n + 1])
                probs[n][g] = float(parts[0])
                if len(parts) > n + 1:
                    backoffs[g] = float(parts[n + 1])
        except (OSError, ValueError) as e:
            raise AsrError(f"{path}: not a readable ARPA language model ({e})") from None
        if 1 not in probs:
            raise AsrError(f"{path}: no unigrams; not an ARPA language model")
        return cls(max(probs), probs, backoffs)


class MixedLM:
    """The in-domain n-gram interpolated with a large unigram word list (open vocabulary), or with a general
    n-gram model of the language over that word list.

    With the word list alone: ``p(w|h) = a p_in(w|h) + (1 - a) (1 - p_in(</s>|h)) q(w)`` for a word ``w`` and
    ``p(</s>|h) = p_in(</s>|h)``, where ``q`` is the word list's unigram distribution and ``a`` the mixing
    weight. A word the n-gram has never seen takes its share of the n-gram's ``<unk>`` mass by ``q``. Every
    history's probabilities sum to one (tested).

    With a ``general`` model: ``p(w|h) = a p_in(w|h) + (1 - a) p_gen(w|h)`` for words and ``</s>`` alike
    (``p_in`` as above; ``p_gen`` is 0 for a word the general model lacks): a history's probabilities over the
    word list sum to between ``a`` and one (the general model's mass on words outside the list, and what its
    pruning lost, is not redistributed). Same queries as :class:`NgramLM`.
    """

    def __init__(self, lm: NgramLM, unigrams: dict[str, float], weight: float, general: NgramLM | None = None):
        if not 0.0 <= weight <= 1.0:
            raise AsrError(f"mixing weight must be in [0, 1], got {weight}")
        self.lm, self.weight, self.general = lm, weight, general
        self.order = max(lm.order, general.order) if general is not None else lm.order
        words = {w: f for w, f in unigrams.items() if f > 0 and w not in (BOS, EOS, UNK)}
        floor = min(words.values(), default=1.0)
        for w in lm.vocab - {BOS, EOS, UNK}:
            words.setdefault(w, floor)  # in-domain words absent from the list: the rarest listed frequency
        total = sum(words.values())
        self.q = {w: f / total for w, f in words.items()}
        unseen = sum(q for w, q in self.q.items() if w not in lm.vocab)
        self.unseen_share = {w: q / unseen for w, q in self.q.items() if w not in lm.vocab} if unseen else {}
        self.vocab = set(self.q) | {BOS, EOS, UNK}

    def logprob(self, word: str, history: tuple[str, ...]) -> float:
        if word == EOS:
            p_in = 10 ** self.lm.logprob(EOS, history)
        elif word in self.lm.vocab and word != UNK:
            p_in = 10 ** self.lm.logprob(word, history)
        else:
            p_in = 10 ** self.lm.logprob(UNK, history) * self.unseen_share.get(word, 0.0)
        if self.general is not None:
            p_gen = 10 ** self.general.logprob(word, history) if word in self.general.vocab and word != UNK else 0.0
            p = self.weight * p_in + (1 - self.weight) * p_gen
        elif word == EOS:
            p = p_in
        else:  # the word list's share is what the n-gram leaves to words, not to </s> (queried only here)
            p_end = 10 ** self.lm.logprob(EOS, history)
            p = self.weight * p_in + (1 - self.weight) * (1 - p_end) * self.q.get(word, 0.0)
        return math.log10(p) if p > 0 else LOG0


def read_unigrams(path: Path) -> dict[str, float]:
    """``word<TAB>frequency`` lines (the lm stage's extra word list)."""
    out = {}
    for _, line in read_lines(path):
        word, _, freq = line.partition("\t")
        if word:
            out[word] = float(freq)
    return out
