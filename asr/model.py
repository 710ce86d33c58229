"""The acoustic model: frame stacking, a (bi)directional LSTM/GRU encoder, a linear CTC layer.

A model file is one ``torch.save``d dict of plain data and tensors (config,
tokenizer units, feature config, CMVN statistics, weights), so it loads with
``torch.load(path, weights_only=True)`` and :func:`load_model` rebuilds the model
from it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.errors import AsrError
from asr.modelfile import FORMAT_VERSION, check


@dataclass(frozen=True)
class ModelConfig:
    """The acoustic model's shape (the ``model`` part of the train config)."""

    rnn: Literal["lstm", "gru"] = "lstm"
    bidirectional: bool = True
    num_layers: int = 3
    hidden: int = 256  # units per direction
    proj: int = 0  # LSTM output projection size (0: none); ignored for GRU
    dropout: float = 0.1  # between RNN layers and before the output layer
    stack: int = 1  # frames stacked per step: x1, x2 or x3 subsampling before the RNN

    def __post_init__(self):
        if self.stack not in (1, 2, 3):
            raise ValueError(f"stack must be 1, 2 or 3, got {self.stack}")
        if self.proj and (self.rnn != "lstm" or self.proj >= self.hidden):
            raise ValueError("proj needs rnn=lstm and proj < hidden")
        if self.num_layers < 1 or self.hidden < 1:
            raise ValueError("num_layers and hidden must be positive")


class AcousticModel(nn.Module):
    """``forward(feats (B, T, D), lengths (B,)) -> (log_probs (B, T', V), out_lengths (B,))``.

    ``T' = ceil(T / stack)``. Padding never reaches a real frame's output. A single utterance
    (transcription, decoding) runs straight through the RNN. On CUDA, for LSTM projections
    and without autograd a batch is packed. In CPU training each
    direction runs over the padded batch, the reverse one fed each utterance reversed
    within its own length, so padding only ever follows the real frames: the result of
    packing, through PyTorch's oneDNN LSTM kernel, which takes no packed input and
    trained 2.6x faster here (``python -m asr.benchmarks.train``).
    """

    def __init__(self, input_dim: int, num_units: int, cfg: ModelConfig):
        super().__init__()
        self.cfg, self.input_dim, self.num_units = cfg, input_dim, num_units
        rnn_cls = nn.LSTM if cfg.rnn == "lstm" else nn.GRU
        extra = {"proj_size": cfg.proj} if cfg.rnn == "lstm" and cfg.proj else {}
        self.rnn = rnn_cls(
            input_dim * cfg.stack,
            cfg.hidden,
            num_layers=cfg.num_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            **extra,
        )
        out_dim = (cfg.proj or cfg.hidden) * (2 if cfg.bidirectional else 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(out_dim, num_units)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + self.cfg.stack - 1) // self.cfg.stack

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = feats.shape
        s = self.cfg.stack
        if s > 1:
            # zero the padding, so a stacked step at an utterance's end never sees another's frames
            feats = feats * (
                torch.arange(t, device=feats.device)[None, :, None] < lengths.to(feats.device)[:, None, None]
            )
            pad = (-t) % s
            if pad:
                feats = nn.functional.pad(feats, (0, 0, 0, pad))
            feats = feats.reshape(b, (t + pad) // s, d * s)
        out_lengths = self.output_lengths(lengths)
        # packed: cuDNN; LSTM projections (oneDNN has none); and inference, where the packed CPU
        # path decoded FSDD's test sets in 1.74 s against 2.06 s (asr.benchmarks.decode, 1 thread)
        if b == 1 and not self.cfg.proj:  # one utterance (transcription, decoding): no padding, no packing needed
            hidden, _ = self.rnn(feats)
        elif feats.is_cuda or self.cfg.proj or not torch.is_grad_enabled():
            packed = pack_padded_sequence(feats, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            hidden, _ = self.rnn(packed)
            hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=feats.shape[1])
        else:
            hidden = self._rnn_unpacked(feats, out_lengths.to(feats.device))
        logits = self.output(self.dropout(hidden))
        return logits.float().log_softmax(dim=-1), out_lengths

    def _rnn_unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``self.rnn`` over a padded batch, one layer and direction at a time, with its own weights
        (through ``torch._VF``, the entry point ``nn.LSTM.forward`` itself calls)."""
        rnn, b = self.rnn, x.shape[0]
        valid, reverse = length_reversal(lengths, x.shape[1])
        h = x
        for layer in range(self.cfg.num_layers):
            if layer:
                h = nn.functional.dropout(h, rnn.dropout, self.training)
            outs = []
            for suffix in ["", "_reverse"][: 2 if self.cfg.bidirectional else 1]:
                weights = [
                    getattr(rnn, f"{n}_l{layer}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                inp = reverse(h) if suffix else h
                h0 = inp.new_zeros(1, b, self.cfg.hidden)
                if self.cfg.rnn == "lstm":
                    y = _VF.lstm(inp, (h0, torch.zeros_like(h0)), weights, True, 1, 0.0, self.training, False, True)[0]
                else:
                    y = _VF.gru(inp, h0, weights, True, 1, 0.0, self.training, False, True)[0]
                outs.append(reverse(y) if suffix else y)
            h = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return h * valid


def length_reversal(lengths: torch.Tensor, steps: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """What a reverse direction needs on a padded batch: the ``(B, T, 1)`` mask of valid steps and a function
    reversing a ``(B, T, D)`` batch within each item's length (padding positions get frame 0: they follow the
    real ones), so padded batches of any lengths give each item its own result. Traced into ONNX as it is."""
    t = torch.arange(steps, device=lengths.device)
    valid = (t[None] < lengths[:, None])[..., None]
    source = (lengths[:, None] - 1 - t[None]).clamp(min=0)[..., None]

    def reverse(a: torch.Tensor) -> torch.Tensor:
        return a.gather(1, source.expand(-1, -1, a.shape[2]))

    return valid, reverse


def checkpoint_dict(
    model: AcousticModel, tokenizer: dict, features: dict, cmvn: dict, extra: dict | None = None
) -> dict:
    """Everything needed to transcribe, as plain data (loads with ``weights_only=True``)."""
    model = getattr(model, "module", model)  # unwrap DDP
    return {
        "format": FORMAT_VERSION,
        "model": asdict(model.cfg),
        "input_dim": model.input_dim,
        "tokenizer": tokenizer,
        "features": features,
        "cmvn": cmvn,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }


def build_from_checkpoint(ckpt: dict, source: str = "model file") -> AcousticModel:
    """Rebuild the model of a model file's dict (see :func:`read_checkpoint`).

    Raises:
        AsrError: a config that is not valid, or weights that do not fit it (names ``source``).
    """
    try:
        cfg = ModelConfig(**ckpt["model"])
        units = ckpt["tokenizer"].get("units")
        model = AcousticModel(ckpt["input_dim"], len(units), cfg)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AsrError(
            f"{source}: its weights do not match its model config ({detail}); the file is damaged "
            "or was edited: use the model.pt the train stage wrote"
        ) from None
    return model.eval()


def load_weights(path: str | Path) -> dict:
    """Load a ``torch.save``d object safely (``weights_only=True``: tensors and plain data, never code).

    Raises:
        AsrError: a missing file or one that is not plain data (a pickle that would run code
            is refused without running it), naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AsrError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not plain saved data
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AsrError(
            f"{path}: not a file of tensors and plain data, refused without running it "
            f"({type(e).__name__}: {detail[:300]}); delete it, or use a file this toolkit wrote"
        ) from None


def read_checkpoint(path: str | Path) -> dict:
    """Load a model file safely (``weights_only=True``) and check what it holds.

    Raises:
        AsrError: missing file, not a model file, a newer format, or missing entries.
    """
    path = Path(path)
    if not path.is_file():
        raise AsrError(
            f"{path}: no such model file (train one with `asr run fsdd`, it is written to data/fsdd/train/model.pt)"
        )
    ckpt = check(load_weights(path), str(path))
    if not isinstance(ckpt.get("state_dict"), dict):
        raise AsrError(f"{path}: the model file lacks its weights (state_dict); retrain or use another model file")
    return ckpt


class Network:
    """A model file's network as a function of one utterance: ``(T, D)`` normalised features (numpy)
    -> ``(T', V)`` log-probabilities (numpy), on ``device``."""

    def __init__(self, ckpt: dict, device: str = "cpu", source: str = "model file", threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = build_from_checkpoint(ckpt, source).to(self.device)

    @torch.inference_mode()
    def __call__(self, feats: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None].to(self.device)
        log_probs, lengths = self.model(x, torch.tensor([x.shape[1]]))
        return log_probs[0, : int(lengths[0])].float().cpu().numpy()
