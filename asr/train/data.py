"""Training data in memory: labels and frame counts of the stored features (:func:`load_data`, with the
too-short check), padded batches (:func:`collate`) and the loader that prepares them in worker processes."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from asr.core.ctc import ctc_min_frames
from asr.data.batching import Batch, pad
from asr.features.frontend import Cmvn
from asr.features.store import FeatureStore
from asr.text.tokenizer import Tokenizer


@dataclass(frozen=True)
class Spelling:
    """The units a CTC layer reads and how a transcript becomes their text (``spell``: words into phones through
    a lexicon; ``None``: as written)."""

    tokenizer: Tokenizer
    spell: Callable[[str], str] | None = None

    def text(self, transcript: str) -> str:
        return self.spell(transcript) if self.spell else transcript

    def encode(self, transcript: str) -> list[int]:
        return self.tokenizer.encode(self.text(transcript))


@dataclass
class Data:
    """Utterances of some feature sets, ready to batch."""

    sets: list  # FeatureSet per source
    items: list[tuple[int, int]]  # (set number, index in set)
    labels: list[list[int]]
    frames: np.ndarray
    ids: list[str]
    speakers: list[str]
    texts: list[str]
    # targets of the intermediate CTC layer when its units differ (train.inter_units); None: it reads `labels`
    inter_labels: list[list[int]] | None = None
    # how often a pass sees each utterance (pooled corpora's weights); None: each once
    weights: np.ndarray | None = None


def load_data(
    store: FeatureStore,
    names,
    units: Spelling,
    stack: int,
    max_utts: int = 0,
    seed: int = 0,
    log=None,
    inter: Spelling | None = None,
) -> tuple[Data, list[tuple[str, int, int]]]:
    """Load set indexes and labels in ``units``; drop (and return) utterances too short for their labels.
    ``Data.texts`` holds the transcripts as ``units`` spell them. ``inter``: the intermediate CTC layer's units,
    for its own labels (``Data.inter_labels``).

    Returns:
        the data, and ``(id, frames after stacking, frames needed)`` for each dropped utterance.
    """
    log = log or logging.getLogger("asr.train.stage").info
    sets, items, labels, frames, ids, spk, texts, weights, short = [], [], [], [], [], [], [], [], []
    inter_labels = [] if inter else None
    for s_no, name in enumerate(store.expand(names)):
        fs = store.open(name)
        sets.append(fs)
        for i, u in enumerate(fs.utts):
            text = units.text(u["text"])
            lab = units.tokenizer.encode(text)
            have = math.ceil(u["frames"] / stack)
            need = ctc_min_frames(lab)
            if inter:
                inter_lab = inter.encode(u["text"])
                need = max(need, ctc_min_frames(inter_lab))
            if have < need:
                short.append((u["id"], have, need))
                continue
            items.append((s_no, i))
            labels.append(lab)
            frames.append(u["frames"])
            ids.append(u["id"])
            spk.append(u["speaker"])
            texts.append(text)
            weights.append(u.get("weight", 1.0))
            if inter:
                inter_labels.append(inter_lab)
    weighted = np.array(weights, dtype=np.float64) if any(w != 1.0 for w in weights) else None
    data = Data(sets, items, labels, np.array(frames, dtype=np.int64), ids, spk, texts, inter_labels, weighted)
    if max_utts and max_utts < len(items):
        keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:max_utts])
        data = Data(
            sets,
            [items[k] for k in keep],
            [labels[k] for k in keep],
            data.frames[keep],
            [ids[k] for k in keep],
            [spk[k] for k in keep],
            [texts[k] for k in keep],
            [inter_labels[k] for k in keep] if inter else None,
            None if weighted is None else weighted[keep],
        )
    for uid, have, need in short:
        log(f"train data: {uid} has {have} frames after x{stack} stacking but its text needs {need}; left out")
    return data, short


def collate(data: Data, batch: list[int], cmvn, device: torch.device | None = None) -> Batch:
    """The utterances ``batch`` (places in ``data``) as a :class:`Batch` on ``device``: padded ``(B, T, D)``
    features (CMVN applied; ``None``: as stored) and their targets, with ``Data.inter_labels`` the intermediate
    layer's as well."""
    norm = cmvn or (lambda f, speaker: np.array(f, np.float32))  # a copy: the input may be a read-only view
    x, lengths = pad([norm(data.sets[data.items[i][0]][data.items[i][1]], data.speakers[i]) for i in batch])

    def targets(labels: list[list[int]] | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if labels is None:
            return None, None
        units = torch.tensor([u for i in batch for u in labels[i]], dtype=torch.long)
        return units, torch.tensor([len(labels[i]) for i in batch])

    out = Batch(x, lengths, *targets(data.labels), *targets(data.inter_labels))
    return out if device is None else out.to(device)


def normalise_batch(cmvn: Cmvn | None, x: torch.Tensor, lengths: torch.Tensor, speakers: list[str]) -> torch.Tensor:
    """``cmvn`` over a padded batch ``(B, T, D)`` on its device (in training, the GPU: the loader's workers only
    read and pad), the padding left at zero: what ``Cmvn.__call__`` (:mod:`asr.features.frontend`) gives each
    utterance, up to float rounding (global and speaker statistics: the same numbers). Written here, not in the
    numpy front end, which must not need torch (the ONNX path)."""
    if cmvn is None:
        return x
    dev, t = x.device, x.shape[1]
    mask = (torch.arange(t, device=dev)[None, :] < lengths.to(dev)[:, None])[..., None]
    if cmvn.kind == "none":
        return x * mask
    if cmvn.kind == "utterance":
        n = lengths.to(dev).clamp(min=1)[:, None, None].to(x.dtype)
        mean = (x * mask).sum(1, keepdim=True) / n
        std = ((((x - mean) * mask) ** 2).sum(1, keepdim=True) / n).clamp(min=1e-10).sqrt()
    elif cmvn.kind == "online":  # Cmvn._running's sums, in float64 as there
        f, p = (x * mask).double(), float(cmvn.prior_frames)
        g_mean = torch.as_tensor(cmvn.mean, dtype=torch.float64, device=dev)
        g_var = torch.as_tensor(cmvn.std, dtype=torch.float64, device=dev) ** 2
        n = p + torch.arange(1, t + 1, dtype=torch.float64, device=dev)[None, :, None]
        mean = (p * g_mean + f.cumsum(1)) / n
        second = (p * (g_var + g_mean * g_mean) + (f * f).cumsum(1)) / n
        std = (second - mean * mean).clamp(min=1e-10).sqrt()
        return ((x.double() - mean) / std).float() * mask
    elif cmvn.kind == "speaker":  # a speaker without statistics: the global ones
        stats = [cmvn.speakers.get(s, (cmvn.mean, cmvn.std)) for s in speakers]
        mean = torch.as_tensor(np.stack([m for m, _ in stats]), device=dev)[:, None]
        std = torch.as_tensor(np.stack([d for _, d in stats]), device=dev)[:, None]
    else:
        mean, std = torch.as_tensor(cmvn.mean, device=dev), torch.as_tensor(cmvn.std, device=dev)
    return (x - mean) / std * mask


class _Batches(torch.utils.data.Dataset):
    """Each item one whole batch, collated on the CPU: the DataLoader's workers read and pad it (CMVN runs on
    the model's device: :func:`normalise_batch`)."""

    def __init__(self, data: Data, batches: list[list[int]]):
        self.data, self.batches = data, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        return collate(self.data, self.batches[k], None)


def batch_loader(data: Data, batches: list[list[int]], workers: int, pin: bool):
    """The batches in order, as stored (not normalised), built ``workers`` processes ahead (none: here, one at a
    time). No randomness
    happens in a worker (SpecAugment runs on the model's side), so any ``workers`` trains the same model."""
    if workers <= 0:
        return (collate(data, b, None) for b in batches)
    # its own generator: the loader draws its workers' seed from it, not from the global one that
    # SpecAugment and dropout draw from
    return iter(
        torch.utils.data.DataLoader(
            _Batches(data, batches),
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            pin_memory=pin,
            prefetch_factor=4,
            generator=torch.Generator(),
        )
    )


# --- loss and evaluation ------------------------------------------------------------------------------
