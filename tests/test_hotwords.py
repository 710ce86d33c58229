"""Custom words (hotwords): a word the decoder's word list lacks is added and recognised, phrases are boosted as
wholes, bad lists are named by line, and the service takes them per request (a form field, or new words of the
prompt), on real FSDD speech with a word list that lacks "seven". And ensembles of models, the other decoder
option."""

from __future__ import annotations

import pytest
from helpers import asr, serving

from asr.core.errors import AsrError
from asr.core.layout import LmDir
from asr.data.manifest import read_manifest
from asr.lm.ngram import NgramLM
from asr.lm.stage import write_lm_dir
from asr.recognize.recognizer import load_model
from asr.search.hotwords import DEFAULT_BOOST, Hotword, PhraseBoost, parse_hotwords

DIGITS = "zero one two three four five six seven eight nine".split()


def walk(boost: PhraseBoost, words: list[str]) -> float:
    """What a hypothesis of ``words`` earns in all (its end included)."""
    node, total = (), 0.0
    for w in words:
        node, change = boost.step(node, w)
        total += change
    return total + boost.finish(node)


def test_a_phrase_earns_its_boost_only_when_finished():
    boost = PhraseBoost([Hotword(("new", "york"), 2.0), Hotword(("cohen",), 3.0)])
    assert walk(boost, ["new", "york"]) == pytest.approx(4.0)
    assert walk(boost, ["new", "jersey"]) == pytest.approx(0.0)  # "new" alone gives back what it earned
    assert walk(boost, ["new"]) == pytest.approx(0.0)  # ended inside the phrase
    assert walk(boost, ["mr", "cohen", "of", "new", "new", "york"]) == pytest.approx(7.0)
    assert walk(boost, ["the", "cat"]) == 0.0
    # one step of the search sees the gain at once (it guides the beam), the give-back comes when the phrase is left
    assert boost.step((), "new") == (("new",), 2.0)
    assert boost.step(("new",), "jersey") == ((), -2.0)


def test_a_phrase_inside_a_longer_one_keeps_its_gain():
    boost = PhraseBoost([Hotword(("new", "york"), 1.0), Hotword(("new", "york", "city"), 1.0)])
    assert walk(boost, ["new", "york"]) == pytest.approx(2.0)
    assert walk(boost, ["new", "york", "city"]) == pytest.approx(3.0)
    assert walk(boost, ["new", "york", "state"]) == pytest.approx(2.0)


def test_hotword_lines_take_a_boost_and_bad_lines_are_named():
    got = parse_hotwords(["# names", "", "cohen", "new york :2.5", "cohen :1"], "list.txt")
    assert got == [Hotword(("cohen",), 1.0), Hotword(("new", "york"), 2.5)]
    assert parse_hotwords(["x"], boost=7.0) == [Hotword(("x",), 7.0)]
    assert parse_hotwords(["x"])[0].boost == DEFAULT_BOOST
    with pytest.raises(AsrError, match=r"list.txt: 3 bad line\(s\): line 1: boost 'abc'.*line 2: .*line 3: a word of"):
        parse_hotwords(["x :abc", "y :nan", "z" * 65], "list.txt")


@pytest.fixture(scope="module")
def without_seven(tmp_path_factory) -> LmDir:
    """An lm folder (bigram, lexicon, word list) of the other nine digits: "seven" cannot come out."""
    d = LmDir(tmp_path_factory.mktemp("lm_without_seven"))
    write_lm_dir(NgramLM.estimate([w for w in DIGITS if w != "seven"], order=2), d)
    return d


@pytest.fixture(scope="module")
def isolated(fsdd_work):
    utts = read_manifest(fsdd_work / "prepare" / "isolated" / "test.jsonl")
    return [u for u in utts if u.text == "seven"][:12], [u for u in utts if u.text != "seven"][::9][:24]


def test_a_word_the_word_list_lacks_is_recognised_as_a_hotword(fsdd_work, without_seven, isolated, tmp_path):
    sevens, others = isolated
    for method in ("lexicon_lm", "lexicon"):
        rec = load_model(fsdd_work / "model.pt", lm=without_seven.root, threads=1, method=method)
        assert not any(rec.transcribe(u.audio).text == "seven" for u in sevens)
        hot = rec.with_hotwords([Hotword(("seven",))])
        assert hot.addable(["seven", "eight"]) == [] and rec.addable(["seven", "eight", "sieben"]) == ["seven"]
        recall = sum(hot.transcribe(u.audio).text == "seven" for u in sevens) / len(sevens)
        before = sum(rec.transcribe(u.audio).text == u.text for u in others)
        after = sum(hot.transcribe(u.audio).text == u.text for u in others)
        assert recall >= 0.9, (method, recall)
        assert after >= before - 1, (method, before, after)  # no loss on the words that were never missing

    # hotwords leave the n-gram's weight as it was: at weight 0 an n-gram that all but forbids every digit but
    # "one" still counts for nothing, and a known word at boost 0 decodes exactly as the search without hotwords
    skewed = LmDir(tmp_path / "skewed")
    skewed.root.mkdir()
    write_lm_dir(NgramLM.estimate(["one"] * 20_000 + DIGITS, order=1), skewed)
    rec = load_model(fsdd_work / "model.pt", lm=skewed.root, threads=1, method="lexicon_lm", lm_weight=0.0)
    same = rec.with_hotwords([Hotword(("eight",), 0.0)])
    texts = [rec.transcribe(u.audio).text for u in others]
    assert [same.transcribe(u.audio).text for u in others] == texts and texts.count("one") < len(texts) / 2


def test_hotwords_from_the_command_line_and_their_errors(fsdd_work, without_seven, isolated, tmp_path):
    sevens, _ = isolated
    good = tmp_path / "hot.txt"
    good.write_text("# the word the list lacks\nSeven\n")
    out = asr("transcribe", fsdd_work / "model.pt", sevens[0].audio, "--lm", without_seven.root, "--hotwords", good)
    assert out.stdout.split("\t")[1].strip() == "seven"  # written as the model writes its words
    bad = tmp_path / "bad.txt"
    bad.write_text("seven :lots\n")
    for flags, message in [
        (["--hotwords", bad], "bad.txt: 1 bad line(s): line 1: boost 'lots' is not a number"),
        (["--hotwords", tmp_path / "none.txt"], "none.txt: no such hotword file"),
        (["--hotwords", good, "--method", "greedy"], "hotwords need a lexicon decoder"),
        (["--hotword-boost", "3"], "--hotword-boost needs --hotwords FILE"),
    ]:
        out = asr("transcribe", fsdd_work / "model.pt", sevens[0].audio, *flags, check=False)
        assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    spelled = tmp_path / "spelled.txt"
    spelled.write_text("sieben\n")  # a character model of digit names has no "b"
    out = asr("transcribe", fsdd_work / "model.pt", sevens[0].audio, "--hotwords", spelled, check=False)
    assert "'sieben' needs b" in out.stderr and "Traceback" not in out.stderr


def test_the_service_takes_hotwords_and_new_words_of_the_prompt_per_request(fsdd_work, without_seven, isolated):
    import openai

    sevens, _ = isolated
    with serving(fsdd_work / "model.pt", "--lm", str(without_seven.root)) as url:
        client = openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0)

        def ask(**kw) -> str:
            with open(sevens[0].audio, "rb") as f:
                return client.audio.transcriptions.create(model="m", file=f, **kw).text

        assert ask() != "seven"
        assert ask(extra_body={"hotwords": "seven :4"}) == "seven"
        assert ask(prompt="Digits, such as Seven.") == "seven"  # "seven" is the prompt's word the list lacks
        assert ask() != "seven"  # a request's words are its own
        with pytest.raises(openai.BadRequestError, match="line 1: boost"):
            ask(extra_body={"hotwords": "seven :x"})
        with pytest.raises(openai.BadRequestError, match="101 lines; a request takes at most 100"):
            ask(extra_body={"hotwords": "seven\n" * 101})


def test_an_ensemble_scores_every_member_s_proposals_with_every_member(fsdd_work, fsdd_stream_work, isolated):
    """Ensembles share this module's model: each member's lexicon search proposes word sequences and every
    member scores them by CTC; the model with itself decodes as alone, two members sure of "eight" outvote it on a
    "seven", and a search without a lexicon, a member with other units or a streaming one are refused by name."""
    import numpy as np

    from asr.data.audio import load_audio
    from asr.recognize.recognizer import Recognizer

    sevens, others = isolated
    alone = load_model(fsdd_work / "model.pt", threads=1)
    twice = load_model(fsdd_work / "model.pt", threads=1, ensemble=[fsdd_work / "model.pt"])
    samples = load_audio(sevens[0].audio, alone.sample_rate)
    units = len(alone.tokenizer.units)
    np.testing.assert_allclose(twice.log_probs(samples), np.tile(alone.log_probs(samples), 2), atol=1e-5)
    for u in sevens[:3] + others[:6]:
        assert twice.transcribe(u.audio).text == alone.transcribe(u.audio).text
    assert twice.addable(["ten", "seven"]) == alone.addable(["ten", "seven"]) == ["ten"]  # what hotwords would add

    def sure_of_eight(feats):  # a member whose every take says "eight": blank, then e i g h t, then blank
        frames = len(alone.network(feats))
        lp = np.full((frames, units), np.log(0.01 / (units - 1)), np.float32)
        path = np.zeros(frames, int)
        spelled = alone.tokenizer.encode("eight")
        path[frames // 3 : frames // 3 + len(spelled)] = spelled
        lp[np.arange(frames), path] = np.log(0.99)
        return lp

    eight = (alone.model, sure_of_eight)
    assert alone.transcribe(samples, alone.sample_rate).text == "seven"
    outvoted = Recognizer(alone.model, alone.network, alone.options, ensemble=[eight, eight])
    assert outvoted.transcribe(samples, alone.sample_rate).text == "eight"
    with pytest.raises(AsrError, match="an ensemble combines its members' word hypotheses through a lexicon"):
        load_model(fsdd_work / "model.pt", ensemble=[fsdd_work / "model.pt"], method="greedy")
    with pytest.raises(AsrError, match="streaming models run alone"):
        load_model(fsdd_work / "model.pt", ensemble=[fsdd_stream_work / "model.pt"])


def test_ctc_likelihoods_of_the_ensemble_are_torch_s():
    """The ensemble's CTC forward pass (numpy, so that ONNX models need no torch) gives torch's CTC loss, for
    empty, repeated and too long label sequences alike."""
    import numpy as np
    import torch

    from asr.search.ensemble import ctc_log_likelihood

    rng = np.random.default_rng(0)
    labels = [[], [1], [1, 1], [2, 3, 2], [1, 2, 3, 4, 5, 1, 2], [3, 3, 3]]
    for frames in (1, 2, 5, 30):
        x = rng.normal(size=(frames, 6))
        lp = x - np.log(np.exp(x).sum(1, keepdims=True))
        ours = ctc_log_likelihood(lp, labels)
        for seq, got in zip(labels, ours):
            loss = torch.nn.functional.ctc_loss(
                torch.tensor(lp)[:, None],
                torch.tensor([seq], dtype=torch.long).reshape(1, len(seq)),
                torch.tensor([frames]),
                torch.tensor([len(seq)]),
                reduction="sum",
            )
            assert got == pytest.approx(-loss.item(), abs=1e-6) or (np.isinf(got) and np.isinf(loss.item()))
