import json

import librosa
import numpy as np
import pytest
import torch
from helpers import build_features, tone, write_wav

from asr.core.errors import AsrError
from asr.data.audio import load_audio
from asr.data.manifest import Utterance
from asr.features import stage as features
from asr.features.frontend import Cmvn, FeatureConfig, mfcc
from asr.features.stage import extract_set
from asr.features.store import FeatureSet, FeatureStore
from asr.search.options import DecodeOptions
from asr.text.tokenizer import CharTokenizer

# Our float32 MFCC against librosa's float64 one: values span about +-400,
# the largest difference seen is ~1e-4; we allow 1e-2 absolute.
LIBROSA_ATOL = 1e-2


def _librosa_mfcc(x, cfg):
    return librosa.feature.mfcc(
        y=x.astype(np.float64),
        sr=cfg.sample_rate,
        n_mfcc=cfg.n_mfcc,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
    ).T


@pytest.mark.parametrize("rate,n_mels,n_mfcc", [(8_000, 40, 13), (16_000, 64, 20)])
def test_mfcc_matches_librosa_on_real_speech(fsdd_recordings, rate, n_mels, n_mfcc):
    cfg = FeatureConfig(sample_rate=rate, n_mels=n_mels, n_mfcc=n_mfcc, preemphasis=0.0, deltas=0, f_min=0.0)
    for name in ("7_jackson_3.wav", "0_nicolas_40.wav", "9_yweweler_12.wav"):
        x = load_audio(fsdd_recordings / name, rate)
        ours = mfcc(x, cfg)
        ref = _librosa_mfcc(x, cfg)
        assert ours.shape == ref.shape == (cfg.num_frames(len(x)), n_mfcc)
        np.testing.assert_allclose(ours, ref, atol=LIBROSA_ATOL)


def test_log_mel_filterbank_matches_librosa(fsdd_recordings, tmp_path):
    cfg = FeatureConfig(sample_rate=8_000, kind="fbank", n_mels=40, preemphasis=0.0, deltas=1, f_min=0.0)
    assert cfg.dim == 80
    for name in ("7_jackson_3.wav", "0_nicolas_40.wav"):
        x = load_audio(fsdd_recordings / name, cfg.sample_rate)
        mel = librosa.feature.melspectrogram(
            y=x.astype(np.float64),
            sr=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            n_mels=cfg.n_mels,
            fmin=cfg.f_min,
            fmax=cfg.f_max,
        )
        ref = librosa.power_to_db(mel, top_db=80.0).T
        ours = mfcc(x, cfg)
        assert ours.shape == (len(ref), 80)
        np.testing.assert_allclose(ours[:, :40], ref, atol=LIBROSA_ATOL)
    with pytest.raises(ValueError, match="kind must be"):
        FeatureConfig(kind="plp")


def _torchaudio_mfcc(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The same definition built from torchaudio's transforms, as an independent reference."""
    import torchaudio
    import torchaudio.functional as AF

    w = torch.from_numpy(x)
    w = torch.cat([w[:1], w[1:] - cfg.preemphasis * w[:-1]])
    spec = torchaudio.transforms.Spectrogram(
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        power=2.0,
        center=True,
        pad_mode="constant",
    )(w)
    mel = torchaudio.transforms.MelScale(
        n_mels=cfg.n_mels,
        sample_rate=cfg.sample_rate,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        n_stft=cfg.n_fft // 2 + 1,
        norm="slaney",
        mel_scale="slaney",
    )(spec)
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    db = torch.maximum(db, db.max() - 80.0)
    parts = [(db.T @ AF.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho")).T]
    for _ in range(cfg.deltas):
        parts.append(AF.compute_deltas(parts[-1]))
    return torch.cat(parts).T.numpy()


@pytest.mark.parametrize("rate", [8_000, 16_000])
def test_mfcc_with_deltas_matches_torchaudio(fsdd_recordings, rate):
    cfg = FeatureConfig(sample_rate=rate)
    for name in ("7_jackson_3.wav", "0_nicolas_40.wav"):
        x = load_audio(fsdd_recordings / name, rate)
        ours, ref = mfcc(x, cfg), _torchaudio_mfcc(x, cfg)
        assert ours.shape == ref.shape == (cfg.num_frames(len(x)), 39)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-3)
    assert mfcc(np.zeros(0, np.float32), cfg).shape == (1, 39)  # an empty signal still has its centred frame


def _manifest(tmp_path, n=5):
    utts = []
    for i in range(n):
        p = write_wav(tmp_path / f"u{i}.wav", tone(0.2 + 0.1 * i, 16_000, freq=200 + 100 * i, seed=i), 16_000)
        utts.append(Utterance(f"u{i}", str(p), 0.2 + 0.1 * i, "a b", f"s{i % 2}"))
    return utts


def test_store_reads_back_exactly_and_is_the_same_for_any_nj(tmp_path):
    cfg = FeatureConfig(sample_rate=8_000)
    utts = _manifest(tmp_path)
    r1 = extract_set(utts, tmp_path / "one" / "set", cfg, nj=1)
    r2 = extract_set(utts, tmp_path / "two" / "set", cfg, nj=2)
    assert r1["utterances"] == r2["utterances"] == 5 and r1["bad"] == []
    assert (tmp_path / "one/set.f32").read_bytes() == (tmp_path / "two/set.f32").read_bytes()
    fs = FeatureSet(tmp_path / "one" / "set", cfg.dim)
    assert fs.paths == [tmp_path / "one" / "set.f32"]  # under shard_hours: one file
    for i, u in enumerate(utts):
        direct = mfcc(load_audio(u.audio, 8_000), cfg)
        np.testing.assert_array_equal(fs[i], direct)
        assert fs.utts[i]["id"] == u.id and fs.utts[i]["frames"] == len(direct)


def test_bad_utterances_are_reported_and_skipped(tmp_path):
    utts = _manifest(tmp_path)
    (tmp_path / "broken.wav").write_text("not audio")
    utts.insert(2, Utterance("broken", str(tmp_path / "broken.wav"), 1.0, "a", "s0"))
    r = extract_set(utts, tmp_path / "set", FeatureConfig(sample_rate=8_000), nj=2)
    assert r["utterances"] == 5 and [uid for uid, _ in r["bad"]] == ["broken"]
    assert "not a readable audio file" in r["bad"][0][1]


def test_speed_perturbation_changes_length(tmp_path):
    cfg = FeatureConfig(sample_rate=8_000)
    utts = _manifest(tmp_path, 2)
    r = extract_set(utts, tmp_path / "set", cfg, speeds=(1.0, 0.9, 1.1))
    fs = FeatureSet(tmp_path / "set", cfg.dim)
    frames = {u["id"]: u["frames"] for u in fs.utts}
    assert r["utterances"] == 6 and set(frames) == {"u0", "u1", "sp0.9-u0", "sp0.9-u1", "sp1.1-u0", "sp1.1-u1"}
    assert frames["sp0.9-u1"] == pytest.approx(frames["u1"] / 0.9, abs=2)
    assert frames["sp1.1-u1"] == pytest.approx(frames["u1"] / 1.1, abs=2)


def test_cmvn_kinds():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 3)) * [1, 2, 3] + [5, -1, 0]).astype(np.float32)
    utt = Cmvn("utterance", [0, 0, 0], [1, 1, 1])(x)
    np.testing.assert_allclose(utt.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(utt.std(0), 1, atol=1e-4)
    spk = Cmvn("speaker", [0, 0, 0], [1, 1, 1], {"s": {"mean": [5, -1, 0], "std": [1, 2, 3]}})
    np.testing.assert_allclose(spk(x, "s"), (x - [5, -1, 0]) / [1, 2, 3], rtol=1e-6)
    np.testing.assert_array_equal(spk(x, "unknown"), x)  # falls back to the global stats
    d = json.loads(json.dumps(spk.to_dict()))
    np.testing.assert_array_equal(Cmvn.from_dict(d)(x, "s"), spk(x, "s"))


def test_online_cmvn_is_causal_and_starts_from_the_global_statistics():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 3)) * [1, 2, 3] + [5, -1, 0]).astype(np.float32)
    g_mean, g_std = np.array([4.0, 0.0, 1.0]), np.array([1.5, 1.5, 2.5])
    online = Cmvn("online", g_mean, g_std, prior_frames=50)
    y = online(x)
    # frame t depends on frames 0..t only: a different future leaves the past unchanged
    z = online(np.concatenate([x[:100], x[100:] + 10]))
    np.testing.assert_array_equal(y[:100], z[:100])
    assert not np.allclose(y[100:], z[100:])
    # frame 0: one frame against 50 of the prior, so nearly the global normalisation
    np.testing.assert_allclose(y[0], (x[0] - g_mean) / g_std, atol=0.2)
    # late frames: dominated by the utterance's own statistics
    np.testing.assert_allclose(y[200:].mean(0), 0, atol=0.25)
    first = (x[0] * 1.0 + 50 * g_mean) / 51
    np.testing.assert_allclose(
        y[0], (x[0] - first) / np.sqrt((50 * (g_std**2 + g_mean**2) + x[0] ** 2) / 51 - first**2), rtol=1e-5
    )
    assert Cmvn.from_dict(json.loads(json.dumps(online.to_dict()))).prior_frames == 50
    with pytest.raises(ValueError, match="cmvn_prior_frames must be >= 1"):
        FeatureConfig(cmvn="online", cmvn_prior_frames=0)


@pytest.mark.parametrize("kind", ["utterance", "global", "online"])
def test_transcribe_normalises_one_file_exactly_as_the_recipe_did(fsdd_utts, tmp_path, kind):
    # the recipe's decode stage feeds the network store.cmvn(features of the set); a Recognizer built
    # from the model file's parts feeds it cmvn(mfcc(the file)): the inputs must be the same numbers
    from helpers import build_features

    from asr.core.config import to_dict
    from asr.model.modelfile import FORMAT_VERSION, ModelFile
    from asr.recognize.recognizer import Recognizer

    store = FeatureStore(build_features(tmp_path, {"train": fsdd_utts[:6], "test": fsdd_utts[6:9]}, cmvn=kind))
    seen = []

    def network(x):
        seen.append(x)
        return np.zeros((len(x), 12), np.float32)

    meta = {
        "features": to_dict(store.config),
        "cmvn": store.cmvn.to_dict(),
        "input_dim": store.config.dim,
        "model": {"stack": 1},
        "tokenizer": CharTokenizer("abcdefghij").to_dict(),
    }
    rec = Recognizer(
        ModelFile.from_dict({"format": FORMAT_VERSION, **meta}, "test model"), network, DecodeOptions(method="greedy")
    )
    test = store.open("test")
    for i, u in enumerate(test.utts):
        rec.transcribe(u["audio"])
        np.testing.assert_array_equal(seen[-1], store.cmvn(test[i], u["speaker"]))


def _stage(tmp_path, name, sets_order, train_sets, utts_by_set, cmvn="global"):
    from types import SimpleNamespace

    from asr.data.manifest import write_manifest

    prep = tmp_path / name / "prepare"
    for set_name, utts in utts_by_set.items():
        write_manifest(prep / f"{set_name}.jsonl", utts)
    out = tmp_path / name / "features"
    out.mkdir(parents=True)
    cfg = FeatureConfig(sample_rate=8_000, sets=sets_order, train_sets=train_sets, cmvn=cmvn)
    features.stage(SimpleNamespace(config=cfg, out=out, inputs={"prepare": prep}, nj=1, log=lambda m: None))
    return FeatureStore(out)


def test_cmvn_statistics_come_from_training_audio_only_whatever_the_set_order(tmp_path):
    # speaker s0 speaks in every set; a dev/test set listed first used to lend its accumulator to training
    from dataclasses import replace

    utts = [replace(u, speaker="s0") for u in _manifest(tmp_path, 6)]
    sets = {"dev": utts[:2], "train": utts[2:4], "test": utts[4:]}
    a = _stage(tmp_path, "a", ("dev", "train", "test"), ("train",), sets)
    b = _stage(tmp_path, "b", ("train", "test", "dev"), ("train",), sets)
    train = a.open("train")
    frames = np.concatenate([train[i] for i in range(len(train))]).astype(np.float64)
    np.testing.assert_allclose(a.cmvn.mean, frames.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(a.cmvn.std, frames.std(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.cmvn.speakers["s0"][0], frames.mean(0), rtol=1e-5, atol=1e-4)
    assert a.cmvn.to_dict() == b.cmvn.to_dict()


def test_feature_sets_close_their_index_file(tmp_path):
    import gc
    import warnings

    cfg = FeatureConfig(sample_rate=8_000)
    extract_set(_manifest(tmp_path, 2), tmp_path / "set", cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        fs = FeatureSet(tmp_path / "set", cfg.dim)
        gc.collect()
    assert len(fs) == 2


def test_sets_shard_by_hours_and_read_back_the_same_frames(fsdd_utts, tmp_path):
    utts = fsdd_utts[:40]
    whole = FeatureStore(build_features(tmp_path / "whole", {"set": utts}, nonspeech=0))  # the speech's frames alone
    seconds = sum(u.duration for u in utts)
    sharded = FeatureStore(
        build_features(tmp_path / "sharded", {"set": utts}, shard_hours=seconds / 3600 / 4.5, nonspeech=0)
    )
    a, b = whole.open("set"), sharded.open("set")
    assert len(a.paths) == 1 and len(b.paths) == 5  # a quarter of the audio per file, whole utterances only
    limit = int(seconds / 4.5 * 100)  # frames per shard at the 10 ms hop
    assert all(0 < p.stat().st_size <= limit * b.dim * 4 for p in b.paths)
    assert [p.name for p in b.paths] == ["set.f32", *(f"set.shard{k}.f32" for k in range(1, 5))]
    assert [u["shard"] for u in b.utts] == sorted(u["shard"] for u in b.utts)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i], b[i])
        assert b[i].flags.writeable and b[i].shape == (b.utts[i]["frames"], b.dim)
    b.paths[2].write_bytes(b.paths[2].read_bytes()[:-4])  # a cut-off shard is named, not misread
    with pytest.raises(AsrError, match=r"set.shard2.f32 holds .* bytes, the index expects"):
        sharded.open("set")
    with pytest.raises(ValueError, match="shard_hours must be > 0"):
        FeatureConfig(shard_hours=0)
