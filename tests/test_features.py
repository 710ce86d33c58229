import json

import librosa
import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.features import Cmvn, FeatureConfig, FeatureSet, extract_set
from asr.frontend import mfcc
from asr.manifest import Utterance
from conftest import tone, write_wav

# Our float32 MFCC against librosa's float64 one: values span about +-400,
# the largest difference seen is ~1e-4; we allow 1e-2 absolute.
LIBROSA_ATOL = 1e-2


def _librosa_mfcc(x, cfg):
    return librosa.feature.mfcc(y=x.astype(np.float64), sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
                                hop_length=cfg.hop_length, win_length=cfg.win_length, n_mels=cfg.n_mels,
                                fmin=cfg.f_min, fmax=cfg.f_max).T


@pytest.mark.parametrize("rate,n_mels,n_mfcc", [(8_000, 40, 13), (16_000, 64, 20)])
def test_mfcc_matches_librosa_on_real_speech(fsdd_recordings, rate, n_mels, n_mfcc):
    cfg = FeatureConfig(sample_rate=rate, n_mels=n_mels, n_mfcc=n_mfcc, preemphasis=0.0, deltas=0, f_min=0.0)
    for name in ("7_jackson_3.wav", "0_nicolas_40.wav", "9_yweweler_12.wav"):
        x = load_audio(fsdd_recordings / name, rate)
        ours = mfcc(x, cfg)
        ref = _librosa_mfcc(x, cfg)
        assert ours.shape == ref.shape == (cfg.num_frames(len(x)), n_mfcc)
        np.testing.assert_allclose(ours, ref, atol=LIBROSA_ATOL)


def _torchaudio_mfcc(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The same definition built from torchaudio's transforms, as an independent reference."""
    import torchaudio
    import torchaudio.functional as AF

    w = torch.from_numpy(x)
    w = torch.cat([w[:1], w[1:] - cfg.preemphasis * w[:-1]])
    spec = torchaudio.transforms.Spectrogram(n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                                             power=2.0, center=True, pad_mode="constant")(w)
    mel = torchaudio.transforms.MelScale(n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, f_min=cfg.f_min,
                                         f_max=cfg.f_max, n_stft=cfg.n_fft // 2 + 1, norm="slaney",
                                         mel_scale="slaney")(spec)
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
    assert isinstance(fs.data, np.memmap)
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


def _stage(tmp_path, name, sets_order, train_sets, utts_by_set, cmvn="global"):
    from types import SimpleNamespace

    from asr import features
    from asr.manifest import write_manifest

    prep = tmp_path / name / "prepare"
    for set_name, utts in utts_by_set.items():
        write_manifest(prep / f"{set_name}.jsonl", utts)
    out = tmp_path / name / "features"
    out.mkdir(parents=True)
    cfg = FeatureConfig(sample_rate=8_000, sets=sets_order, train_sets=train_sets, cmvn=cmvn)
    features.stage(SimpleNamespace(config=cfg, out=out, inputs={"prepare": prep}, nj=1, log=lambda m: None))
    return features.FeatureStore(out)


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
