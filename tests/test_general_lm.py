"""A general n-gram of the language next to the in-domain one: CMU Sphinx's binary models, pruning, mixing."""

import random

import pytest

from asr.core.errors import AsrError
from asr.core.layout import LmDir
from asr.lm.ngram import BOS, EOS, MixedLM, NgramLM
from asr.lm.sphinx import HEADER, LOG10_BASE, packaged_english, read_sphinx_lm
from asr.lm.stage import LmConfig, general_model, write_lm_dir
from asr.search.beam import searcher
from asr.search.options import DecodeOptions


@pytest.fixture(scope="module")
def english():
    """pocketsphinx's US English trigram, read by us (6 s)."""
    return NgramLM(3, *read_sphinx_lm(packaged_english()))


def test_the_packaged_english_model_scores_as_pocketsphinx_scores_it(english):
    from pocketsphinx import NGramModel  # the reference: its C reader and back-off queries

    assert {n: len(p) for n, p in english.probs.items()} == {1: 72_547, 2: 2_051_541, 3: 1_669_625}
    reference = NGramModel.readfile(str(packaged_english()))
    rng = random.Random(0)
    words = rng.sample(sorted(english.vocab - {BOS}), 300)
    cases = rng.sample(sorted(english.probs[3]), 300) + rng.sample(sorted(english.probs[2]), 300)
    cases += [tuple(rng.choice(words) for _ in range(3)) for _ in range(300)]  # mostly backed off
    for g in cases:
        theirs = reference.prob(list(reversed(g))) * LOG10_BASE  # pocketsphinx takes the word, then its history
        assert english.logprob(g[-1], g[:-1]) == pytest.approx(theirs, abs=1e-3), g  # its integer log-math rounds
    assert english.logprob("york", ("new",)) > -1.0 > english.logprob("york", ("old",))  # English, as expected


def test_reading_over_a_vocabulary_keeps_every_score_over_it(english):
    rng = random.Random(1)
    vocabulary = set(rng.sample(sorted(english.vocab - {BOS, EOS}), 2000)) | {"the", "of", "new", "york"}
    small = NgramLM(3, *read_sphinx_lm(packaged_english(), vocabulary | {BOS, EOS}))
    assert small.vocab <= vocabulary | {BOS, EOS} and len(small.probs[2]) < len(english.probs[2]) / 10
    listed = sorted(vocabulary)
    for _ in range(500):
        h2, h1, w = (rng.choice(listed) for _ in range(3))
        assert small.logprob(w, (h2, h1)) == pytest.approx(english.logprob(w, (h2, h1)), abs=1e-9)
    assert small.logprob("york", (BOS, "new")) == pytest.approx(english.logprob("york", (BOS, "new")))


def test_foreign_damaged_and_missing_models_are_named(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign.lm.bin"
    foreign.write_bytes(b"Darpa Trie LM\0" + bytes(100))
    with pytest.raises(AsrError, match=f"{foreign}: not a CMU Sphinx binary"):
        read_sphinx_lm(foreign)
    cut = tmp_path / "cut.lm.bin"
    cut.write_bytes(packaged_english().read_bytes()[:1_000_000])
    with pytest.raises(AsrError, match=f"{cut}: truncated CMU Sphinx binary language model"):
        read_sphinx_lm(cut)
    blob = bytearray(packaged_english().read_bytes())
    last_unigram = len(HEADER) + 1 + 12 + 4 + 4 * 3 * 65536 + 12 * 72_547  # its pointer ends the bigrams
    blob[last_unigram + 8 : last_unigram + 12] = (2**32 - 1).to_bytes(4, "little")
    damaged = tmp_path / "damaged.lm.bin"
    damaged.write_bytes(bytes(blob))
    with pytest.raises(AsrError, match=f"{damaged}: damaged CMU Sphinx binary language model"):
        read_sphinx_lm(damaged)
    bigram = tmp_path / "bigram.lm.bin"
    bigram.write_bytes(HEADER + bytes([2]) + bytes(100))
    with pytest.raises(AsrError, match="of order 2; only trigram models"):
        read_sphinx_lm(bigram)
    with pytest.raises(AsrError, match="no such file"):
        general_model(str(tmp_path / "gone.arpa"), {"a"}, 10)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AsrError, match="pip install pocketsphinx"):
        packaged_english()


SENTENCES = ["new york is big"] * 20 + ["the big dog", "a dog is big", "the new dog", "york is old", "a big york"]


def test_pruning_keeps_the_ngrams_that_matter_and_their_histories():
    lm = NgramLM.estimate(SENTENCES, 3)
    pruned = lm.prune(2)
    assert len(pruned.probs[3]) == 2 and (BOS, "new", "york") in pruned.probs[3]  # 20 times, far above its back-off
    assert ("a", "big") in lm.probs[2] and ("a", "big") not in pruned.probs[2]  # once
    assert all(g[:-1] in pruned.probs[2] for g in pruned.probs[3])  # every kept trigram's history is kept
    for n, table in pruned.probs.items():
        assert all(lm.probs[n][g] == p for g, p in table.items())  # kept n-grams keep their probabilities
    assert pruned.probs[1] == lm.probs[1]
    # over a vocabulary and with room for everything, every score over the vocabulary is unchanged
    vocabulary = {"new", "york", "is", "big", "the"}
    kept = lm.prune(10_000, vocabulary)
    assert kept.vocab == vocabulary | {BOS, EOS, "<unk>"}
    listed = sorted(vocabulary | {EOS})
    for h2 in [BOS, *vocabulary]:
        for h1 in vocabulary:
            for w in listed:
                assert kept.logprob(w, (h2, h1)) == pytest.approx(lm.logprob(w, (h2, h1)), abs=1e-12)


def test_general_model_reads_arpa_or_sphinx_files(tmp_path):
    lm = NgramLM.estimate(SENTENCES, 3)
    lm.write_arpa(tmp_path / "general.arpa")
    small = general_model(str(tmp_path / "general.arpa"), {"new", "york", "big"}, 3)
    assert small.vocab <= {"new", "york", "big", BOS, EOS, "<unk>"} and len(small.probs[3]) <= 3
    with pytest.raises(ValueError, match="set lm.extra_words too"):
        LmConfig(general="cmusphinx-en-us")
    with pytest.raises(ValueError, match="general_ngrams must be >= 1"):
        LmConfig(extra_words=10, general="cmusphinx-en-us", general_ngrams=0)


def test_the_general_model_mixes_with_the_in_domain_one(tmp_path):
    from test_decode import TOK, posteriors

    lm = NgramLM.estimate(["no on", "on no", "no"], 2)
    extra = {"non": 2e-5, "on": 1e-3, "ban": 1e-5, "no": 5e-4}
    general = NgramLM.estimate(["a non", "non no", "ban on", "a ban"], 3)
    alone = MixedLM(lm, extra, 1.0)
    for weight in (0.0, 0.5, 0.9, 1.0):
        mixed = MixedLM(lm, extra, weight, general)
        assert mixed.order == 3
        words = [w for w in mixed.vocab if w not in (BOS, "<unk>")]
        for h in [(BOS,), ("no",), ("ban", "on"), ("non",)]:
            total = sum(10 ** mixed.logprob(w, h) for w in words)
            assert weight - 1e-9 <= total <= 1 + 1e-9, (weight, h)  # the general model's mass off the list is lost
            for w in words:
                expected = weight * 10 ** alone.logprob(w, h) + (1 - weight) * 10 ** general.logprob(w, h)
                assert 10 ** mixed.logprob(w, h) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # the lm stage's folder with a general model: the search mixes it in when the share is below one
    write_lm_dir(lm, LmDir(tmp_path), extra=extra)
    general.write_arpa(LmDir(tmp_path).general)
    search = searcher(TOK, DecodeOptions("lexicon_lm", mix_weight=0.5), tmp_path)
    assert search.lm.lm.general is not None and search(posteriors(["n", "o", "n"])).text == "non"
    assert not hasattr(searcher(TOK, DecodeOptions("lexicon_lm"), tmp_path).lm.lm, "general")  # share 1: none
