"""The ``lm`` stage: the word n-gram over the training transcripts (:mod:`asr.lm.ngram`), mixed with CMU's
general English model where asked (:mod:`asr.lm.sphinx`), a unit n-gram for lexicon-free search, and the lexicon:
each word spelled in the model's units, for the lexicon-constrained beam search (:mod:`asr.search.beam`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asr.core.context import StageContext
from asr.core.errors import AsrError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import LexiconDir, LmDir
from asr.data.manifest import expand_sets, manifest_names, read_manifest
from asr.lm import sphinx as sphinxlm
from asr.lm.ngram import BOS, EOS, UNK, NgramLM
from asr.text.lexicon import Lexicon, flashlight_lines, phone_sentence, read_lexicon
from asr.text.stage import Pronouncer
from asr.text.tokenizer import WORD_SEP

VERSION = 2  # of the lm stage's output: bump when the estimator or the files it writes change


@dataclass(frozen=True)
class LmConfig:
    """The ``lm`` stage's config section."""

    sets: tuple[str, ...] = ("train",)  # manifests of the prepare output whose transcripts train the LM
    order: int = 3
    token_order: int = 0  # >0: also an n-gram over the model's units (open-vocabulary decoding) ...
    units: Literal["char", "phone"] = "char"  # ... characters + word separator, or the transcripts' phones
    extra_words: int = 0  # >0: the lexicon also gets this many of wordfreq's most frequent words ...
    extra_language: str = "en"  # ... of this language (their frequencies mix with the n-gram; decode.mix_weights)
    # with extra_words: a general n-gram of the language mixed in place of those frequencies: "cmusphinx-en-us"
    # (the pocketsphinx package's US English trigram), or an ARPA or CMU Sphinx binary file; "" for none
    general: str = ""
    general_ngrams: int = 300_000  # ... pruned to this many n-grams of each order above the first

    def __post_init__(self):
        if self.general and not self.extra_words:
            raise ValueError("lm.general mixes a general model over lm.extra_words' word list: set lm.extra_words too")
        if self.general_ngrams < 1:
            raise ValueError(f"lm.general_ngrams must be >= 1, got {self.general_ngrams}")


def lexicon_text(words: Iterable[str]) -> str:
    """flashlight lexicon lines: ``word w o r d |`` (spelled with our character units, ending in the separator)."""
    return "".join(f"{w} {' '.join(w)} |\n" for w in words)


def words_text(lm: NgramLM) -> tuple[list[str], str]:
    """The LM's words (sorted, without <s>, </s>, <unk>) and the decoder's word list (``<unk>`` last)."""
    words = sorted(lm.vocab - {BOS, EOS, UNK})
    return words, "".join(f"{w}\n" for w in [*words, UNK])


def write_lm_dir(
    lm: NgramLM,
    out: LmDir,
    arpa: bool = True,
    extra: dict[str, float] | None = None,
    phones: Lexicon | None = None,
) -> None:
    """Write the model (unless ``arpa`` is False), its word list and its lexicon into ``out``;
    ``extra`` words (with their unigram frequencies) join the word list and the lexicon. The lexicon
    spells words in characters, or with ``phones`` in each of their pronunciations (a word without one
    stays in the word list, out of the lexicon: it cannot come out)."""
    if arpa:
        lm.write_arpa(out.arpa)
    words, listing = words_text(lm)
    if extra:
        words = sorted(set(words) | set(extra))
        listing = "".join(f"{w}\n" for w in [*words, UNK])
        atomic_write_text(out.unigrams, "".join(f"{w}\t{f:.6g}\n" for w, f in sorted(extra.items())))
    if phones is None:
        atomic_write_text(out.lexicon, lexicon_text(words))
    else:
        atomic_write_text(out.lexicon, flashlight_lines(phones, [w for w in words if w in phones]))
    atomic_write_text(out.words, listing)


def frequent_words(n: int, language: str, alphabet: set[str]) -> dict[str, float]:
    """The ``n`` most frequent words of ``language`` (wordfreq's lists, which merge subtitles, web text,
    Wikipedia and more) that are spelled with ``alphabet``, with their frequencies."""
    import wordfreq  # imported here: it loads its lists on first use, only the lm stage needs it

    words = [w for w in wordfreq.top_n_list(language, n) if w and set(w) <= alphabet]
    return {w: wordfreq.word_frequency(w, language) for w in words}


def general_model(name: str, vocabulary: set[str], max_ngrams: int) -> NgramLM:
    """``lm.general``'s model over ``vocabulary``, pruned to ``max_ngrams`` n-grams of each order above the first.

    Raises:
        AsrError: a file that is missing or neither ARPA nor CMU Sphinx binary.
    """
    path = sphinxlm.packaged_english() if name == sphinxlm.PACKAGED else Path(name)
    if not path.is_file():
        raise AsrError(
            f"lm.general={name}: no such file (give an ARPA or CMU Sphinx .lm.bin file, or {sphinxlm.PACKAGED})"
        )
    with open(path, "rb") as f:
        binary = f.read(len(sphinxlm.HEADER)) == sphinxlm.HEADER
    lm = NgramLM(3, *sphinxlm.read_sphinx_lm(path, vocabulary | {BOS, EOS})) if binary else NgramLM.read_arpa(path)
    return lm.prune(max_ngrams, vocabulary)


def unit_sentence(text: str) -> str:
    """A transcript as the character model's units, space separated: ``"we go"`` -> ``"w e | g o"``."""
    return " ".join(WORD_SEP if c == " " else c for c in " ".join(text.split()))


def build(
    texts: list[str],
    out: Path,
    order: int,
    token_order: int = 0,
    extra: dict[str, float] | None = None,
    units: str = "char",
    phones: Lexicon | None = None,
) -> NgramLM:
    """Write ``out``'s ARPA model, lexicon and word list (with ``extra`` words), and with
    ``token_order`` the unit-level model (see :class:`asr.core.layout.LmDir`): over characters, or with
    ``units="phone"`` over the transcripts' space-separated phones, or with ``phones`` (a lexicon of
    every transcript word) over the words' phones and separators."""
    lm = NgramLM.estimate(texts, order)
    write_lm_dir(lm, LmDir(out), extra=extra, phones=phones)
    if token_order:
        if phones is not None:
            sentences = [phone_sentence(t, phones) for t in texts]
        else:
            sentences = [unit_sentence(t) for t in texts] if units == "char" else texts
        NgramLM.estimate(sentences, token_order).write_arpa(LmDir(out).tokens_arpa)
    return lm


def stage(ctx: StageContext) -> dict:
    """The ``lm`` stage: a word n-gram model and lexicon from the training transcripts."""
    cfg: LmConfig = ctx.config
    prep = ctx.inputs["prepare"]
    texts = [  # the recipe's own transcripts: pooled corpora's (asr.corpora.pool) lend audio, not the task's words
        u.text
        for name in expand_sets(cfg.sets, manifest_names(prep))
        for u in read_manifest(prep / f"{name}.jsonl")
        if not u.pooled_from
    ]
    alphabet = {c for t in texts for c in t} - {" "}
    extra = frequent_words(cfg.extra_words, cfg.extra_language, alphabet) if cfg.extra_words else None
    phones = None
    lexicon_dir = LexiconDir(ctx.inputs["lexicon"]) if "lexicon" in ctx.inputs else None
    if cfg.units == "phone" and lexicon_dir is not None and lexicon_dir.dictionary.is_file():
        # the decoding vocabulary's pronunciations: the dictionary's, the G2P's for the rest (never a word
        # of the dev or test transcripts unless it is a training word or in the extra word list)
        vocabulary = [w for t in texts for w in t.split()] + list(extra or {})
        phones, guessed = Pronouncer(read_lexicon(lexicon_dir.dictionary)).lexicon(vocabulary)
        ctx.log(f"lm: {len(phones)} words spelled in phones, {len(guessed)} of them by the G2P")
    lm = build(texts, ctx.out, cfg.order, cfg.token_order, extra, cfg.units, phones)
    general = None
    if cfg.general:
        general = general_model(cfg.general, set(lm.vocab) | set(extra or {}), cfg.general_ngrams)
        general.write_arpa(LmDir(ctx.out).general)
        ctx.log(f"lm: general model {cfg.general}: {sum(map(len, general.probs.values()))} n-grams over the word list")
    return {
        "sentences": len(texts),
        "vocabulary": len(lm.vocab),
        "extra_words": len(extra or {}),
        "ngrams": {n: len(p) for n, p in lm.probs.items()},
        **({"general_ngrams": {n: len(p) for n, p in general.probs.items()}} if general else {}),
    }
