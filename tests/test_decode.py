import numpy as np
import pytest
import torch

from asr.core.ctc import greedy, greedy_frames
from asr.core.errors import AsrError
from asr.lm.ngram import BOS, LOG0, NgramLM
from asr.lm.stage import build
from asr.search.beam import searcher
from asr.search.options import DecodeOptions
from asr.text.tokenizer import CharTokenizer

TOK = CharTokenizer("abno")  # units: <blk> | a b n o


def posteriors(path: list[str], sharp: float = 8.0) -> torch.Tensor:
    """``(T, V)`` log-posteriors peaked on one unit per frame."""
    ids = [TOK.units.index(p) for p in path]
    logits = torch.full((len(ids), len(TOK)), 0.0)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = sharp
    return logits.log_softmax(-1)


def test_greedy_merges_repeats_and_drops_blanks():
    B = "<blk>"
    cases = [
        (["a", "a", B, "a", "b", "b"], "aab"),  # a blank separates a real repeat
        ([B, B, B], ""),  # all blank: empty output
        (["n", "o", "|", "o", "n"], "no on"),
        (["b"], "b"),
    ]
    lps = [posteriors(p) for p, _ in cases]
    T = max(len(lp) for lp in lps)
    batch = torch.stack([torch.cat([lp, lp.new_zeros(T - len(lp), len(TOK))]) for lp in lps])
    lengths = torch.tensor([len(lp) for lp in lps])
    out = greedy(batch, lengths)
    assert [TOK.decode(u) for u in out] == [want for _, want in cases]
    assert greedy_frames(posteriors(["a", "a", "<blk>", "b"])) == [(2, 0), (3, 3)]
    assert greedy(batch[:1, :0], torch.tensor([0])) == [[]]


def test_words_with_frames():
    text, spans = TOK.words([5, 4, 1, 4, 5], [3, 4, 6, 9, 12])
    assert text == "on no" and spans == [("on", 3, 4), ("no", 9, 12)]


def test_lm_probabilities_sum_to_one_for_every_history():
    sents = ["one two three", "two three four", "one one", "five", "two three five one", "nine eight"] * 3
    for order in (1, 2, 3, 4):
        lm = NgramLM.estimate(sents, order)
        vocab = [w for w in lm.vocab if w != BOS]
        histories = {()} | {g[:-1] for n in range(2, order + 1) for g in lm.probs[n]} | {("zero",), ("one", "nine")}
        for h in histories:
            assert sum(10 ** lm.logprob(w, h) for w in vocab) == pytest.approx(1.0, abs=1e-9), (order, h)
        assert lm.probs[1][(BOS,)] == LOG0


def test_arpa_round_trip_and_other_readers(tmp_path):
    sents = ["seven three one", "three three", "one two", "nine"] * 4 + ["zero seven"]
    lm = NgramLM.estimate(sents, 3)
    lm.write_arpa(tmp_path / "lm.arpa")
    back = NgramLM.read_arpa(tmp_path / "lm.arpa")
    probe = ["seven three one", "one one one", "zero two nine", "three"]
    for s in probe:
        assert back.sentence_logprob(s) == pytest.approx(lm.sentence_logprob(s), abs=1e-5)
    import kenlm  # the reference ARPA reader (KenLM's own Python module)

    ken = kenlm.Model(str(tmp_path / "lm.arpa"))
    for s in probe:
        assert ken.score(s, bos=True, eos=True) == pytest.approx(lm.sentence_logprob(s), abs=1e-4)
    with pytest.raises(AsrError, match="not a readable ARPA"):
        (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nnonsense\n")
        NgramLM.read_arpa(tmp_path / "bad.arpa")
    # free text before \data\, as CMU Sphinx writes it (pocketsphinx's en-us model), is read past
    (tmp_path / "header.arpa").write_text(
        "This is an ARPA-format language model file\n" + (tmp_path / "lm.arpa").read_text()
    )
    with_header = NgramLM.read_arpa(tmp_path / "header.arpa")
    assert ken.score(probe[0], bos=True, eos=True) == pytest.approx(with_header.sentence_logprob(probe[0]), abs=1e-4)
    with pytest.raises(AsrError, match="no unigrams"):
        (tmp_path / "text.arpa").write_text("u1 hello world\n")
        NgramLM.read_arpa(tmp_path / "text.arpa")


def test_beam_search_lexicon_and_lm(tmp_path):
    build(["no on", "on no", "no"], tmp_path, order=2)
    assert (tmp_path / "lexicon.txt").read_text() == "no n o |\non o n |\n"
    # clear posteriors: every decoder agrees with greedy
    lp = posteriors(["n", "o", "|", "o", "n"])
    for method in ("beam", "lexicon", "lexicon_lm"):
        decoder = searcher(TOK, DecodeOptions(method, lm_weight=0.5), tmp_path)
        best = decoder(lp)
        text, spans = best.text, best.words
        assert text == "no on" and best.score > float("-inf"), method
        assert [w for w, _, _ in spans] == ["no", "on"] and spans[0][1] <= spans[0][2] < spans[1][1] <= spans[1][2]
        if method != "beam":
            sep = posteriors(["|"])
            emissions = np.ascontiguousarray(torch.cat([lp, sep]).numpy())
            best = decoder.decoder.decode(emissions.ctypes.data, 6, emissions.shape[1])[0]
            # the lexicon words equal the words the units spell
            assert [decoder.words.get_entry(w) for w in best.words if w >= 0] == ["no", "on"]
    # a misspelling only the lexicon can fix: 'nb' is not a word, 'no' is
    lp = torch.log_softmax(torch.tensor([[0, 0, 0, 0, 9, 0], [0, 0, 0, 5, 0, 4.5]]), -1)
    assert TOK.decode(greedy(lp[None], torch.tensor([2]))[0]) == "nb"
    assert searcher(TOK, DecodeOptions("lexicon"), tmp_path)(lp).text == "no"
    with pytest.raises(AsrError, match="needs a lexicon"):
        searcher(TOK, DecodeOptions("lexicon"), None)


def test_a_word_cut_off_by_the_end_of_the_audio_is_left_out_not_spelled(tmp_path):
    build(["no on", "on no", "no"], tmp_path, order=2)
    lp = posteriors(["n", "o", "|", "o"])  # "o": the start of "on", cut off
    for method in ("lexicon", "lexicon_lm"):
        # a beam of one keeps no hypothesis that finished its last word: flashlight returns one that ends inside
        # "on" (its units then spelled "no on", or "no o", which is no word); a lexicon search outputs words only
        assert searcher(TOK, DecodeOptions(method, beam_size=1), tmp_path)(lp).words == [("no", 0, 1)], method


def test_beam_search_from_an_arpa_file_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    build(["no on", "on no", "no"], tmp_path / "lm", order=2)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    decoder = searcher(TOK, DecodeOptions("lexicon_lm"), tmp_path / "lm" / "lm.arpa")
    assert decoder(posteriors(["n", "o", "|", "o", "n"])).text == "no on"
    assert list(scratch.iterdir()) == []


def test_open_vocabulary_decoding_with_a_unit_lm(tmp_path):
    from asr.lm.stage import unit_sentence

    texts = ["no on", "on no", "no"]
    build(texts, tmp_path, order=2, token_order=3)
    # the unit LM's probabilities sum to one for every history (units, the separator and </s>)
    unit_lm = NgramLM.read_arpa(tmp_path / "tokens.arpa")
    vocab = [w for w in unit_lm.vocab if w != BOS]
    assert set(vocab) >= {"n", "o", "|", "</s>"} and unit_sentence("no on") == "n o | o n"
    for h in {()} | {g[:-1] for n in (2, 3) for g in unit_lm.probs[n]}:
        assert sum(10 ** unit_lm.logprob(w, h) for w in vocab) == pytest.approx(1.0, abs=1e-5), h  # ARPA: 6 decimals
    # "non" never occurs in the training text: the lexicon cannot produce it, the unit LM can
    lp = posteriors(["n", "o", "n"])
    assert searcher(TOK, DecodeOptions("lexicon_lm"), tmp_path)(lp).text != "non"
    best = searcher(TOK, DecodeOptions("beam_lm", lm_weight=0.5), tmp_path)(lp)
    text, spans = best.text, best.words
    assert text == "non" and [w for w, _, _ in spans] == ["non"]
    # and where the acoustics are unsure ("nb" or "no"), the unit LM picks what the language says
    lp = torch.log_softmax(torch.tensor([[0, 0, 0, 0, 9, 0], [0, 0, 0, 5, 0, 4.5]]), -1)
    assert searcher(TOK, DecodeOptions("beam"), tmp_path)(lp).text == "nb"
    assert searcher(TOK, DecodeOptions("beam_lm"), tmp_path)(lp).text == "no"
    # trying only the likeliest unit of each frame, the LM has nothing to choose from
    assert searcher(TOK, DecodeOptions("beam_lm", beam_size_token=1), tmp_path)(lp).text == "nb"
    assert searcher(TOK, DecodeOptions("beam_lm", beam_size_token=2), tmp_path)(lp).text == "no"
    with pytest.raises(AsrError, match="needs a unit n-gram"):
        searcher(TOK, DecodeOptions("beam_lm"), None)


def test_word_frames_are_the_frames_of_their_units(tmp_path):
    build(["no on", "on no"], tmp_path, 2, 3)
    lp = posteriors(["n", "o", "|", "o", "n"])
    for method in ("beam", "beam_lm", "lexicon", "lexicon_lm"):  # flashlight's start and end states not counted
        best = searcher(TOK, DecodeOptions(method), tmp_path)(lp)
        assert (best.text, best.words) == ("no on", [("no", 0, 1), ("on", 3, 4)]), method


def test_a_large_word_list_mixed_with_the_ngram_opens_the_lexicon(tmp_path):
    from asr.core.layout import LmDir
    from asr.lm.ngram import MixedLM, read_unigrams
    from asr.lm.stage import write_lm_dir

    texts = ["no on", "on no", "no"]
    lm = NgramLM.estimate(texts, 2)
    extra = {"non": 2e-5, "on": 1e-3, "ban": 1e-5, "no": 5e-4}
    write_lm_dir(lm, LmDir(tmp_path), extra=extra)
    assert read_unigrams(tmp_path / "unigrams.tsv") == pytest.approx(extra)
    assert "non n o n |" in (tmp_path / "lexicon.txt").read_text()
    for weight in (0.0, 0.5, 0.9, 1.0):  # every history sums to one over the words and </s>
        mixed = MixedLM(lm, extra, weight)
        vocab = [w for w in mixed.vocab if w not in (BOS, "<unk>")]
        for h in [(BOS,), ("no",), ("on",), ("non",)]:
            assert sum(10 ** mixed.logprob(w, h) for w in vocab) == pytest.approx(1.0, abs=1e-9), (weight, h)
    # "non" is not in the training text: the word list puts it in the lexicon, the mixture scores it
    lp = posteriors(["n", "o", "n"])
    assert searcher(TOK, DecodeOptions("lexicon_lm", mix_weight=0.5), tmp_path)(lp).text == "non"


def _subword_posteriors(tok, frames: list[dict[str, float]]) -> torch.Tensor:
    """``(T, V)`` log-posteriors: each frame a dict of piece -> logit (the rest 0)."""
    logits = torch.zeros(len(frames), len(tok))
    for t, f in enumerate(frames):
        for piece, v in f.items():
            logits[t, tok.units.index(piece)] = v
    return logits.log_softmax(-1)


def test_subword_models_decode_open_vocabulary_with_the_character_ngram(tmp_path):
    from asr.lm.ngram import EOS
    from asr.lm.stage import unit_sentence
    from asr.search.beam import SpelledLM
    from asr.text.tokenizer import SubwordTokenizer

    texts = ["no on", "on no", "no"]
    build(texts, tmp_path, order=2, token_order=3)
    chars = NgramLM.read_arpa(tmp_path / "tokens.arpa")
    tok = SubwordTokenizer.train(texts + ["bob ban", "an obo"], 9)
    assert {"▁no", "▁o", "n", "o", "b"} <= set(tok.units)
    # over a sentence, the pieces' scores add up to the character n-gram's score of its text
    spelled = SpelledLM(chars)
    for text in ("no on", "on no no", "non", "bob ban", "noon o"):
        pieces = [tok.units[i] for i in tok.encode(text)]
        hist, total = (BOS,), 0.0
        for p in [*pieces, EOS]:
            total += spelled.logprob(p, hist[-(spelled.order - 1) :])
            hist = (*hist, p)
        assert total == pytest.approx(chars.sentence_logprob(unit_sentence(text)), abs=1e-9), (text, pieces)
    # "non" never occurs in the training text: the pieces spell it, the LM scores it
    lp = _subword_posteriors(tok, [{"▁no": 8}, {"n": 8}])
    best = searcher(tok, DecodeOptions("beam_lm", lm_weight=0.5), tmp_path)(lp)
    text, spans = best.text, best.words
    assert text == "non" and [w for w, _, _ in spans] == ["non"]
    # where the acoustics are unsure ("nob" or "non"), the LM picks what the language says
    lp = _subword_posteriors(tok, [{"▁no": 9}, {"b": 5, "n": 4.5}])
    assert searcher(tok, DecodeOptions("beam"), tmp_path)(lp).text == "nob"
    assert searcher(tok, DecodeOptions("beam_lm"), tmp_path)(lp).text == "non"
    # the word score is a bonus per word (each word-initial piece), whatever the LM weight
    lp = _subword_posteriors(tok, [{"▁no": 9}, {"o": 5, "▁o": 4.5}, {"n": 9}])
    assert searcher(tok, DecodeOptions("beam_lm", lm_weight=0.01), tmp_path)(lp).text == "noon"
    assert searcher(tok, DecodeOptions("beam_lm", lm_weight=0.01, word_score=2.0), tmp_path)(lp).text == "no on"
    with pytest.raises(AsrError, match="needs character units"):
        searcher(tok, DecodeOptions("lexicon_lm"), tmp_path)
