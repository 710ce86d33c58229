"""Benchmark: what model files transcribe where nobody speaks (the right answer is nothing).

    python -m asr.benchmarks.nonspeech MODEL.pt [MODEL.pt ...]

Each model hears eight signals at its own sample rate: digital silence (1 s and 3 s), noise
white, pink and brown at -40, -30 and -50 dBFS, a 50 Hz mains hum with its third harmonic,
sparse clicks, and one-LSB dither (as a 16-bit recording of a silent room). They come from a
generator seeded apart from the features stage's non-speech examples, and the hum and clicks
are kinds those examples never are. The table gives the words each model heard, and a row
with the count of signals that gave any words: compare a model trained with
``features.nonspeech`` against one trained without.
"""

from __future__ import annotations

import argparse

import numpy as np

from asr.data import augment
from asr.recognize.recognizer import load_model

SEED = 123  # not a features-stage example's seed: these are held out


def signals(sample_rate: int) -> dict[str, np.ndarray]:
    """The test signals, float32 in [-1, 1], at ``sample_rate``."""
    rng = np.random.default_rng(SEED)
    t = np.arange(3 * sample_rate) / sample_rate

    def noise(seconds: float, slope: float, dbfs: float) -> np.ndarray:
        return 10 ** (dbfs / 20) * augment.coloured_noise(int(seconds * sample_rate), slope, rng)

    sig = {
        "silence 1 s": np.zeros(sample_rate),
        "silence 3 s": np.zeros(3 * sample_rate),
        "white noise -40 dBFS": noise(2, 0.0, -40),
        "pink noise -30 dBFS": noise(2, -1.0, -30),
        "brown noise -50 dBFS": noise(2, -2.0, -50),
        "hum 50 Hz": 0.05 * (np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t)),
        "clicks": np.where(rng.random(3 * sample_rate) < 0.001, 0.5, 0.0),
        "dither 1 LSB": rng.integers(-1, 2, 2 * sample_rate) / 32768.0,
    }
    return {k: np.asarray(v, np.float32) for k, v in sig.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model files (asr export / a recipe's model.pt)")
    a = p.parse_args(argv)
    heard: dict[str, dict[str, str]] = {}
    for path in a.models:
        model = load_model(path)
        heard[path] = {k: model.transcribe(x, model.sample_rate).text for k, x in signals(model.sample_rate).items()}
    kinds = list(next(iter(heard.values())))
    print("| signal | " + " | ".join(a.models) + " |")
    print("|---" * (1 + len(a.models)) + "|")
    for k in kinds:
        print(f"| {k} | " + " | ".join(repr(heard[m][k]) if heard[m][k] else "(nothing)" for m in a.models) + " |")
    print(
        "| **signals with words** | "
        + " | ".join(f"**{sum(bool(t) for t in heard[m].values())} of {len(kinds)}**" for m in a.models)
        + " |"
    )


if __name__ == "__main__":
    main()
