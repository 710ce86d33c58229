"""Transcripts people use: long recordings cut at pauses into timed segments, subtitles and other file formats
(checked with the `srt` and `webvtt-py` parsers), and the service's formats through OpenAI's own client."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import soundfile as sf
from helpers import asr, serving

from asr.data.audio import load_audio
from asr.data.manifest import read_manifest
from asr.recognize.recognizer import load_model
from asr.text.formats import CUE_LINES, CUE_SECONDS, LINE_CHARS, cues


@pytest.fixture(scope="module")
def long_recording(fsdd_work, tmp_path_factory):
    """40 isolated test digits (8 kHz) joined with pauses of 1-2 s of quiet room noise (-80 dBFS): past the
    30 s in which a file is decoded in one pass; the pauses' (start, end) seconds, and each digit's own text."""
    utts = read_manifest(fsdd_work / "prepare" / "isolated" / "test.jsonl")[::5][:40]
    rng = np.random.default_rng(0)
    pieces, pauses, at = [], [], 0
    for u in utts:
        wave = load_audio(u.audio, 8_000)
        gap = (1e-4 * rng.standard_normal(int(rng.uniform(1.0, 2.0) * 8_000))).astype(np.float32)
        pieces += [wave, gap]
        pauses.append(((at + len(wave)) / 8_000, (at + len(wave) + len(gap)) / 8_000))
        at += len(wave) + len(gap)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(str(path), np.concatenate(pieces), 8_000)
    return path, pauses[:-1], utts


def test_a_long_recording_is_cut_in_its_pauses_into_segments_decoded_as_utterances(fsdd_work, long_recording):
    path, pauses, utts = long_recording
    rec = load_model(fsdd_work / "model.pt", threads=1)
    alone = " ".join(rec.transcribe(u.audio).text for u in utts)
    t = rec.transcribe(path)
    assert t.text == " ".join(s.text for s in t.segments) and t.words == [w for s in t.segments for w in s.words]
    for p0, p1 in pauses:  # no segment runs across a pause between two digits
        assert not any(s.start < p0 + 0.3 and s.end > p1 - 0.3 for s in t.segments), (p0, p1)
    assert all(s.start <= w.start < w.end <= s.end + 0.05 for s in t.segments for w in s.words)
    rec.vad = False  # the fixed chunks of before: cut in the best path's pauses near every 30 s
    chunked = rec.transcribe(path)
    # nearer each digit decoded on its own than the chunks are. This short test model is far from its isolated
    # self on long files (18% off it with the 0.25 s pad, 13% with 0.2 s) where full models are near theirs (the
    # fsdd recipe's on its dev joined: 1.5% against 2.0% alone; AN4 and speechocean762: docs/transcribing.md)
    assert jiwer.wer(alone, t.text) <= 0.2 and jiwer.wer(alone, t.text) < jiwer.wer(alone, chunked.text)


def test_a_word_in_long_noise_is_recognised_as_when_alone(fsdd_work, long_recording):
    _, _, utts = long_recording
    rec = load_model(fsdd_work / "model.pt", threads=1)
    wave = load_audio(utts[3].audio, 8_000)
    noise = (10 ** (-80 / 20) * np.random.default_rng(1).standard_normal(8_000 * 45)).astype(np.float32)
    t = rec.transcribe(np.concatenate([noise[: 8_000 * 20], wave, noise[8_000 * 20 :]]), 8_000)
    assert t.text == rec.transcribe(wave, 8_000).text and len(t.segments) == 1
    assert 19.5 < t.segments[0].start < 20.1 and t.segments[0].end < 20.5 + len(wave) / 8_000


def test_transcribe_writes_every_format_and_the_subtitles_parse(fsdd_work, long_recording, tmp_path):
    import srt
    import webvtt

    path, _, _ = long_recording
    out = tmp_path / "out"
    asr("transcribe", str(fsdd_work / "model.pt"), str(path), "--format", "all", "--output-dir", str(out))
    assert sorted(p.name for p in out.iterdir()) == [f"long.{f}" for f in ("ctm", "json", "srt", "tsv", "txt", "vtt")]
    t = json.loads((out / "long.json").read_text())
    subtitles = list(srt.parse((out / "long.srt").read_text()))
    captions = webvtt.read(str(out / "long.vtt"))
    assert len(subtitles) == len(captions) >= len(t["segments"]) > 1
    assert " ".join(s.content.replace("\n", " ") for s in subtitles) == t["text"]
    for s in subtitles:
        lines = s.content.split("\n")
        assert len(lines) <= CUE_LINES and all(len(x) <= LINE_CHARS for x in lines)
        assert (s.end - s.start).total_seconds() <= CUE_SECONDS
    ctm = [line.split() for line in (out / "long.ctm").read_text().splitlines()]
    assert [x[4] for x in ctm] == t["text"].split() and all(x[:2] == ["long", "1"] for x in ctm)
    tsv = (out / "long.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\ttext" and [r.split("\t")[2] for r in tsv[1:]] == [s["text"] for s in t["segments"]]
    assert (out / "long.txt").read_text() == t["text"] + "\n"


def test_cues_keep_to_two_lines_of_42_characters_and_seven_seconds():
    from asr.text.transcript import Segment, Transcript, Word

    words = [Word(f"word{k:02d}", 0.4 * k, 0.4 * k + 0.3) for k in range(60)]  # 24 s of speech, no pause
    t = Transcript(" ".join(w.word for w in words), words, segments=[Segment(0.0, 24.0, "", words)])
    made = cues(t)
    assert " ".join(" ".join(c.lines) for c in made) == t.text
    assert all(len(c.lines) <= 2 and all(len(x) <= 42 for x in c.lines) and c.end - c.start <= 7 for c in made)
    assert len(made) == 5  # 12 words of 6 letters fill two lines


@pytest.fixture(scope="module")
def server(fsdd_work):
    with serving(fsdd_work / "model.pt") as url:
        yield url


def test_openai_s_own_client_gets_every_response_format(server, fsdd_work, long_recording):
    import openai
    import srt
    import webvtt

    path, _, _ = long_recording
    client = openai.OpenAI(base_url=server + "v1", api_key="unused", max_retries=0)
    direct = load_model(fsdd_work / "model.pt").transcribe(path)

    def ask(**kw):
        with open(path, "rb") as f:
            return client.audio.transcriptions.create(model="whisper-1", file=f, **kw)

    assert ask().text == direct.text
    assert ask(response_format="text").strip() == direct.text
    assert [s.content for s in srt.parse(ask(response_format="srt"))]
    vtt_text = ask(response_format="vtt")
    assert vtt_text.startswith("WEBVTT") and len(webvtt.from_string(vtt_text).captions) > 1
    v = ask(response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert v.text == direct.text and len(v.segments) == len(direct.segments) > 1
    assert [s.text for s in v.segments] == [s.text for s in direct.segments]
    assert all(s.start < s.end and s.id == k for k, s in enumerate(v.segments))
    assert [w.word for w in v.words] == direct.text.split()
    words_only = ask(response_format="verbose_json", timestamp_granularities=["word"])
    assert words_only.words and not getattr(words_only, "segments", None)
    with pytest.raises(openai.BadRequestError, match="timestamp_granularities"):
        ask(response_format="json", timestamp_granularities=["word"])


def test_evaluate_scores_a_corpus_s_own_upper_case_references_as_the_recipe_did(fsdd_work, tmp_path):
    """speechocean762's test folder, upper case as the corpus ships it, scored 103.4% against a lower-case model
    (RESULTS.md: 52%) and nothing said why."""
    import dataclasses

    from asr.data.manifest import write_manifest

    utts = read_manifest(fsdd_work / "prepare" / "connected" / "test.jsonl")[:20]
    write_manifest(tmp_path / "lower.jsonl", utts)
    write_manifest(tmp_path / "upper.jsonl", [dataclasses.replace(u, text=u.text.upper() + ".") for u in utts])
    model = str(fsdd_work / "model.pt")
    lower = asr("evaluate", model, str(tmp_path / "lower.jsonl"))
    upper = asr("evaluate", model, str(tmp_path / "upper.jsonl"), "--nj", "2")  # two workers, progress lines
    assert upper.stdout == lower.stdout  # the same WER and CER lines
    assert "20 of 20 references normalised as the model writes" in upper.stderr
    assert "asr evaluate: 20/20 files, " in upper.stderr
    raw = asr("evaluate", model, str(tmp_path / "upper.jsonl"), "--raw-references", check=False)
    words = sum(len(u.text.split()) for u in utts)
    assert "%WER 100.00" in raw.stdout and f"{words} reference word(s) in 20 utterance(s) hold characters" in raw.stderr
    # asr wer with the model scores the same upper-case text files as the recipe did
    (tmp_path / "ref.txt").write_text("".join(f"{u.id} {u.text.upper()}.\n" for u in utts))
    (tmp_path / "hyp.txt").write_text("".join(f"{u.id} {u.text}\n" for u in utts))
    wer = asr("wer", str(tmp_path / "ref.txt"), str(tmp_path / "hyp.txt"), "--model", model)
    assert "%WER 0.00" in wer.stdout and "20 of 20 references (and the hypotheses) normalised" in wer.stderr


def test_a_batch_of_folders_and_lists_is_decoded_by_workers_and_resumed(fsdd_work, fsdd_recordings, tmp_path):
    import shutil

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for k in range(6):
        shutil.copy(fsdd_recordings / f"{k}_theo_5.wav", src / f"{k}.wav")
        shutil.copy(fsdd_recordings / f"{k}_jackson_5.wav", src / "sub" / f"{k}.wav")  # same names, a subfolder
    (src / "notes.txt").write_text("not audio: left out of the folder's inputs")
    (tmp_path / "list.txt").write_text(f"# a list file\n{fsdd_recordings / '7_theo_5.wav'}\n")
    (src / "sub" / "broken.wav").write_bytes(b"RIFF0000WAVE")  # named, the others still done
    out, model = tmp_path / "out", str(fsdd_work / "model.pt")
    r = asr("transcribe", model, str(src), f"@{tmp_path / 'list.txt'}", "--output-dir", str(out), "--nj", "2",
            "--format", "json", check=False)  # fmt: skip
    assert r.returncode == 1 and "broken.wav" in r.stderr and "Traceback" not in r.stderr, r.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.json"))
    assert written == sorted([f"{k}.json" for k in range(6)] + [f"sub/{k}.json" for k in range(6)] + ["7_theo_5.json"])
    assert "14/14 files, " in r.stderr  # progress lines when standard error is no terminal
    direct = load_model(model)
    for k in range(6):
        assert (
            json.loads((out / "sub" / f"{k}.json").read_text())["text"]
            == direct.transcribe(src / "sub" / f"{k}.wav").text
        )
    (out / "3.json").unlink()  # as a killed batch leaves it: one output missing
    r = asr("transcribe", model, str(src), "--output-dir", str(out), "--format", "json", "--skip-existing", check=False)
    assert "11 input(s) already transcribed, skipped" in r.stderr and (out / "3.json").is_file(), r.stderr
