"""Turning CTC posteriors into unit sequences."""

from __future__ import annotations

import torch


def greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: ``(B, T, V)``.
        lengths: ``(B,)`` valid frames per item.
    Returns:
        one list of unit ids per item.
    """
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for seq, n in zip(best, lengths.cpu().tolist()):
        seq = seq[:n]
        if n == 0:
            out.append([])
            continue
        keep = torch.ones(n, dtype=torch.bool)
        keep[1:] = seq[1:] != seq[:-1]
        out.append([int(u) for u in seq[keep] if u != blank])
    return out
