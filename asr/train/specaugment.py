"""SpecAugment, training-time masking of normalised feature batches (on the model's device)."""

from __future__ import annotations

import torch
import torchaudio.functional as AF


def spec_augment(
    feats: torch.Tensor,
    freq_mask: int = 5,
    n_freq_masks: int = 2,
    time_mask: int = 20,
    n_time_masks: int = 2,
    max_time_fraction: float = 0.2,
) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on a normalised batch, independent masks per utterance.

    Args:
        feats: ``(B, T, D)``; masked values are set to 0 (the mean after CMVN).
        freq_mask / time_mask: largest width of one mask, in coefficients / frames.
        max_time_fraction: a time mask never covers more than this share of the padded length.
    Returns:
        ``(B, T, D)``, a new tensor. Uses torch's global RNG (seeded and checkpointed by training).
    """
    for _ in range(n_freq_masks):
        feats = AF.mask_along_axis_iid(feats, freq_mask, 0.0, axis=2)
    for _ in range(n_time_masks):
        feats = AF.mask_along_axis_iid(feats, time_mask, 0.0, axis=1, p=max_time_fraction)
    return feats
