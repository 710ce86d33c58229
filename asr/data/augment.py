"""Waveform augmentation that models other speakers and rooms: volume, noise, reverberation, VTLP.

The features stage adds ``copies`` augmented copies of each training utterance (ids
``aug{k}-{id}``), as Kaldi's recipes add reverberated and noised copies. Every copy draws
its own chain from a generator seeded by (seed, copy, utterance id), so the features are
the same on every run, in any order and over any number of workers:

1. reverberation (share ``reverb_prob``): convolution with a room impulse response from
   a bank of ``rooms`` shoebox rooms simulated by pyroomacoustics (image source method),
   RT60 drawn from ``rt60``, source and microphone placed at random in the room;
2. volume: a gain drawn from ``gain_db``;
3. additive noise (share ``noise_prob``): generated noise, white to brown (a random
   spectral slope), at an SNR drawn from ``snr_db`` relative to the signal's power. No
   noise corpus is needed, nothing is downloaded;
4. vocal-tract-length perturbation: a warp factor drawn from ``vtlp`` that the MFCC
   applies to the frequency axis of its mel filters (Jaitly & Hinton 2013; see
   :func:`asr.features.frontend.warp_frequencies`).

Non-speech examples (the features stage's ``nonspeech``): digital silence or generated noise,
white to brown, at a random level, to be trained on with an empty transcript (:func:`nonspeech`).

Steps 1-3 keep the signal's length (the reverberant tail past the end is cut), so the
transcript's alignment is unchanged. Speed perturbation stays the features stage's
``speed_perturb`` (whole extra copies at fixed factors).
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np

MIN_ROOM_M = (3.0, 3.0, 2.4)  # smallest room simulated (width, depth, height in metres) ...
MAX_ROOM_M = (8.0, 6.0, 3.5)  # ... and largest
SPEED_OF_SOUND = 343.0  # m/s, as pyroomacoustics
WALL_CLEARANCE_M = 0.5  # source and microphone stay this far from every wall
VTLP_STEP = 0.01  # warp factors are rounded to this step: a few distinct mel filterbanks, each built once
NONSPEECH_AUDIO = "<generated non-speech>"  # the audio field of a generated non-speech example
NONSPEECH_SPEAKER = "nonspeech"
NONSPEECH_SECONDS = (0.5, 4.0)  # length of a non-speech example, uniform
NONSPEECH_SILENT = 0.25  # share of them that are digital silence (all samples zero) ...
NONSPEECH_DBFS = (-70.0, -20.0)  # ... the others noise at a level (RMS re full scale) uniform in this range


@dataclass(frozen=True)
class AugmentConfig:
    """The ``features.augment`` config section (used only when ``copies`` > 0)."""

    copies: int = 0  # augmented copies of each training utterance; 0 disables augmentation
    seed: int = 0  # with the copy number and the utterance id, seeds each copy's chain
    gain_db: tuple[float, float] = (-10.0, 6.0)  # volume change, uniform in this range
    noise_prob: float = 0.5  # share of copies that get additive noise
    snr_db: tuple[float, float] = (5.0, 30.0)  # signal-to-noise ratio of that noise, uniform
    reverb_prob: float = 0.5  # share of copies convolved with a simulated room's impulse response
    rt60: tuple[float, float] = (0.15, 0.6)  # reverberation time of the simulated rooms, seconds
    rooms: int = 16  # rooms simulated once per features run; each reverberated copy picks one
    vtlp: tuple[float, float] = (0.9, 1.1)  # vocal-tract-length warp factor range; (1, 1) disables

    def __post_init__(self):
        if self.copies < 0:
            raise ValueError(f"augment.copies must be >= 0, got {self.copies}")
        for name in ("noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("gain_db", "snr_db", "rt60", "vtlp"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ValueError(f"augment.{name} must be a range [low, high] with low <= high, got {list(lo_hi)}")
        if self.rt60[0] <= 0 or self.vtlp[0] <= 0:
            raise ValueError("augment.rt60 and augment.vtlp must be positive")
        if self.reverb_prob > 0 and self.rooms < 1:
            raise ValueError("augment.rooms must be >= 1 when reverb_prob > 0")


@dataclass(frozen=True)
class Chain:
    """What one augmented copy does: ``room`` is an index into the impulse-response bank or None."""

    room: int | None
    gain_db: float
    snr_db: float | None
    noise_slope: float  # spectral slope of the noise: 0 white, -1 pink, -2 brown
    vtlp: float


def draw(cfg: AugmentConfig, copy: int, uid: str) -> tuple[Chain, np.random.Generator]:
    """The chain of copy ``copy`` (1-based) of utterance ``uid`` and the generator that then makes its noise."""
    rng = np.random.default_rng([cfg.seed, copy, zlib.crc32(uid.encode())])
    room = int(rng.integers(cfg.rooms)) if rng.random() < cfg.reverb_prob else None
    gain = float(rng.uniform(*cfg.gain_db))
    snr = float(rng.uniform(*cfg.snr_db)) if rng.random() < cfg.noise_prob else None
    slope = float(rng.uniform(-2.0, 0.0))
    warp = round(float(rng.uniform(*cfg.vtlp)) / VTLP_STEP) * VTLP_STEP
    return Chain(room, gain, snr, slope, round(warp, 4)), rng


@functools.cache
def room_bank(sample_rate: int, rooms: int, rt60: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """``rooms`` simulated room impulse responses, each scaled to unit energy (same for the same arguments)."""
    # here, not at the top: 1.9 s that transcription (which reads AugmentConfig) never needs
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, rooms, sample_rate])
    out = []
    for _ in range(rooms):
        dims = rng.uniform(MIN_ROOM_M, MAX_ROOM_M)
        volume, surface = float(np.prod(dims)), 2.0 * float(dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
        # Sabine: the shortest RT60 a room can have is with walls absorbing (nearly) everything
        shortest = 24 * math.log(10) * volume / (SPEED_OF_SOUND * surface * 0.99)
        absorption, max_order = pra.inverse_sabine(max(float(rng.uniform(*rt60)), shortest), dims)
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
        room.add_source(rng.uniform(WALL_CLEARANCE_M, dims - WALL_CLEARANCE_M))
        room.add_microphone(rng.uniform(WALL_CLEARANCE_M, dims - WALL_CLEARANCE_M))
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float64)
        out.append((h / math.sqrt(max(float(np.sum(h * h)), 1e-20))).astype(np.float32))
    return tuple(out)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wave`` convolved with ``rir``, aligned on the direct path's peak and cut to ``len(wave)``."""
    from scipy.signal import fftconvolve  # here: scipy.signal's import is only needed by training copies

    if not len(wave):
        return wave
    start = int(np.argmax(np.abs(rir)))  # the direct sound: keep the words where the transcript has them
    return fftconvolve(wave, rir)[start : start + len(wave)].astype(np.float32)


def coloured_noise(n: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-power noise whose power spectrum falls as ``f ** slope``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0  # no division by zero; the DC bin is removed below
    spectrum *= f ** (slope / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return (noise / math.sqrt(max(float(np.mean(noise * noise)), 1e-20))).astype(np.float32)


def apply(wave: np.ndarray, chain: Chain, rng: np.random.Generator, sample_rate: int, cfg: AugmentConfig) -> np.ndarray:
    """Steps 1-3 of ``chain`` on a mono float signal; returns a new signal of the same length.

    VTLP (step 4) is not applied here: the MFCC applies ``chain.vtlp`` to its filters.
    """
    x = np.asarray(wave, np.float32)
    if chain.room is not None:
        x = reverberate(x, room_bank(sample_rate, cfg.rooms, tuple(cfg.rt60), cfg.seed)[chain.room])
    x = x * np.float32(10.0 ** (chain.gain_db / 20.0))
    if chain.snr_db is not None and len(x):
        power = float(np.mean(x.astype(np.float64) ** 2))
        scale = math.sqrt(power / 10.0 ** (chain.snr_db / 10.0))
        x = x + np.float32(scale) * coloured_noise(len(x), chain.noise_slope, rng)
    return x.astype(np.float32)


def nonspeech(uid: str, seconds: float, sample_rate: int) -> np.ndarray:
    """The samples of non-speech example ``uid``: digital silence or coloured noise, drawn from the id alone."""
    rng = np.random.default_rng(zlib.crc32(uid.encode()))
    n = int(round(seconds * sample_rate))
    if rng.random() < NONSPEECH_SILENT:
        return np.zeros(n, np.float32)
    level = 10.0 ** (float(rng.uniform(*NONSPEECH_DBFS)) / 20.0)
    return (np.float32(level) * coloured_noise(n, float(rng.uniform(-2.0, 0.0)), rng)).astype(np.float32)
