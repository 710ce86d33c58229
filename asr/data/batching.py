"""Batching: zero padding and frame-bounded, length-grouped batches (what icefall calls the data module).

Shared by feature extraction, training and decoding; it depends on nothing else in the package.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence


def pad(arrays) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad a list of ``(T_i, ...)`` arrays into ``(B, max T, ...)``; returns it and the lengths ``(B,)``."""
    tensors = [torch.as_tensor(a) for a in arrays]
    return pad_sequence(tensors, batch_first=True), torch.tensor([len(t) for t in tensors])


def make_batches(
    frames: np.ndarray, batch_frames: int, epoch: int, seed: int, weights: np.ndarray | None = None
) -> list[list[int]]:
    """Frame-bounded batches of similar lengths.

    Epoch 0 goes shortest first (SortaGrad); later epochs sort by a randomly
    jittered length (+-10%), cut batches, and shuffle the batch order, seeded by
    ``(seed, epoch)`` so a resumed run rebuilds the same batches.

    Args:
        frames: ``(N,)`` frames of each item.
        batch_frames: most padded frames (batch size x longest item) in a batch; a
            longer item gets a batch of its own.
        weights: ``(N,)`` how often the epoch takes each item on average: its whole part every
            epoch, its fraction as a seeded draw per epoch (0.5: every other epoch on average);
            None: each item once.
    Returns:
        lists of item indices.
    """
    items = np.arange(len(frames))
    if weights is not None and np.any(weights != 1):
        draw = np.random.default_rng([seed, epoch, 2]).random(len(frames))
        items = np.repeat(items, np.floor(weights).astype(np.int64) + (draw < weights % 1))
    lengths = frames[items]
    if epoch == 0:
        order = np.argsort(lengths, kind="stable")
    else:
        rng = np.random.default_rng([seed, epoch])
        order = np.argsort(lengths * rng.uniform(0.9, 1.1, size=len(lengths)), kind="stable")
    batches, cur, longest = [], [], 0
    for i in order:
        longest_if = max(longest, int(lengths[i]))
        if cur and longest_if * (len(cur) + 1) > batch_frames:
            batches.append(cur)
            cur, longest_if = [], int(lengths[i])
        cur.append(int(items[i]))
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


@dataclass(frozen=True)
class Batch:
    """A collated training batch: padded features and each utterance's targets, concatenated (what
    ``F.ctc_loss`` reads), and for a model whose intermediate CTC layer reads other units, that layer's own."""

    feats: torch.Tensor  # (B, T, D) padded with zeros
    lengths: torch.Tensor  # (B,) valid frames per utterance
    targets: torch.Tensor  # (sum of target_lengths,) unit ids of every utterance, one after the other
    target_lengths: torch.Tensor  # (B,)
    inter_targets: torch.Tensor | None = None  # the intermediate layer's, when its units differ; else None
    inter_target_lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def _map(self, fn) -> Batch:
        # (not dataclasses.astuple, which deep-copies every tensor)
        return Batch(*(None if (t := getattr(self, f.name)) is None else fn(t) for f in dataclasses.fields(self)))

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-locked copies (``DataLoader(pin_memory=True)`` calls this on what its workers return)."""
        return self._map(torch.Tensor.pin_memory)

    def select(self, items: list[int]) -> Batch:
        """Some utterances of the batch (places in it, in the order given), the padding cut to their longest."""
        idx = torch.tensor(items)

        def pick(targets: torch.Tensor | None, lengths: torch.Tensor | None):
            if targets is None:
                return None, None
            ends = torch.cumsum(lengths, 0)
            return torch.cat([targets[int(ends[k] - lengths[k]) : int(ends[k])] for k in items]), lengths[idx]

        return Batch(
            self.feats[idx, : int(self.lengths[idx].max())],
            self.lengths[idx],
            *pick(self.targets, self.target_lengths),
            *pick(self.inter_targets, self.inter_target_lengths),
        )
