"""CTC helpers shared by training, decoding and transcription: best-path decoding and the
frames a label sequence needs, for torch tensors and numpy arrays alike (no torch import, so
the ONNX runtime can use them). (Turning units into words is the tokenizer's: ``Tokenizer.words``.)"""

from __future__ import annotations


def ctc_min_frames(labels: list[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus a blank between repeats."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def greedy(log_probs, lengths, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: ``(B, T, V)``, a torch tensor (on any device) or a numpy array.
        lengths: ``(B,)`` valid frames per item.
    Returns:
        one list of unit ids per item.
    """
    return [[u for u, _ in greedy_frames(lp[:n], blank)] for lp, n in zip(log_probs, lengths.tolist())]


def greedy_frames(log_probs, blank: int = 0) -> list[tuple[int, int]]:
    """``(T, V)`` (torch or numpy) -> ``[(unit, first frame)]`` of the best path."""
    return collapse(log_probs.argmax(-1).tolist(), blank)


def collapse(path: list[int], blank: int = 0) -> list[tuple[int, int]]:
    """A frame-level path -> ``[(unit, first frame)]``: repeats merged, blanks dropped."""
    out, prev = [], blank
    for t, u in enumerate(path):
        if u != prev and u != blank:
            out.append((u, t))
        prev = u
    return out
