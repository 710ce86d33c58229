"""A training run's curves, drawn once: the train stage saves them as ``curves.png``, the score stage's training
page embeds them as SVG (:func:`asr.score.training_page.write_training_page`)."""

from __future__ import annotations

from pathlib import Path


def figure(history: list[dict]):
    """CTC loss (train, dev), the dev error rates of greedy decoding and the learning rate over the updates of
    a run's ``history.json``, as a matplotlib figure (imported here: it takes a second, and most commands
    draw nothing)."""
    import matplotlib

    matplotlib.use("Agg")  # drawn to files; no display
    import matplotlib.pyplot as plt

    updates = [h["update"] for h in history]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    axes[0].plot(updates, [h["train_loss"] for h in history], "o-", label="train")
    axes[0].plot(updates, [h["dev_loss"] for h in history], "s-", label="dev")
    axes[0].set_ylabel("CTC loss per token")
    axes[1].plot(updates, [100 * h["dev_wer"] for h in history], "o-", label="dev WER (greedy)")
    axes[1].plot(updates, [100 * h["dev_cer"] for h in history], "s-", label="dev CER (greedy)")
    axes[1].set_ylabel("%")
    axes[2].plot(updates, [h.get("lr", float("nan")) for h in history], ".-", label="learning rate")
    axes[2].set_ylabel("LR")
    axes[2].set_xlabel("update")
    for ax in axes:
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_png(history: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(history)
    fig.savefig(path, dpi=100)
    plt.close(fig)
