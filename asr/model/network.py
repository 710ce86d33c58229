"""The acoustic model: frame stacking, a (bi)directional LSTM/GRU encoder, a linear CTC layer.

A model file is one ``torch.save``d dict of plain data and tensors (config,
tokenizer units, feature config, CMVN statistics, weights), so it loads with
``torch.load(path, weights_only=True)`` and :func:`load_model` rebuilds the model
from it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from asr.core.errors import AsrError
from asr.model.config import ModelConfig
from asr.model.modelfile import FORMAT_VERSION, ModelFile


class CtcOutput(NamedTuple):
    """What :meth:`AcousticModel.forward` returns. (A named tuple, not a dataclass: DDP and autocast walk a
    module's outputs as tuples; it always has these three fields.)"""

    log_probs: torch.Tensor  # (B, T', V) of the output layer, float32
    lengths: torch.Tensor  # (B,) valid output steps (T' after frame stacking or the convolutional front end)
    inter_log_probs: torch.Tensor | None = None  # (B, T', V') of the intermediate CTC layer, when asked for


class ConvFront(nn.Module):
    """``(feats (B, T, D), lengths) -> (B, ceil(T / stack), channels * ceil(ceil(D / 2) / 2))``: two 2-D
    convolutions with ReLU over (time, feature), the first of ``stack`` frames at a time (kernel and stride
    ``stack`` in time, as frame stacking), the second 3 x 3 over its steps. What lies past an utterance's end
    is zeroed before each, so a padded batch gives each utterance its own result (ONNX-exportable)."""

    def __init__(self, input_dim: int, channels: int, stack: int):
        super().__init__()
        self.stack = stack
        self.conv1 = nn.Conv2d(1, channels, kernel_size=(stack, 3), stride=(stack, 2), padding=(0, 1))
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=(1, 2), padding=1)
        self.out_dim = channels * (((input_dim + 1) // 2 + 1) // 2)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t, _ = feats.shape
        s = self.stack
        feats = feats * (torch.arange(t, device=feats.device)[None, :, None] < lengths.to(feats.device)[:, None, None])
        feats = nn.functional.pad(feats, (0, 0, 0, (s - t % s) % s))
        x = torch.relu(self.conv1(feats.unsqueeze(1)))  # (B, C, T', D')
        steps = torch.div(lengths.to(feats.device) + s - 1, s, rounding_mode="floor")
        x = x * (torch.arange(x.shape[2], device=x.device)[None, None, :, None] < steps[:, None, None, None])
        x = torch.relu(self.conv2(x))
        return x.permute(0, 2, 1, 3).reshape(b, x.shape[2], -1)


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
        self.front = ConvFront(input_dim, cfg.conv, cfg.stack) if cfg.conv else None
        self.rnn = rnn_cls(
            self.front.out_dim if self.front is not None else input_dim * cfg.stack,
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
        self.inter_output = nn.Linear(out_dim, cfg.inter_vocab or num_units) if cfg.inter_ctc else None
        self.pack: bool | None = None  # batches packed (True) or padded (False); None: packed on CUDA and without
        # autograd (see above); set by benchmarks comparing the two

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + self.cfg.stack - 1) // self.cfg.stack

    def stack_frames(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, ceil(T / stack), D * stack)``, the padding zeroed first (a stacked step at an
        utterance's end never sees another's frames)."""
        b, t, d = feats.shape
        s = self.cfg.stack
        if s == 1:
            return feats
        feats = feats * (torch.arange(t, device=feats.device)[None, :, None] < lengths.to(feats.device)[:, None, None])
        pad = (-t) % s
        if pad:
            feats = nn.functional.pad(feats, (0, 0, 0, pad))
        return feats.reshape(b, (t + pad) // s, d * s)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, inter: bool = False) -> CtcOutput:
        """``(B, T, D)`` features and their ``(B,)`` lengths -> the output layer's log-probabilities; with
        ``inter=True`` (training a model with ``inter_ctc``) the intermediate CTC layer's as well."""
        b = feats.shape[0]
        feats = self.stack_frames(feats, lengths) if self.front is None else self.front(feats, lengths)
        out_lengths = self.output_lengths(lengths)
        keep = self.cfg.inter_ctc if inter and self.inter_output is not None else 0
        steps = out_lengths.to(feats.device)
        # packed: cuDNN; LSTM projections (oneDNN has none); and inference, where the packed CPU path is the
        # faster one too (docs/benchmarks.md)
        packed = self.cfg.proj or (self.pack if self.pack is not None else feats.is_cuda or not torch.is_grad_enabled())
        if self.cfg.streaming:
            hidden = self._rnn_chunked(feats, steps, keep)
        elif keep:  # the intermediate layer's output as well: (top, layer `keep`)
            hidden = (self._rnn_packed if packed else self._rnn_unpacked)(feats, steps, keep)
        elif b == 1 and not self.cfg.proj:  # one utterance (transcription, decoding): no padding, no packing needed
            hidden, _ = self.rnn(feats)
        elif packed:
            seq = pack_padded_sequence(feats, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            hidden, _ = self.rnn(seq)
            hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=feats.shape[1])
        else:
            hidden = self._rnn_unpacked(feats, steps)
        if not keep:
            return CtcOutput(self.output(self.dropout(hidden)).float().log_softmax(dim=-1), out_lengths)
        top, mid = hidden
        return CtcOutput(
            self.output(self.dropout(top)).float().log_softmax(dim=-1),
            out_lengths,
            self.inter_output(self.dropout(mid)).float().log_softmax(dim=-1),
        )

    def _direction(self, x: torch.Tensor, state, layer: int, reverse: bool = False):
        """One layer and direction of ``self.rnn`` over ``(B, T, D)`` from ``state`` (``None``: zeros), with its
        own weights (through ``torch._VF``, the entry point ``nn.LSTM.forward`` itself calls); returns the
        ``(B, T, H)`` outputs and the state after the last step."""
        suffix = "_reverse" if reverse else ""
        weights = [getattr(self.rnn, f"{n}_l{layer}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if state is None:
            h0 = x.new_zeros(1, x.shape[0], self.cfg.hidden)
            state = (h0, torch.zeros_like(h0)) if self.cfg.rnn == "lstm" else h0
        if self.cfg.rnn == "lstm":
            y, h, c = _VF.lstm(x, state, weights, True, 1, 0.0, self.training, False, True)
            return y, (h, c)
        y, h = _VF.gru(x, state, weights, True, 1, 0.0, self.training, False, True)
        return y, h

    def _rnn_unpacked(self, x: torch.Tensor, lengths: torch.Tensor, keep: int = 0):
        """``self.rnn`` over a padded batch, one layer and direction at a time, the reverse direction fed each
        item reversed within its own length; ``keep`` > 0: returns layer ``keep``'s output as well, second."""
        valid, reverse = length_reversal(lengths, x.shape[1])
        h, kept = x, None
        for layer in range(self.cfg.num_layers):
            if layer == keep and keep:
                kept = h * valid
            if layer:
                h = nn.functional.dropout(h, self.rnn.dropout, self.training)
            outs = [self._direction(h, None, layer)[0]]
            if self.cfg.bidirectional:
                outs.append(reverse(self._direction(reverse(h), None, layer, True)[0]))
            h = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return (h * valid, kept) if keep else h * valid

    def _rnn_packed(self, x: torch.Tensor, lengths: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``self.rnn`` over a packed batch in two calls (layers below ``keep``, then the rest; cuDNN's packed
        kernel on CUDA), with dropout between layers as ``nn.LSTM`` applies it; returns the top output and layer
        ``keep``'s, padded. (``nn.LSTM`` returns only its top layer's output.)"""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        data, sizes = packed.data, packed.batch_sizes
        dirs, layers = 2 if self.cfg.bidirectional else 1, self.cfg.num_layers
        per_layer = len(self.rnn._flat_weights) // layers
        run = _VF.lstm if self.cfg.rnn == "lstm" else _VF.gru
        outs = []
        for lo, hi in ((0, keep), (keep, layers)):
            if lo:
                data = nn.functional.dropout(data, self.rnn.dropout, self.training)
            h0 = data.new_zeros((hi - lo) * dirs, int(sizes[0]), self.cfg.hidden)
            weights = self.rnn._flat_weights[lo * per_layer : hi * per_layer]
            state = (h0, h0) if self.cfg.rnn == "lstm" else h0
            data = run(data, sizes, state, weights, True, hi - lo, self.rnn.dropout, self.training, dirs == 2)[0]
            seq = PackedSequence(data, sizes, packed.sorted_indices, packed.unsorted_indices)
            outs.append(pad_packed_sequence(seq, batch_first=True, total_length=x.shape[1])[0])
        return outs[1], outs[0]

    def _rnn_chunked(self, x: torch.Tensor, lengths: torch.Tensor, keep: int = 0):
        """The latency-controlled RNN over a padded batch: each item cut into chunks of ``chunk`` steps, chunk
        ``k`` read with the ``right_context`` steps after it (its window). In every layer the forward direction
        runs over the chunks in order carrying its state, and on from a chunk's end state over its context; the
        backward direction runs over each window alone from its last real step. A layer's window context is the
        previous layer's output for that window: what :meth:`step` computes as the audio arrives. ``keep`` > 0:
        returns layer ``keep``'s output as well, second."""
        b, t, d = x.shape
        c, r = self.cfg.chunk, self.cfg.right_context
        k = max(1, -(-t // c))
        x = nn.functional.pad(x, (0, 0, 0, k * c + r - t))
        main = x[:, : k * c].reshape(b, k, c, d)
        ctx = x[:, ((torch.arange(k, device=x.device)[:, None] + 1) * c + torch.arange(r, device=x.device)[None])]
        windows = (lengths[:, None] - torch.arange(k, device=x.device)[None] * c).clamp(0, c + r).reshape(-1)
        _, reverse = length_reversal(windows, c + r)
        valid = (torch.arange(t, device=x.device)[None] < lengths[:, None])[..., None]
        kept = None
        for layer in range(self.cfg.num_layers):
            if layer == keep and keep:
                kept = main.reshape(b, k * c, -1)[:, :t] * valid
            if layer:
                main = nn.functional.dropout(main, self.rnn.dropout, self.training)
                ctx = nn.functional.dropout(ctx, self.rnn.dropout, self.training)
            state, fwd, ends = None, [], []
            for i in range(k):
                y, state = self._direction(main[:, i], state, layer)
                fwd.append(y)
                ends.append(state)
            fwd = torch.stack(fwd, 1)  # (B, K, C, H)
            if r:
                flat = ctx.reshape(b * k, r, -1)
                if self.cfg.rnn == "lstm":
                    start = tuple(torch.stack([e[j][0] for e in ends], 1).reshape(1, b * k, -1) for j in (0, 1))
                else:
                    start = torch.stack([e[0] for e in ends], 1).reshape(1, b * k, -1)
                fwd = torch.cat([fwd, self._direction(flat, start, layer)[0].reshape(b, k, r, -1)], 2)
            out = fwd
            if self.cfg.bidirectional:
                whole = torch.cat([main, ctx], 2).reshape(b * k, c + r, -1)
                bwd = reverse(self._direction(reverse(whole), None, layer, True)[0]).reshape(b, k, c + r, -1)
                out = torch.cat([fwd, bwd], -1)
            main, ctx = out[:, :, :c], out[:, :, c:]
        out = main.reshape(b, k * c, -1)[:, :t] * valid
        return (out, kept) if keep else out

    def step(self, window: torch.Tensor, n_main: int, state: list | None) -> tuple[torch.Tensor, list]:
        """One window of a stream (a streaming model, inference): ``(1, n, D * stack)`` stacked frames, the chunk's
        ``n_main`` then up to ``right_context`` more, and the forward states after the previous chunk (``None``
        at the start) -> the chunk's ``(n_main, V)`` log-probabilities and the states after it."""
        h, new = window, []
        for layer in range(self.cfg.num_layers):
            fwd, after = self._direction(h[:, :n_main], state[layer] if state else None, layer)
            new.append(after)
            if h.shape[1] > n_main:
                fwd = torch.cat([fwd, self._direction(h[:, n_main:], after, layer)[0]], 1)
            if self.cfg.bidirectional:
                fwd = torch.cat([fwd, self._direction(h.flip(1), None, layer, True)[0].flip(1)], -1)
            h = fwd
        return self.output(h[0, :n_main]).float().log_softmax(dim=-1), new


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


def load(path: str | Path) -> ModelFile:
    """Load a ``.pt`` model file safely (``weights_only=True``) and check it, once.

    Raises:
        AsrError: missing file, not a model file, a newer format, missing or damaged entries, no weights.
    """
    path = Path(path)
    if not path.is_file():
        raise AsrError(
            f"{path}: no such model file (train one with `asr run fsdd`, it is written to data/fsdd/train/model.pt)"
        )
    model = ModelFile.from_dict(load_weights(path), str(path))
    if not isinstance(model.data.get("state_dict"), dict):
        raise AsrError(f"{path}: the model file lacks its weights (state_dict); retrain or use another model file")
    return model


def read_checkpoint(path: str | Path) -> dict:
    """A checked model file's dict (:func:`load`), for writing a file anew (the export stage) or training on."""
    return load(path).data


class Network:
    """A model file's network as a function of one utterance: ``(T, D)`` normalised features (numpy)
    -> ``(T', V)`` log-probabilities (numpy), on ``device``."""

    def __init__(self, model: ModelFile, device: str = "cpu", threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = build_from_checkpoint(model.data, model.source).to(self.device)
        model.check_network(self)

    @torch.inference_mode()
    def __call__(self, feats: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None].to(self.device)
        out = self.model(x, torch.tensor([x.shape[1]]))
        return out.log_probs[0, : int(out.lengths[0])].float().cpu().numpy()

    @torch.inference_mode()
    def step(self, window: np.ndarray, n_main: int, state: list | None) -> tuple[np.ndarray, list]:
        """One chunk of a streaming model (:meth:`AcousticModel.step`), numpy in and out; ``state`` is opaque."""
        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None].to(self.device)
        log_probs, state = self.model.step(x, n_main, state)
        return log_probs.cpu().numpy(), state
