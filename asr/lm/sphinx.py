"""CMU Sphinx's binary n-gram models (``.lm.bin``): reading them, and the general English one pip installs.

The ``pocketsphinx`` package ships US English's generic trigram model (``model/en-us/en-us.lm.bin``:
72,547 words, 2.05 million bigrams, 1.67 million trigrams, estimated by CMU on broad English text),
in sphinxbase's binary trie. Read here by hand because pocketsphinx's own converter cannot be used:
``NGramModel.write(path, "arpa")`` (pocketsphinx 5.1.1) writes every bigram's probability as ``-inf``
and then crashes with a segmentation fault in the trigrams; its ``prob`` queries are right, and the
tests check this reader against them.

The format (sphinxbase's ``ngram_model_trie.c``, ``lm_trie.c``, ``lm_trie_quant.c``, after KenLM's
trie), little-endian: the header ``Trie Language Model``; the order (one byte); the n-gram counts
(uint32 each); a uint32 (the quantisation's type); the quantisation tables, 65,536 float32 values each
(probability and backoff of every middle order, then the highest order's probability); the unigrams
(``counts[0] + 1`` records of float32 probability, float32 backoff, uint32 index of the first
bigram); the bit-packed n-gram levels; the word strings (an int32 byte count, then NUL-terminated
strings). Each level is an array of fixed-width bit fields: the word index (as many bits as the
unigram count needs), the quantised probability and backoff (16 bits each; the highest order has
the probability only) and, below the highest order, the index of the first child. The trie is
reversed: a unigram's children are the bigrams that end in it, keyed by the word before; theirs, the
trigrams keyed by the word before that. Probabilities are stored as logarithms in base 1.0001
(sphinxbase's log-math) and converted here to base 10, as in ARPA files.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.core.errors import AsrError

HEADER = b"Trie Language Model"
QUANT_BITS = 16
LOG10_BASE = math.log10(1.0001)  # the log-math base the tables are written in
PACKAGED = "cmusphinx-en-us"  # lm.general's name for the pocketsphinx package's US English model


def packaged_english() -> Path:
    """The US English trigram model the ``pocketsphinx`` package installs.

    Raises:
        AsrError: the package is not installed, or lacks the file.
    """
    spec = importlib.util.find_spec("pocketsphinx")  # found, not imported: its C extension is not needed
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "model" / "en-us" / "en-us.lm.bin"
        if path.is_file():
            return path
    raise AsrError(
        f"lm.general={PACKAGED} needs the pocketsphinx package's English model: "
        "pip install pocketsphinx (or give an ARPA file: --set lm.general=FILE)"
    )


def _bits(n: int) -> int:
    """Bits to store the integers 0..n (sphinxbase's ``bitarr_required_bits``)."""
    return max(1, int(n).bit_length())


def _fields(data: np.ndarray, start: int, width: int, count: int, offset: int, bits: int) -> np.ndarray:
    """The ``bits``-wide field at bit ``offset`` of each of ``count`` ``width``-bit records from byte ``start``."""
    at = np.arange(count, dtype=np.uint64) * np.uint64(width) + np.uint64(offset)
    byte = (at >> np.uint64(3)).astype(np.int64) + start
    word = np.zeros(count, np.uint64)
    for k in range((bits + 7 + 7) // 8):  # the bytes a field can span, shifted by up to 7 bits
        word |= data[byte + k].astype(np.uint64) << np.uint64(8 * k)
    return (word >> (at & np.uint64(7))) & np.uint64((1 << bits) - 1)


@dataclass
class _Layout:
    """Where a Sphinx binary trigram model keeps what, from its header."""

    counts: list[int]  # n-grams per order, as the header says (the levels are allocated for these)
    tables: np.ndarray  # the quantisation tables (probabilities, backoffs, trigram probabilities), log10
    unigrams: np.ndarray  # (p, bo, next) per word, one more at the end
    words: list[str]
    mid_start: int  # bytes where the bigrams' and trigrams' bit-packed records start
    top_start: int
    word_bits: int
    next_bits: int


def _layout(path: str | Path, blob: bytes) -> _Layout:
    if not blob.startswith(HEADER):
        raise AsrError(f"{path}: not a CMU Sphinx binary language model (no {HEADER.decode()!r} header)")
    pos = len(HEADER)
    order = blob[pos] if len(blob) > pos else 0
    if order != 3:
        raise AsrError(f"{path}: a CMU Sphinx model of order {order}; only trigram models are read")
    truncated = AsrError(f"{path}: truncated CMU Sphinx binary language model: download or copy it again")
    if len(blob) < pos + 1 + 4 * order:
        raise truncated
    counts = [int(c) for c in np.frombuffer(blob, "<u4", order, pos + 1)]
    tables_at = pos + 1 + 4 * order + 4  # after the order, the counts and the quantisation's type
    unigrams_at = tables_at + 4 * (3 << QUANT_BITS)
    word_bits, next_bits = _bits(counts[0]), _bits(counts[2])
    mid_width, top_width = word_bits + 2 * QUANT_BITS + next_bits, word_bits + QUANT_BITS
    mid_start = unigrams_at + 12 * (counts[0] + 1)
    top_start = mid_start + ((counts[1] + 1) * mid_width + 7) // 8 + 8
    words_at = top_start + ((counts[2] + 1) * top_width + 7) // 8 + 8
    if words_at + 4 > len(blob):
        raise truncated
    tables = np.frombuffer(blob, "<f4", 3 << QUANT_BITS, tables_at).astype(np.float64) * LOG10_BASE
    unigrams = np.frombuffer(blob, np.dtype([("p", "<f4"), ("bo", "<f4"), ("next", "<u4")]), counts[0] + 1, unigrams_at)
    size = int(np.frombuffer(blob, "<i4", 1, words_at)[0])
    words = [w.decode("utf-8", "replace") for w in blob[words_at + 4 : words_at + 4 + size].split(b"\0")[: counts[0]]]
    if len(words) != counts[0]:
        raise truncated
    return _Layout(counts, tables, unigrams, words, mid_start, top_start, word_bits, next_bits)


@dataclass
class _Levels:
    """The bigrams and trigrams actually stored, as arrays over their records."""

    uni_next: np.ndarray  # (V + 1,) each word's first bigram
    mid_word: np.ndarray  # (B,) each bigram's first word
    mid_next: np.ndarray  # (B + 1,) each bigram's first trigram
    mid_p: np.ndarray
    mid_bo: np.ndarray
    top_word: np.ndarray  # (T,) each trigram's first word
    top_p: np.ndarray


def _levels(path: str | Path, data: np.ndarray, lay: _Layout) -> _Levels:
    """The bit-packed levels read, their pointers checked. The levels are allocated for the header's counts, which
    may exceed the n-grams stored (sphinxbase's count of the suffixes a pruned model must add): the unigrams' last
    pointer ends the bigrams, and so on."""
    damaged = AsrError(f"{path}: damaged CMU Sphinx binary language model (n-gram pointers out of order)")
    counts, tables, wb, q = lay.counts, lay.tables, lay.word_bits, QUANT_BITS
    mid_width, top_width = wb + 2 * q + lay.next_bits, wb + q
    uni_next = lay.unigrams["next"].astype(np.int64)
    n_mid = int(uni_next[counts[0]])
    if n_mid > counts[1] or np.any(np.diff(uni_next) < 0):
        raise damaged
    mid_word = _fields(data, lay.mid_start, mid_width, n_mid + 1, 0, wb)
    mid_quant = _fields(data, lay.mid_start, mid_width, n_mid + 1, wb, 2 * q)
    mid_next = _fields(data, lay.mid_start, mid_width, n_mid + 1, wb + 2 * q, lay.next_bits).astype(np.int64)
    n_top = int(mid_next[n_mid])
    if n_top > counts[2] or np.any(np.diff(mid_next) < 0) or np.any(mid_word[:n_mid] >= counts[0]):
        raise damaged
    mid_p = tables[(mid_quant[:n_mid] >> np.uint64(q)).astype(np.int64)]
    mid_bo = tables[(1 << q) + (mid_quant[:n_mid] & np.uint64((1 << q) - 1)).astype(np.int64)]
    top_word = _fields(data, lay.top_start, top_width, n_top, 0, wb)
    if np.any(top_word >= counts[0]):
        raise damaged
    top_p = tables[(2 << q) + _fields(data, lay.top_start, top_width, n_top, wb, q).astype(np.int64)]
    return _Levels(
        uni_next, mid_word[:n_mid].astype(np.int64), mid_next, mid_p, mid_bo, top_word.astype(np.int64), top_p
    )


def read_sphinx_lm(
    path: str | Path, vocabulary: Iterable[str] | None = None
) -> tuple[dict[int, dict[tuple, float]], dict[tuple, float]]:
    """A CMU Sphinx binary trigram model as ``(probs, backoffs)``: ``probs[n][ngram]`` and ``backoffs[ngram]``
    in log10 (the tables of :class:`asr.lm.ngram.NgramLM`), keeping only the n-grams whose words are all in
    ``vocabulary`` when it is given (include ``<s>`` and ``</s>``): the probability of any word of the
    vocabulary after any history over it is unchanged.

    Raises:
        AsrError: the file is missing, not in this format, or not of order 3.
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise AsrError(f"{path}: cannot read the language model ({e.strerror})") from None
    lay = _layout(path, blob)
    lv = _levels(path, np.frombuffer(blob, np.uint8), lay)
    words, n_words = lay.words, lay.counts[0]
    keep = np.ones(n_words, bool)
    if vocabulary is not None:
        wanted = set(vocabulary)
        keep = np.array([w in wanted for w in words])
    # the last word of each bigram (its unigram parent) and of each trigram (its bigram parent's)
    mid_last = np.repeat(np.arange(n_words), np.diff(lv.uni_next))
    top_parent = np.repeat(np.arange(len(lv.mid_word)), np.diff(lv.mid_next))
    mid_keep = keep[mid_last] & keep[lv.mid_word]
    top_keep = mid_keep[top_parent] & keep[lv.top_word]

    probs: dict[int, dict[tuple, float]] = {1: {}, 2: {}, 3: {}}
    backoffs: dict[tuple, float] = {}
    for i in np.flatnonzero(keep).tolist():
        probs[1][(words[i],)] = float(lay.unigrams["p"][i]) * LOG10_BASE
        backoffs[(words[i],)] = float(lay.unigrams["bo"][i]) * LOG10_BASE
    for h, w, p, bo in zip(
        lv.mid_word[mid_keep].tolist(),
        mid_last[mid_keep].tolist(),
        lv.mid_p[mid_keep].tolist(),
        lv.mid_bo[mid_keep].tolist(),
        strict=True,
    ):
        g = (words[h], words[w])
        probs[2][g] = p
        if bo:
            backoffs[g] = bo
    for j, h2, p in zip(
        top_parent[top_keep].tolist(), lv.top_word[top_keep].tolist(), lv.top_p[top_keep].tolist(), strict=True
    ):
        probs[3][(words[h2], words[int(lv.mid_word[j])], words[int(mid_last[j])])] = p
    return probs, backoffs
