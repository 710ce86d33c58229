"""A corpus of 30 utterances through ``asr run custom`` with the defaults: the schedule must fit it.

With a schedule counted in epochs (10 passes of a few batches) such a corpus got 100% WER: the
model never left CTC's all-blank output. The schedule in updates (``asr.train.stage.plan``) gives it
hundreds of updates on small batches.
"""

import json

import numpy as np
import pytest
import soundfile as sf
from helpers import asr

from asr.corpora import fsdd

pytestmark = pytest.mark.slow  # trains with the defaults

WORDS = 8  # per utterance


def _kaldi_dir(folder, name_texts):
    folder.mkdir(parents=True)
    (folder / "wav.scp").write_text("".join(f"{n} {w}\n" for n, w, _ in name_texts))
    (folder / "text").write_text("".join(f"{n} {t}\n" for n, _, t in name_texts))
    (folder / "utt2spk").write_text("".join(f"{n} jackson\n" for n, _, _ in name_texts))


def _strings(recs, count, rng, out, split):
    """``count`` utterances of WORDS recordings each, joined by 0.1-0.3 s of silence, as a Kaldi dir."""
    rows = []
    for k in range(count):
        picks = [recs[i] for i in rng.choice(len(recs), WORDS)]
        parts = []
        for r in picks:
            wave, rate = sf.read(r.path, dtype="float32")
            parts += [wave, np.zeros(int(rate * rng.uniform(0.1, 0.3)), np.float32)]
        path = out / "wav" / f"{split}{k:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.concatenate(parts), fsdd.NATIVE_RATE)
        rows.append((f"jackson-{split}{k:02d}", path, " ".join(r.text for r in picks)))
    _kaldi_dir(out / split, rows)
    return out / split


def test_thirty_utterances_of_two_words_train_with_the_defaults(fsdd_recordings, tmp_path):
    recs = [r for r in fsdd.scan(fsdd_recordings) if r.speaker == "jackson" and r.digit in (0, 1)]
    takes = {split: [r for r in recs if fsdd.split_of(r) == split] for split in ("train", "dev", "test")}
    rng = np.random.default_rng(0)
    dirs = {
        split: _strings(takes[split] or takes["train"], n, rng, tmp_path / "corpus", split)
        for split, n in (("train", 30), ("dev", 10), ("test", 20))
    }
    work = tmp_path / "work"
    asr(
        "run",
        "custom",
        "--work-dir",
        str(work),
        "--set",
        f"prepare.train={dirs['train']}",
        "--set",
        f"prepare.dev={dirs['dev']}",
        "--set",
        f"prepare.test={dirs['test']}",
        "--set",
        "features.sample_rate=8000",
    )
    summary = json.loads((work / "train" / "summary.json").read_text())
    assert summary["updates"] >= 400 and summary["schedule"]["batches_per_epoch"] >= 10
    wer = json.loads((work / "score" / "record.json").read_text())["metrics"]
    test = next(v for k, v in wer.items() if k.startswith("test"))
    # a model that outputs nothing scores 100%, one that says the likelier word every time about 50%
    assert test["wer"] <= 0.05, wer
