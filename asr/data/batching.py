"""Batching: zero padding and frame-bounded, length-grouped batches (what icefall calls the data module).

Shared by feature extraction, training and decoding; it depends on nothing else in the package.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence


def pad(arrays) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad a list of ``(T_i, ...)`` arrays into ``(B, max T, ...)``; returns it and the lengths ``(B,)``."""
    tensors = [torch.as_tensor(a) for a in arrays]
    return pad_sequence(tensors, batch_first=True), torch.tensor([len(t) for t in tensors])


def make_batches(frames: np.ndarray, batch_frames: int, epoch: int, seed: int) -> list[list[int]]:
    """Frame-bounded batches of similar lengths.

    Epoch 0 goes shortest first (SortaGrad); later epochs sort by a randomly
    jittered length (+-10%), cut batches, and shuffle the batch order, seeded by
    ``(seed, epoch)`` so a resumed run rebuilds the same batches.

    Args:
        frames: ``(N,)`` frames of each item.
        batch_frames: most padded frames (batch size x longest item) in a batch; a
            longer item gets a batch of its own.
    Returns:
        lists of item indices.
    """
    if epoch == 0:
        order = np.argsort(frames, kind="stable")
    else:
        rng = np.random.default_rng([seed, epoch])
        order = np.argsort(frames * rng.uniform(0.9, 1.1, size=len(frames)), kind="stable")
    batches, cur, longest = [], [], 0
    for i in order:
        longest_if = max(longest, int(frames[i]))
        if cur and longest_if * (len(cur) + 1) > batch_frames:
            batches.append(cur)
            cur, longest_if = [], int(frames[i])
        cur.append(int(i))
        longest = longest_if
    if cur:
        batches.append(cur)
    if epoch > 0:
        rng = np.random.default_rng([seed, epoch, 1])
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


def split_batch(lengths: torch.Tensor, split_at: int | None) -> list[list[int]]:
    """A batch's items (places ``0..B-1``, in order) cut in halves, and halves of halves, until each piece has
    fewer than ``split_at`` padded frames (items x its longest item) or one item; ``None``: one piece."""
    pieces, out = [list(range(len(lengths)))], []
    while pieces:
        piece = pieces.pop(0)
        if split_at is None or len(piece) == 1 or len(piece) * int(lengths[piece].max()) < split_at:
            out.append(piece)
        else:
            half = (len(piece) + 1) // 2
            pieces[:0] = [piece[:half], piece[half:]]
    return out


def select_items(batch: tuple, items: list[int]) -> tuple:
    """Some items of a collated batch ``(x (B, T, ...), lengths, concatenated targets, target lengths[, the
    intermediate layer's targets, their lengths])``, the padding cut to their longest."""
    x, lengths = batch[:2]
    idx = torch.tensor(items)
    out = (x[idx, : int(lengths[idx].max())], lengths[idx])
    for targets, target_lengths in zip(batch[2::2], batch[3::2]):
        ends = torch.cumsum(target_lengths, 0)
        out += (
            torch.cat([targets[int(ends[k] - target_lengths[k]) : int(ends[k])] for k in items]),
            target_lengths[idx],
        )
    return out
