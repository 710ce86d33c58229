"""Pooling other corpora's training utterances into a recipe's training sets (asr.corpora.pool) on the shared
copies: which sets take them, how they are named and weighted, resampled, kept out of the word model, and keyed."""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from asr import corpora
from asr.core.errors import ConfigError, CorpusError
from asr.corpora import an4, fsdd, pool
from asr.data.batching import make_batches
from asr.data.manifest import read_manifest, write_manifest
from asr.features.store import FeatureStore
from asr.pipeline import recipe


def _ctx(cfg, out):
    return SimpleNamespace(config=cfg, out=out, log=lambda m: None)


def test_pooled_utterances_join_every_training_set_and_no_other(corpora_root, so762_root, an4_root, tmp_path):
    cfg = fsdd.FsddConfig(
        connected_train=20,
        connected_dev=5,
        connected_test=5,
        corpus_dir=str(corpora_root),
        pool=("speechocean762", "an4:0.5"),
        pool_words="task",
    )
    out = tmp_path / "prep"
    result = pool.pooled(fsdd.stage)(_ctx(cfg, out))
    lent = result["pooled"]
    assert lent == pool.read(out)
    assert lent["speechocean762"]["utterances"] == 77 and lent["speechocean762"]["speakers"] == 26
    assert lent["an4"]["utterances"] == 137 and lent["an4"]["speakers"] == 69 and lent["an4"]["weight"] == 0.5
    fsdd_speakers = {r.speaker for r in fsdd.scan(corpora_root / "fsdd" / "recordings")}
    training = ["isolated/train", "connected/train"] + [f"loso/{s}/train" for s in sorted(fsdd_speakers)]
    for name in training:
        utts = read_manifest(out / f"{name}.jsonl")
        others = [u for u in utts if u.speaker not in fsdd_speakers]
        assert len(others) == 77 + 137, name
        for u in others:
            corpus = u.pooled_from
            assert u.id.startswith(f"{corpus}-") and u.speaker.startswith(f"{corpus}-"), u
            assert u.weight == (0.5 if corpus == "an4" else 1.0)
            assert set(u.text.split()) <= set(fsdd.DIGIT_WORDS)  # pool_words=task: digit strings only
            assert Path(u.audio).is_absolute() and Path(u.audio).is_file()
    # the recipe's own lines are kept as written: connected-digit audio stays relative to its manifest
    first = json.loads((out / "connected" / "train.jsonl").read_text().splitlines()[0])
    assert not Path(first["audio"]).is_absolute()
    for name in ["isolated/dev", "isolated/test", "connected/dev", "connected/test"] + [
        f"loso/{s}/{split}" for s in fsdd_speakers for split in ("dev", "test")
    ]:
        assert all(u.speaker in fsdd_speakers and not u.pooled_from for u in read_manifest(out / f"{name}.jsonl"))
    # the upstream test splits lend nothing: only training-split audio
    assert all("/test/" not in u.audio for n in training for u in read_manifest(out / f"{n}.jsonl"))


def test_each_pooled_corpus_can_choose_its_own_utterances(corpora_root, so762_root, an4_root, tmp_path):
    """NAME:task / NAME:all in prepare.pool choose one corpus's utterances apart from prepare.pool_words."""
    assert corpora.pool_entries(("an4:0.5:task", "speechocean762", "espeak:0.2"), "all") == [
        corpora.PoolEntry("an4", 0.5, "task"),
        corpora.PoolEntry("speechocean762", 1.0, "all"),
        corpora.PoolEntry("espeak", 0.2, "all"),
    ]
    assert corpora.pool_entries(("an4:all", "speechocean762:2"), "task") == [
        corpora.PoolEntry("an4", 1.0, "all"),
        corpora.PoolEntry("speechocean762", 2.0, "task"),
    ]
    cfg = fsdd.FsddConfig(
        connected_train=0,
        connected_dev=0,
        connected_test=0,
        corpus_dir=str(corpora_root),
        pool=("speechocean762:task", "an4:0.5"),  # all of AN4 (pool_words' default), speechocean762's digit strings
    )
    out = tmp_path / "prep"
    lent = pool.pooled(fsdd.stage)(_ctx(cfg, out))["pooled"]
    assert lent["speechocean762"]["utterances"] == 77 and lent["speechocean762"]["words"] == "task"
    assert lent["an4"]["utterances"] == 948 and lent["an4"]["words"] == "all"
    utts = read_manifest(out / "loso" / "theo" / "train.jsonl")
    so762 = [u for u in utts if u.pooled_from == "speechocean762"]
    assert len(so762) == 77 and all(set(u.text.split()) <= set(fsdd.DIGIT_WORDS) for u in so762)
    assert any(not set(u.text.split()) <= set(fsdd.DIGIT_WORDS) for u in utts if u.pooled_from == "an4")
    assert "speechocean762: 77 utterances, 26 speakers" in pool.describe(lent)
    assert "weight 1, task words" in pool.describe(lent) and "weight 0.5, task" not in pool.describe(lent)
    assert "speechocean762 (weight 1, task words), an4 (weight 0.5)" in pool.status(cfg, tmp_path / "none")


def test_pooled_corpora_are_part_of_the_prepare_key(corpora_root, so762_root, an4_root, tmp_path):
    def keys(*sets):
        pipe = recipe.pipeline("fsdd_loso", str(tmp_path / "w"), list(sets), str(corpora_root))
        return pipe.keys["prepare"], pipe.data["prepare"]

    default, stamps = keys()
    assert any("an4_train.transcription" in f for f in stamps) and stamps["pool an4"] == f"version {an4.VERSION}"
    both, both_stamps = keys("prepare.pool=speechocean762,an4:0.5")
    assert any(f.startswith(str(so762_root)) for f in both_stamps)
    alone, alone_stamps = keys("prepare.pool=")
    assert not any("an4" in f for f in alone_stamps)
    weighted, _ = keys("prepare.pool=an4")
    assert len({default, alone, weighted, both}) == 4


def test_pool_settings_are_checked(corpora_root, tmp_path):
    with pytest.raises(ConfigError, match="unknown corpus 'timit'.*an4"):
        recipe.pipeline("fsdd", str(tmp_path / "w"), ["prepare.pool=timit"], str(corpora_root))
    for bad in ("an4:0", "an4:x", "an4,an4", "an4:0.5:2", "an4:task:all", "espeak:task"):
        with pytest.raises(ConfigError, match="pool"):
            recipe.pipeline("fsdd", str(tmp_path / "w"), [f"prepare.pool={bad}"], str(corpora_root))
    cfg = fsdd.FsddConfig(connected_train=2, connected_dev=1, connected_test=1, corpus_dir=str(corpora_root))
    with pytest.raises(CorpusError, match="this recipe's own corpus"):
        pool.pooled(fsdd.stage)(_ctx(dataclasses.replace(cfg, pool=("fsdd",)), tmp_path / "p"))


def test_weights_set_how_often_a_pass_sees_an_utterance():
    frames = np.arange(10, 110, dtype=np.int64)
    plain = make_batches(frames, 400, 3, 0)
    assert make_batches(frames, 400, 3, 0, np.ones(100)) == plain  # weight 1: the batches as before
    weights = np.where(np.arange(100) < 50, 0.5, 2.0)
    seen = np.zeros(100)
    for epoch in range(40):
        for batch in make_batches(frames, 400, epoch, 0, weights):
            np.add.at(seen, batch, 1)
    assert np.all(seen[50:] == 80)  # weight 2: twice in every pass
    assert 0.4 < seen[:50].mean() / 40 < 0.6 and seen[:50].min() > 5  # 0.5: every other pass on average
    assert make_batches(frames, 400, 7, 0, weights) == make_batches(frames, 400, 7, 0, weights)  # seeded


def test_a_pooled_corpus_is_resampled_and_kept_out_of_the_word_model(corpora_root, fsdd_utts, an4_root, tmp_path):
    """A custom 8 kHz recipe pooling AN4's 16 kHz digit strings: features at the recipe's rate, the pooled
    utterances weighted in the training data, the LM over the recipe's own transcripts only."""
    mine = tmp_path / "mine"
    jackson, theo = ([u for u in fsdd_utts if u.speaker == s] for s in ("jackson", "theo"))
    for split, utts in (("train", jackson), ("dev", theo[::2]), ("test", theo[1::2])):
        write_manifest(mine / f"{split}.jsonl", utts)
    work = tmp_path / "work"
    sets = [f"prepare.{s}={mine / s}.jsonl" for s in ("train", "dev", "test")]
    sets += ["features.sample_rate=8000", "prepare.pool=an4:2", "prepare.pool_words=task"]
    pipe = recipe.pipeline("custom", str(work), sets, str(corpora_root))
    pipe.run(None, "lm")
    store = FeatureStore(work / "features")
    lent = [u for u in store.open("train/train").utts if u["id"].startswith("an4-")]
    assert len(lent) == 137 and all(u["weight"] == 2.0 for u in lent)
    for u in lent[:20]:  # 10 ms frames of the 16 kHz audio read at 8 kHz
        assert abs(u["frames"] - 100 * u["duration"]) <= 3, u
    assert json.loads((work / "features" / "features.json").read_text())["config"]["sample_rate"] == 8000
    assert json.loads((work / "lm" / "record.json").read_text())["sentences"] == 10  # not 10 + 137
    assert "an4: 137 utterances, 69 speakers" in pool.status(pipe.config["prepare"], work / "prepare")


def test_synthetic_voices_speak_each_training_set_s_own_transcripts(corpora_root, tmp_path, monkeypatch):
    """Synthetic voices (prepare.pool=espeak:W,flite:W): each synthesiser speaks each training set's own transcripts
    (a transcript of two sets is one file), at its weight, as pooled speakers no dev or test set has; rerun, the
    files are kept; each synthesiser is part of the cache key, and a missing one says what to install."""
    import soundfile as sf

    from asr.corpora import synthetic

    cfg = fsdd.FsddConfig(
        connected_train=12,
        connected_dev=3,
        connected_test=3,
        corpus_dir=str(corpora_root),
        pool=("espeak:0.2", "flite:0.4"),
    )
    written = tmp_path / "tmp-prep"
    lent = pool.pooled(fsdd.stage)(_ctx(cfg, written))["pooled"]
    out = written.rename(tmp_path / "prep")  # as the runner publishes a stage's output: the paths still hold
    weights = {"espeak": 0.2, "flite": 0.4}
    for name, synth in synthetic.SYNTHESIZERS.items():
        assert lent[name]["weight"] == weights[name] and 2 <= lent[name]["speakers"] <= len(synth.voices)
        assert lent[name]["corpus"].startswith(f"{synth.title} text-to-speech: ")
    assert lent["espeak"]["corpus"].startswith("eSpeak NG text-to-speech: 1.")
    spoken_ids = {name: set() for name in weights}
    for set_name in pool.manifest_names(out):
        utts = read_manifest(out / f"{set_name}.jsonl")
        own = [u for u in utts if not u.pooled_from]
        if not pool.is_training_set(set_name):
            assert all(not u.pooled_from for u in utts), set_name
            continue
        for name, synth in synthetic.SYNTHESIZERS.items():
            spoken = [u for u in utts if u.pooled_from == name]
            assert sorted(u.text for u in spoken) == sorted({u.text for u in own}), (set_name, name)  # each, once
            for u in spoken:
                assert u.speaker in {f"{name}-{v}" for v in synth.voices} and u.weight == weights[name]
                info = sf.info(str(u.audio))
                assert info.samplerate == synthetic.RATE and abs(info.duration - u.duration) < 0.01
                assert u.duration > 0.3 and Path(u.audio).resolve().is_relative_to(out.resolve() / name)
            spoken_ids[name] |= {u.id for u in spoken}
    assert all(lent[name]["utterances"] == len(ids) for name, ids in spoken_ids.items())
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    pool.pooled(fsdd.stage)(_ctx(cfg, out))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before  # kept, not spoken again
    # each synthesiser is part of the prepare key; without it, the stage says what to install
    pipe = recipe.pipeline("fsdd", str(tmp_path / "w"), ["prepare.pool=espeak:0.2,flite:0.4"], str(corpora_root))
    assert pipe.data["prepare"]["pool espeak"].startswith("version 2, eSpeak NG")
    assert pipe.data["prepare"]["pool flite"].startswith("version 1, Flite text-to-speech: flite-2")
    for name, synth in synthetic.SYNTHESIZERS.items():
        synthetic.version.cache_clear()
        monkeypatch.setattr(
            synthetic.shutil,
            "which",
            lambda program, missing=synth.package: None if program == missing else "/usr/bin/" + program,
        )
        with pytest.raises(CorpusError, match=f"apt-get install {synth.package}"):
            pool.pooled(fsdd.stage)(_ctx(cfg, tmp_path / f"again-{name}"))
    synthetic.version.cache_clear()


def test_a_failing_synthesiser_is_named_with_its_voice_and_text(tmp_path, monkeypatch):
    """A synthesiser that fails (or writes no audio) stops the stage with a CorpusError naming the program, the voice
    and the transcript, and what it printed; no file is left for a rerun to mistake for audio."""
    from asr.corpora import synthetic

    broken = dataclasses.replace(
        synthetic.SYNTHESIZERS["flite"], command=lambda *args: ["sh", "-c", "echo no voice here >&2; exit 3"]
    )
    monkeypatch.setitem(synthetic.SYNTHESIZERS, "flite", broken)
    with pytest.raises(CorpusError, match=r"flite with voice \S+ failed on 'seven': no voice here"):
        synthetic.utterances("flite", ["seven"], tmp_path / "out", 0.3)
    assert not list(tmp_path.rglob("*.flac"))


def test_espeak_renditions_speak_each_transcript_by_every_voice(tmp_path):
    """prepare.espeak_renditions=N: each distinct transcript N times, each by the next voice (past 12, the same
    voices again at other speeds and pitches); the first rendition is the file a single rendition writes."""
    import soundfile as sf

    from asr.corpora import synthetic

    once = synthetic.utterances("espeak", ["three", "seven", "three"], tmp_path / "one", 0.5)
    many = synthetic.utterances("espeak", ["three", "seven", "three"], tmp_path / "many", 0.5, renditions=13)
    assert len(once) == 2 and len(many) == 26 and len({u.id for u in many}) == 26
    for text in ("three", "seven"):
        spoken = [u for u in many if u.text == text]
        first = next(u for u in once if u.text == text)
        assert spoken[0].id == first.id and spoken[0].speaker == first.speaker
        assert sf.read(spoken[0].audio)[0].tolist() == sf.read(first.audio)[0].tolist()  # the same draws
        voices = synthetic.SYNTHESIZERS["espeak"].voices
        assert {u.speaker for u in spoken[:12]} == {f"espeak-{v}" for v in voices}  # every voice once
        assert spoken[12].speaker == spoken[0].speaker and spoken[12].duration != spoken[0].duration  # then again
        assert all(u.weight == 0.5 and u.pooled_from == "espeak" for u in spoken)
    with pytest.raises(ValueError, match="espeak_renditions must be 1-100"):
        fsdd.FsddConfig(pool=("espeak",), espeak_renditions=0)
    # renditions without the voices would silently do nothing: refused before the corpus is read
    with pytest.raises(CorpusError, match="prepare.pool has no espeak: add it"):
        pool.pooled(fsdd.stage)(_ctx(fsdd.FsddConfig(pool=("an4",), espeak_renditions=2), tmp_path / "none"))
