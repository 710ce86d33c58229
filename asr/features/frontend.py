"""The feature front end in numpy alone: the MFCC config, MFCC (+ deltas) of a signal, and CMVN.

``kind="fbank"`` keeps the log-mel energies (the same filters and floor) instead of their DCT.

The features stage and every recognizer (the torch model and the ONNX runtime) compute
features with this one code, so an exported model hears exactly what it was scored on,
and transcription needs no torch. The MFCC follows librosa's definition (power
spectrogram of a periodic Hann window zero-padded to a power of two, centred frames with
zero padding, Slaney mel filters, ``10 log10`` with an 80 dB floor below the utterance's
peak, orthonormal DCT-II), and the deltas Kaldi's and torchaudio's regression over
+-2 frames; the tests compare it with ``librosa.feature.mfcc`` and torchaudio.

Written by hand rather than taken from librosa, whose import alone costs about 0.5 s of
every ``asr transcribe`` start (numba), and whose filters we would still have to combine
the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from asr.core.config import from_dict
from asr.core.errors import AsrError
from asr.data.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asr.data.augment import AugmentConfig

AMIN = 1e-10  # power floor before the log, as librosa.power_to_db
ONLINE_PRIOR_FRAMES = 100  # "online" CMVN: the global statistics count as this many frames (1 s at a 10 ms hop)
VTLP_BOUNDARY = (
    0.6  # share of the Nyquist frequency up to which VTLP scales linearly (4.8 kHz at 16 kHz, Jaitly & Hinton)
)
TOP_DB = 80.0  # default dynamic range kept below each utterance's peak, as librosa.feature.mfcc
# Bounds on a feature config, which model files carry (a crafted win_ms=1e7 allocated 22 GiB on first use):
# speech windows are 20-50 ms and filter banks 23-128 filters, so these leave room without harm
MAX_WIN_MS = 100.0
MIN_HOP_MS = 1.0
MAX_MELS = 256


@dataclass(frozen=True)
class FeatureConfig:
    """The ``features`` stage's config section."""

    sample_rate: int = 16_000  # audio is resampled to this rate first
    # mfcc: n_mfcc cepstral coefficients (the default); fbank: the n_mels log-mel energies themselves
    kind: Literal["mfcc", "fbank"] = "mfcc"
    win_ms: float = 25.0  # analysis window
    hop_ms: float = 10.0  # frame shift
    n_mels: int = 40  # mel filters
    n_mfcc: int = 13  # cepstral coefficients kept
    f_min: float = 20.0
    f_max: float | None = None  # None: Nyquist
    preemphasis: float = 0.97  # 0 disables; y[t] = x[t] - a x[t-1]
    # dB kept below the utterance's loudest frame (librosa's top_db); 0: none, each frame depends on its own
    # samples only, as a streaming model needs (the peak is not known until the end)
    top_db: float = TOP_DB
    dither: float = 0.0  # std of Gaussian noise added to the waveform (seeded by utterance id)
    deltas: int = 2  # 0: static only, 1: + deltas, 2: + delta-deltas
    cmvn: Literal["none", "utterance", "speaker", "global", "online"] = "utterance"  # see Cmvn
    cmvn_prior_frames: int = ONLINE_PRIOR_FRAMES  # "online" CMVN: weight of the global statistics, in frames
    sets: tuple[str, ...] = ()  # manifests of the prepare output to featurize, e.g. "isolated/train"
    train_sets: tuple[str, ...] = ()  # sets whose statistics make the global CMVN
    speed_perturb: tuple[float, ...] = ()  # extra copies of train sets at these speeds (Kaldi: 0.9, 1.1)
    augment: AugmentConfig = AugmentConfig()  # augmented copies of train sets (volume, noise, reverb, VTLP)
    # generated non-speech examples (digital silence, noise) with empty transcripts added to each train set, as a
    # share of its utterances: a model that never saw a silent input hears words in one. Off by default: they cost
    # speechocean762 dev WER (the fsdd recipe turns them on; "Non-speech" in docs/training.md)
    nonspeech: float = 0.0
    max_bad_fraction: float = 0.01  # fail the stage if more of a set is unreadable
    shard_hours: float = 10.0  # a set's frames go to one file per this many hours of audio (10 h: about 0.6 GB)

    def __post_init__(self):
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate {self.sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if not 0 < self.shard_hours < math.inf:
            raise ValueError(f"shard_hours must be > 0, got {self.shard_hours}")
        if not 1 <= self.cmvn_prior_frames <= 10**7:
            raise ValueError(f"cmvn_prior_frames must be >= 1 and <= 10,000,000, got {self.cmvn_prior_frames}")
        if self.kind not in ("mfcc", "fbank"):
            raise ValueError(f"kind must be mfcc or fbank, got {self.kind!r}")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        if not MIN_HOP_MS <= self.hop_ms <= self.win_ms <= MAX_WIN_MS:
            raise ValueError(
                f"need {MIN_HOP_MS:g} <= hop_ms <= win_ms <= {MAX_WIN_MS:g}, got hop {self.hop_ms}, win {self.win_ms}"
            )
        if not 1 <= self.n_mels <= MAX_MELS or self.n_mfcc < 1:
            raise ValueError(f"need 1 <= n_mels <= {MAX_MELS} and n_mfcc >= 1, got {self.n_mels} and {self.n_mfcc}")
        nyquist = self.sample_rate / 2
        if not 0 <= self.f_min < (nyquist if self.f_max is None else self.f_max) <= nyquist:
            raise ValueError(
                f"need 0 <= f_min < f_max <= {nyquist:g} Hz (half the sample rate), got f_min "
                f"{self.f_min}, f_max {self.f_max}"
            )
        if not 0 <= self.preemphasis < 1 or not 0 <= self.dither <= 1:
            raise ValueError(
                f"need 0 <= preemphasis < 1 and 0 <= dither <= 1, got {self.preemphasis} and {self.dither}"
            )
        if not 0 <= self.top_db < math.inf:
            raise ValueError(f"top_db must be >= 0 (0: no floor below the peak), got {self.top_db}")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ValueError(f"max_bad_fraction is a share, in [0, 1]; got {self.max_bad_fraction}")
        if any(f <= 0 for f in self.speed_perturb):
            raise ValueError(f"speed factors must be positive, got {self.speed_perturb}")
        if not 0.0 <= self.nonspeech <= 1.0:
            raise ValueError(f"nonspeech is a share of the training utterances, in [0, 1]; got {self.nonspeech}")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()  # next power of two

    @property
    def dim(self) -> int:
        return (self.n_mels if self.kind == "fbank" else self.n_mfcc) * (1 + self.deltas)

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length  # centred frames


RETIRED = ("device",)  # fields older files hold that mean nothing now (the MFCC ran on a GPU; it is numpy now)


def feature_config(d: dict) -> FeatureConfig:
    """A stored feature config, also one written by an older version (its retired fields ignored).

    Raises:
        ConfigError: unknown fields or bad values.
    """
    return from_dict(FeatureConfig, {k: v for k, v in d.items() if k not in RETIRED})


# --- MFCC --------------------------------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), m * sp)


def warp_frequencies(freqs: np.ndarray, alpha: float, nyquist: float) -> np.ndarray:
    """Vocal-tract-length warp of frequencies (Jaitly & Hinton 2013): ``f * alpha`` up to a
    boundary, then the straight line that maps the Nyquist frequency onto itself."""
    if alpha == 1.0:
        return freqs
    edge = VTLP_BOUNDARY * nyquist * min(alpha, 1.0) / alpha
    upper = nyquist - (nyquist - VTLP_BOUNDARY * nyquist * min(alpha, 1.0)) / (nyquist - edge) * (nyquist - freqs)
    return np.where(freqs <= edge, freqs * alpha, upper)


@functools.cache
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None, warp: float = 1.0
) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters on Slaney's mel scale, area-normalised (Slaney).

    ``warp`` != 1 applies :func:`warp_frequencies` to the FFT bins (VTLP augmentation).
    """
    freqs = warp_frequencies(np.linspace(0, sample_rate // 2, n_fft // 2 + 1), warp, sample_rate / 2)
    top = float(sample_rate // 2) if f_max is None else f_max
    f_pts = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(top), n_mels + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return (fb * (2.0 / (f_pts[2:] - f_pts[:-2]))[None, :]).astype(np.float32)


@functools.cache
def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """``(n_mels, n_mfcc)`` orthonormal DCT-II."""
    n, k = np.arange(n_mels), np.arange(n_mfcc)[:, None]
    dct = np.cos(math.pi / n_mels * (n + 0.5) * k)
    dct[0] *= 1 / math.sqrt(2)
    return (dct * math.sqrt(2.0 / n_mels)).T.astype(np.float32)


@functools.cache
def _window(win_length: int, n_fft: int) -> np.ndarray:
    """A periodic Hann window, zero-padded on both sides to ``n_fft`` (as torch.stft places it)."""
    w = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left)).astype(np.float32)


def deltas(x: np.ndarray) -> np.ndarray:
    """Regression deltas over +-2 frames of ``(frames, dim)``, the edges repeated (Kaldi, torchaudio)."""
    p = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    n = len(x)
    return ((p[3 : n + 3] - p[1 : n + 1]) + 2 * (p[4 : n + 4] - p[:n])) / 10.0


def _log_mel(windows: np.ndarray, cfg: FeatureConfig, warp: float) -> np.ndarray:
    """``(n, n_fft)`` pre-emphasised sample windows -> ``(n, n_mels)`` mel energies in dB (no floor below the peak)."""
    power = np.abs(np.fft.rfft(windows * _window(cfg.win_length, cfg.n_fft), axis=1)) ** 2
    filters = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max, warp)
    mel = power.astype(np.float32) @ filters
    return 10.0 * np.log10(np.maximum(mel, AMIN))


def _static(db: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    return db if cfg.kind == "fbank" else db @ dct_matrix(cfg.n_mfcc, cfg.n_mels)


def mfcc(wave: np.ndarray, cfg: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """MFCC (+ deltas) of a mono float signal at ``cfg.sample_rate``: ``(cfg.num_frames(len(wave)), cfg.dim)`` float32.

    ``warp``: a VTLP factor for training copies (:func:`warp_frequencies`); recognition uses 1.
    """
    x = np.asarray(wave, np.float32)
    if cfg.preemphasis and len(x):
        x = np.concatenate([x[:1], x[1:] - np.float32(cfg.preemphasis) * x[:-1]])
    n_fft, hop = cfg.n_fft, cfg.hop_length
    frames = cfg.num_frames(len(x))
    padded = np.zeros(n_fft + (frames - 1) * hop, np.float32)  # centred frames, zero padding
    body = x[: len(padded) - n_fft // 2]
    padded[n_fft // 2 : n_fft // 2 + len(body)] = body
    db = _log_mel(np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:frames], cfg, warp)
    if cfg.top_db:
        db = np.maximum(db, db.max(initial=-np.inf) - cfg.top_db)
    parts = [_static(db, cfg)]
    for _ in range(cfg.deltas):
        parts.append(deltas(parts[-1]))
    return np.concatenate(parts, axis=1).astype(np.float32)


class _DeltaStream:
    """:func:`deltas` of frames that arrive in order: frame ``t`` leaves once frame ``t + 2`` is in (or the
    last frame, at the end), equal to ``deltas`` of them all (the same arithmetic on the same numbers)."""

    def __init__(self):
        self.held: np.ndarray | None = None  # the frames the next deltas need, the start edge repeated twice

    def push(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        if self.held is None:
            if not len(x):
                return x
            self.held = np.concatenate([x[:1], x[:1], x])
        else:
            self.held = np.concatenate([self.held, x])
        p = np.concatenate([self.held, self.held[-1:], self.held[-1:]]) if final else self.held
        n = len(p) - 4  # frames whose +-2 neighbours are all here
        if n <= 0:
            return p[:0]
        out = ((p[3 : n + 3] - p[1 : n + 1]) + 2 * (p[4 : n + 4] - p[:n])) / 10.0
        self.held = p[n:]
        return out


class FeatureStream:
    """The features of a signal that arrives in pieces, as it arrives: ``accept(samples)`` returns the frames
    now complete, ``finish()`` the rest; together ``mfcc`` of the whole signal (the same numbers up to float
    rounding in the matrix products). Frame ``t`` is out once the samples up to ``t * hop + n_fft / 2``
    and 2 frames per delta order after it are in (56 ms at 8 kHz with delta-deltas). Needs ``top_db=0``:
    a floor below the loudest frame would need the whole signal.

    Raises:
        AsrError: a config with ``top_db`` (names what to train with instead).
    """

    def __init__(self, cfg: FeatureConfig):
        if cfg.top_db:
            raise AsrError(
                f"streaming needs features whose frames depend on their own samples only; this model's floor "
                f"{cfg.top_db:g} dB below the loudest frame needs the whole signal (train with features.top_db=0)"
            )
        self.cfg = cfg
        self.samples = np.zeros(cfg.n_fft // 2, np.float32)  # pre-emphasised, from signal index -n_fft/2 (zeros)
        self.start = -(cfg.n_fft // 2)  # signal index of samples[0]
        self.received = 0  # samples accepted
        self.last = None  # the last sample, for the pre-emphasis of the next piece
        self.frames = 0  # static frames computed
        self.deltas = [_DeltaStream() for _ in range(cfg.deltas)]
        width = cfg.dim // (cfg.deltas + 1)
        self.pending = [np.zeros((0, width), np.float32)] * (cfg.deltas + 1)  # per order: frames not yet out

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Take the next samples (mono float at the config's rate); returns the ``(n, dim)`` frames now complete."""
        x = np.asarray(samples, np.float32).reshape(-1)
        if self.cfg.preemphasis and len(x):
            full = np.concatenate([x[:1] if self.last is None else self.last, x])  # the first sample is kept
            self.last = x[-1:].copy()
            x = np.concatenate([x[:1], x[1:] - np.float32(self.cfg.preemphasis) * x[:-1]])
            if self.received:
                x[0] = full[1] - np.float32(self.cfg.preemphasis) * full[0]
        self.samples = np.concatenate([self.samples, x])
        self.received += len(x)
        return self._frames(final=False)

    def finish(self) -> np.ndarray:
        """The remaining frames (the end padded with zeros, the deltas' end edge repeated)."""
        return self._frames(final=True)

    def _frames(self, final: bool) -> np.ndarray:
        cfg, hop, half = self.cfg, self.cfg.hop_length, self.cfg.n_fft // 2
        end = cfg.num_frames(self.received) if final else max(0, (self.received - half) // hop + 1)
        static = self.pending[0][:0]
        if end > self.frames:
            need = (end - 1) * hop + half - self.start + half  # samples up to the last window's end
            buf = self.samples if len(self.samples) >= need else np.pad(self.samples, (0, need - len(self.samples)))
            first = self.frames * hop - half - self.start
            windows = np.lib.stride_tricks.sliding_window_view(buf[first:need], cfg.n_fft)[::hop][: end - self.frames]
            static = _static(_log_mel(windows, cfg, 1.0), cfg)
            drop = end * hop - half - self.start
            self.samples, self.start, self.frames = self.samples[drop:], self.start + drop, end
        orders = [static]
        for d in self.deltas:
            orders.append(d.push(orders[-1], final))
        self.pending = [o if not len(p) else np.concatenate([p, o]) for p, o in zip(self.pending, orders)]
        n = len(self.pending[-1])
        out = np.concatenate([p[:n] for p in self.pending], axis=1).astype(np.float32)
        self.pending = [p[n:] for p in self.pending]
        return out


# --- normalisation -------------------------------------------------------------------------------------


KINDS = ("none", "utterance", "speaker", "global", "online")


class Cmvn:
    """Mean/variance normalisation with saved statistics.

    ``kind`` is ``none``, ``utterance`` (each utterance by its own statistics),
    ``speaker`` (by its speaker's, falling back to the global ones for a speaker
    never seen, as at inference), ``global``, or ``online``: causal, as Kaldi's online
    CMVN, frame ``t`` by the statistics of frames ``0..t`` of its utterance pooled with
    the global ones weighted as ``prior_frames`` frames. ``utterance``, ``global`` and
    ``online`` need nothing but the file at hand, so ``asr transcribe`` on one new file
    normalises exactly as the recipe did; ``speaker`` does not (an unseen speaker's
    statistics come from all of their audio in a test set).
    """

    def __init__(
        self,
        kind: str,
        mean: np.ndarray,
        std: np.ndarray,
        speakers: dict | None = None,
        prior_frames: int = ONLINE_PRIOR_FRAMES,
    ):
        self.kind, self.mean, self.std = kind, np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.speakers = {
            s: (np.asarray(v["mean"], np.float32), np.asarray(v["std"], np.float32))
            for s, v in (speakers or {}).items()
        }
        self.prior_frames = prior_frames

    def __call__(self, feats: np.ndarray, speaker: str | None = None) -> np.ndarray:
        if self.kind == "none":
            return np.array(feats, np.float32)  # a copy: the input may be a read-only memmap view
        if self.kind == "utterance":
            mean = feats.mean(0)
            std = np.sqrt(np.maximum(feats.var(0), 1e-10))
        elif self.kind == "online":
            mean, std = self._running(feats)
        elif self.kind == "speaker" and speaker in self.speakers:
            mean, std = self.speakers[speaker]
        else:
            mean, std = self.mean, self.std
        return ((feats - mean) / std).astype(np.float32)

    def _running(self, feats: np.ndarray, sums: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(T, D)`` causal means and standard deviations of ``feats`` with the global prior; ``sums``
        (frames, sum, sum of squares) of earlier frames of the utterance, if any, updated in place."""
        f = np.asarray(feats, np.float64)
        done, s1, s2 = sums if sums else (0, np.zeros(f.shape[1]), np.zeros(f.shape[1]))
        p = float(self.prior_frames)
        g_mean, g_var = self.mean.astype(np.float64), self.std.astype(np.float64) ** 2
        n = p + np.arange(done + 1, done + len(f) + 1, dtype=np.float64)[:, None]
        c1 = np.cumsum(np.concatenate([s1[None], f]), 0)[1:]  # the same additions in the same order as one cumsum
        c2 = np.cumsum(np.concatenate([s2[None], f * f]), 0)[1:]
        if sums is not None and len(f):
            sums[:] = [done + len(f), c1[-1], c2[-1]]
        mean = (p * g_mean + c1) / n
        second = (p * (g_var + g_mean * g_mean) + c2) / n
        return mean, np.sqrt(np.maximum(second - mean * mean, 1e-10))

    def stream(self) -> Callable[[np.ndarray], np.ndarray]:
        """The normalisation of one utterance's frames given in order, piece by piece: the same numbers as
        normalising them all at once.

        Raises:
            AsrError: ``utterance`` or ``speaker`` statistics, which need the whole utterance or speaker.
        """
        if self.kind in ("utterance", "speaker"):
            raise AsrError(
                f"streaming needs normalisation without the future; this model's {self.kind} CMVN needs "
                "all of the audio (train with features.cmvn=online or global)"
            )
        if self.kind != "online":
            return self
        sums: list = []

        def normalise(feats: np.ndarray) -> np.ndarray:
            if not sums:
                sums[:] = [0, np.zeros(feats.shape[1]), np.zeros(feats.shape[1])]
            mean, std = self._running(feats, sums)
            return ((feats - mean) / std).astype(np.float32)

        return normalise

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "prior_frames": self.prior_frames,
            "speakers": {s: {"mean": m.tolist(), "std": d.tolist()} for s, (m, d) in self.speakers.items()},
        }

    @classmethod
    def from_dict(cls, d: dict, dim: int | None = None, source: str = "CMVN statistics") -> Cmvn:
        """Rebuild saved statistics.

        Raises:
            AsrError: missing entries, an unknown kind, or vectors that are not ``dim`` long (names ``source``).
        """
        if not isinstance(d, dict) or any(k not in d for k in ("kind", "mean", "std")):
            raise AsrError(f"{source}: CMVN statistics lack kind/mean/std; the file is damaged")
        if d["kind"] not in KINDS:
            raise AsrError(f"{source}: unknown CMVN kind {d['kind']!r}")
        try:
            cmvn = cls(
                d["kind"], d["mean"], d["std"], d.get("speakers"), int(d.get("prior_frames", ONLINE_PRIOR_FRAMES))
            )
        except (TypeError, ValueError, KeyError) as e:
            raise AsrError(f"{source}: CMVN statistics are not numbers ({e})") from None
        if dim is not None and not (cmvn.mean.shape == cmvn.std.shape == (dim,)):
            raise AsrError(
                f"{source}: CMVN statistics have {cmvn.mean.shape} values, the features {dim}; the file is damaged"
            )
        return cmvn
