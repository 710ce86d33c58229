"""The training run as a page (``score/training.html``): its curves (:mod:`asr.train.curves`, inline SVG), every
dev evaluation as a table row, and the run's settings; self-contained, as the evaluation page."""

from __future__ import annotations

from pathlib import Path

from asr.core.fsutil import atomic_write_text
from asr.score.report_page import fill, page_json, svg
from asr.train import curves

TRAINING = (Path(__file__).resolve().parents[1] / "static" / "training.html").read_text()


def write_training_page(path: str | Path, history: list[dict], settings: dict) -> Path:
    """A page of the training run: CTC loss (train, dev), the dev error rates of greedy decoding and the
    learning rate over the updates (the train stage's ``history.json``), each evaluation as a table row,
    and the run's settings (``settings``: the train config, flattened)."""
    fig = curves.figure(history)
    columns = ["update", "epoch", "train_loss", "dev_loss", "dev_wer", "dev_cer", "lr", "seconds"]
    data = {
        "history": [[h.get(c) for c in columns] for h in history],
        "columns": columns,
        "settings": [[k, str(v)] for k, v in sorted(settings.items())],
    }
    atomic_write_text(Path(path), fill(TRAINING, CHART=svg(fig), DATA=page_json(data)))
    return Path(path)
