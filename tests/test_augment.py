"""Waveform augmentation (asr/data/augment.py), VTLP in the MFCC, and augmented copies in the features stage."""

from dataclasses import replace

import numpy as np
import pytest

from asr.core.config import apply_overrides
from asr.core.errors import ConfigError
from asr.data import augment
from asr.data.audio import load_audio
from asr.features.frontend import FeatureConfig, mfcc, warp_frequencies
from asr.features.store import FeatureStore
from tests.conftest import build_features

RATE = 8_000
ALL_ON = augment.AugmentConfig(copies=1, reverb_prob=1.0, noise_prob=1.0, rooms=4)


@pytest.fixture(scope="module")
def wave(fsdd_recordings) -> np.ndarray:
    return load_audio(sorted(fsdd_recordings.glob("7_theo_*.wav"))[0], RATE)


def _power_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


def test_a_copy_is_deterministic_under_its_seed_and_differs_between_copies_and_seeds(wave):
    def make(cfg, copy, uid="7_theo_0"):
        chain, rng = augment.draw(cfg, copy, uid)
        return chain, augment.apply(wave, chain, rng, RATE, cfg)

    c1, a = make(ALL_ON, 1)
    c2, b = make(ALL_ON, 1)
    assert c1 == c2 and np.array_equal(a, b)
    for other in (make(ALL_ON, 2)[1], make(ALL_ON, 1, "7_theo_1")[1], make(replace(ALL_ON, seed=1), 1)[1]):
        assert not np.allclose(a, other)


@pytest.mark.parametrize(
    "name, cfg",
    [
        ("volume", replace(ALL_ON, reverb_prob=0.0, noise_prob=0.0, gain_db=(-12.0, -12.0))),
        ("noise", replace(ALL_ON, reverb_prob=0.0, gain_db=(0.0, 0.0), snr_db=(10.0, 10.0))),
        ("reverb", replace(ALL_ON, noise_prob=0.0, gain_db=(0.0, 0.0), rt60=(0.5, 0.5))),
    ],
)
def test_each_effect_keeps_the_length_and_changes_the_signal_as_asked(wave, name, cfg):
    chain, rng = augment.draw(cfg, 1, "7_theo_0")
    out = augment.apply(wave, chain, rng, RATE, cfg)
    assert out.shape == wave.shape and out.dtype == np.float32
    if name == "volume":
        assert _power_db(out) - _power_db(wave) == pytest.approx(-12.0, abs=0.01)
    elif name == "noise":
        assert _power_db(wave) - _power_db(out - wave) == pytest.approx(10.0, abs=0.01)  # the SNR asked for
    else:
        assert chain.room is not None
        corr = float(np.corrcoef(wave, out)[0, 1])
        assert corr < 0.9  # smeared by the room, measurably
        # aligned on the direct path: the words stay where they were (energy envelope correlates)
        env = [np.convolve(np.abs(x), np.ones(400) / 400, "same") for x in (wave, out)]
        assert float(np.corrcoef(*env)[0, 1]) > 0.6


def test_the_room_bank_is_the_same_for_the_same_seed_and_has_unit_energy():
    a = augment.room_bank(RATE, 3, (0.2, 0.4), 0)
    augment.room_bank.cache_clear()
    b = augment.room_bank(RATE, 3, (0.2, 0.4), 0)
    c = augment.room_bank(RATE, 3, (0.2, 0.4), 1)
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c))
    assert all(float(np.sum(h.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4) for h in a)


def test_generated_noise_has_the_slope_asked_for():
    rng = np.random.default_rng(0)
    for slope in (0.0, -2.0):
        n = augment.coloured_noise(RATE * 4, slope, rng)
        assert float(np.mean(n.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
        spec = np.abs(np.fft.rfft(n)) ** 2
        low, high = spec[100:400].mean(), spec[4000:7000].mean()  # bins of 0.25 Hz: 25-100 Hz vs 1-1.75 kHz
        ratio_db = 10 * np.log10(low / high)
        assert (abs(ratio_db) < 1.5) if slope == 0 else (ratio_db > 20)


def test_vtlp_warp_is_monotonic_keeps_the_band_and_scales_low_frequencies():
    f = np.linspace(0, 4000, 513)
    for alpha in (0.9, 1.1):
        w = warp_frequencies(f, alpha, 4000.0)
        assert np.all(np.diff(w) > 0) and w[0] == 0 and w[-1] == pytest.approx(4000.0)
        assert w[50] == pytest.approx(alpha * f[50])
    assert np.array_equal(warp_frequencies(f, 1.0, 4000.0), f)


def test_vtlp_changes_the_mfcc_but_not_its_shape(wave):
    cfg = FeatureConfig(sample_rate=RATE)
    plain, warped = mfcc(wave, cfg), mfcc(wave, cfg, 1.1)
    assert plain.shape == warped.shape
    assert np.abs(plain - warped).mean() > 0.05 * np.abs(plain).mean()
    assert np.array_equal(mfcc(wave, cfg, 1.0), plain)


def test_bad_augment_settings_are_refused_with_the_key():
    with pytest.raises(ValueError, match="augment.snr_db"):
        augment.AugmentConfig(snr_db=(30.0, 5.0))
    with pytest.raises(ValueError, match="augment.noise_prob"):
        augment.AugmentConfig(noise_prob=1.5)
    cfg = {"features": FeatureConfig()}
    assert apply_overrides(cfg, ["features.augment.copies=2"])["features"].augment.copies == 2
    with pytest.raises(ConfigError, match="augment.rt60"):
        apply_overrides(cfg, ["features.augment.rt60=[0.6,0.2]"])


def test_features_stage_adds_augmented_copies_of_train_sets_only(fsdd_utts, tmp_path):
    jackson = [u for u in fsdd_utts if u.speaker == "jackson"]
    train, dev = jackson[:5], jackson[5:7]
    aug = replace(ALL_ON, copies=2)
    store = FeatureStore(build_features(tmp_path / "a", {"train": train, "dev": dev}, augment=aug))
    tr, dv = store.open("train"), store.open("dev")
    ids = [u["id"] for u in tr.utts]
    assert ids == [u.id for u in train] + [f"aug{k}-{u.id}" for k in (1, 2) for u in train]
    assert [u["id"] for u in dv.utts] == [u.id for u in dev]
    n = len(train)
    for i in range(n):  # same frames (length kept), other values
        assert tr[i].shape == tr[n + i].shape == tr[2 * n + i].shape
        assert not np.allclose(tr[i], tr[n + i])
    assert all(u["text"] == v["text"] for u, v in zip(tr.utts, tr.utts[n:]))
    again = FeatureStore(build_features(tmp_path / "b", {"train": train, "dev": dev}, augment=aug))
    assert [p.read_bytes() for p in again.open("train").paths] == [p.read_bytes() for p in tr.paths]


def test_features_stage_adds_nonspeech_examples_to_train_sets_only_outside_the_cmvn_statistics(fsdd_utts, tmp_path):
    train, train2, dev = fsdd_utts[:10], fsdd_utts[10:15], fsdd_utts[15:17]
    sets = {"train": train, "train2": train2, "dev": dev}
    plain = FeatureStore(build_features(tmp_path / "a", sets, train_sets=("train", "train2"), nonspeech=0))
    store = FeatureStore(build_features(tmp_path / "b", sets, train_sets=("train", "train2"), nonspeech=0.2))
    tr = store.open("train")
    extra = tr.utts[len(train) :]
    assert [u["id"] for u in tr.utts[: len(train)]] == [u.id for u in train]
    assert [u["id"] for u in extra] == ["nonspeech00000", "nonspeech00001"]  # 20% of 10
    # numbered on in the second train set: no two examples share an id (nor, drawn from it, their samples)
    assert [u["id"] for u in store.open("train2").utts[len(train2) :]] == ["nonspeech00002"]
    assert all(u["text"] == "" and u["speaker"] == augment.NONSPEECH_SPEAKER for u in extra)
    assert [u["id"] for u in store.open("dev").utts] == [u.id for u in dev]
    for k, u in enumerate(extra, len(train)):  # as long as drawn, at 100 frames a second
        lo, hi = augment.NONSPEECH_SECONDS
        assert lo * 100 <= tr[k].shape[0] <= hi * 100 + 1 and tr[k].shape[0] == round(u["duration"] * 100) + 1
    assert store.cmvn.to_dict() == plain.cmvn.to_dict()  # the statistics are the speech's
    kinds = [float(np.abs(augment.nonspeech(f"nonspeech{k:05d}", 1.0, RATE)).max()) for k in range(200)]
    silent = sum(x == 0.0 for x in kinds) / len(kinds)
    assert silent == pytest.approx(augment.NONSPEECH_SILENT, abs=0.08)
    noisy = [augment.nonspeech(f"nonspeech{k:05d}", 1.0, RATE) for k in range(200)]
    levels = [_power_db(x) for x in noisy if np.any(x)]
    lo, hi = augment.NONSPEECH_DBFS
    assert lo - 1 < min(levels) and max(levels) < hi + 1
    assert np.array_equal(augment.nonspeech("nonspeech00003", 1.0, RATE), noisy[3])
    with pytest.raises(ValueError, match="nonspeech"):
        FeatureConfig(nonspeech=1.5)
