"""A model file's network as ONNX (``asr export MODEL --onnx OUT``), the rest of the file in its metadata, for
:mod:`asr.model.onnxrt` to run without torch: the offline network with dynamic batch and time axes, or a
streaming model's chunk step with its states as inputs and outputs."""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path

import onnx
import torch

from asr.core.errors import AsrError
from asr.core.fsutil import check_output_file
from asr.model import onnxrt
from asr.model.network import AcousticModel, build_from_checkpoint, length_reversal, load


class _Unrolled(torch.nn.Module):
    """The network with one single-layer, one-direction RNN per layer and direction (ONNX's LSTM/GRU op),
    each reverse direction fed every utterance reversed within its own length, as :class:`AcousticModel`
    does on the CPU, so padded batches of any lengths give each utterance's own result."""

    def __init__(self, model: AcousticModel):
        super().__init__()
        cfg, rnn = model.cfg, model.rnn
        if cfg.proj:
            raise AsrError(
                "ONNX export of LSTM projections is not supported (ONNX's LSTM has none); "
                "train with train.model.proj=0 to export"
            )
        self.cfg, self.output, self.front = cfg, model.output, model.front
        cls = torch.nn.LSTM if cfg.rnn == "lstm" else torch.nn.GRU
        self.cells = torch.nn.ModuleList()
        for layer in range(cfg.num_layers):
            for suffix in ["", "_reverse"][: 2 if cfg.bidirectional else 1]:
                inp = getattr(rnn, f"weight_ih_l{layer}{suffix}").shape[1]
                cell = cls(inp, cfg.hidden, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, f"{name}_l0").data.copy_(getattr(rnn, f"{name}_l{layer}{suffix}").data)
                self.cells.append(cell)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = feats.shape
        s = self.cfg.stack
        if self.front is not None:
            x = self.front(feats, lengths)
        else:
            feats = feats * (torch.arange(t)[None, :, None] < lengths[:, None, None]).to(feats.dtype)
            pad = (s - t % s) % s
            feats = torch.cat([feats, feats.new_zeros(b, pad, d)], dim=1)
            x = feats.reshape(b, -1, d * s)
        out_lengths = torch.div(lengths + s - 1, s, rounding_mode="floor")
        valid, reverse = length_reversal(out_lengths, x.shape[1])
        dirs = 2 if self.cfg.bidirectional else 1
        h = x
        for layer in range(self.cfg.num_layers):
            outs = []
            for k in range(dirs):
                cell = self.cells[layer * dirs + k]
                outs.append(reverse(cell(reverse(h))[0]) if k else cell(h)[0])
            h = torch.cat(outs, dim=-1) if dirs > 1 else outs[0]
        return self.output(h * valid.to(h.dtype)).log_softmax(dim=-1), out_lengths


class _StreamStep(_Unrolled):
    """A streaming model's chunk step (:meth:`AcousticModel.step`) as one graph: ``window`` ``(1, T, D * stack)``
    whose first ``n_main`` steps are the chunk and the rest its right context, ``n_valid`` of the ``T`` steps
    real (the runtime appends at least one padding step, so the context is never empty), and the forward
    directions' states ``h0``, ``c0`` ``(layers, 1, hidden)`` (``c0`` passes through a GRU) -> the chunk's
    ``(n_main, V)`` log-probabilities and the states after it."""

    def forward(self, window, n_main, n_valid, h0, c0):
        steps = window.shape[1]
        main_idx = torch.arange(n_main[0])
        ctx_idx = torch.arange(n_main[0], steps)
        _, reverse = length_reversal(n_valid, steps)
        dirs, lstm = 2 if self.cfg.bidirectional else 1, self.cfg.rnn == "lstm"
        h, hs, cs = window, [], []
        for layer in range(self.cfg.num_layers):
            fwd = self.cells[layer * dirs]
            state = (h0[layer : layer + 1], c0[layer : layer + 1]) if lstm else h0[layer : layer + 1]
            y_main, after = fwd(h.index_select(1, main_idx), state)
            y_ctx, _ = fwd(h.index_select(1, ctx_idx), after)
            hs.append(after[0] if lstm else after)
            cs.append(after[1] if lstm else c0[layer : layer + 1])
            outs = [torch.cat([y_main, y_ctx], 1)]
            if dirs > 1:
                outs.append(reverse(self.cells[layer * dirs + 1](reverse(h))[0]))
            h = torch.cat(outs, -1) if dirs > 1 else outs[0]
        log_probs = self.output(h[0].index_select(0, main_idx)).log_softmax(dim=-1)
        return log_probs, torch.cat(hs), torch.cat(cs)


def _export_offline(network: _Unrolled, ckpt: dict, tmp: Path) -> None:
    feats = torch.randn(2, 23, ckpt["input_dim"])
    torch.onnx.export(
        network,
        (feats, torch.tensor([23, 11])),
        str(tmp),
        dynamo=False,
        opset_version=17,
        input_names=["feats", "lengths"],
        output_names=["log_probs", "out_lengths"],
        dynamic_axes={
            "feats": {0: "batch", 1: "time"},
            "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "steps"},
            "out_lengths": {0: "batch"},
        },
    )


def _export_stream_step(network: _StreamStep, ckpt: dict, tmp: Path) -> None:
    cfg = network.cfg
    width = ckpt["input_dim"] * cfg.stack
    state = torch.zeros(cfg.num_layers, 1, cfg.hidden)
    args = (torch.randn(1, 9, width), torch.tensor([4]), torch.tensor([7]), state, state)
    torch.onnx.export(
        network,
        args,
        str(tmp),
        dynamo=False,
        opset_version=17,
        input_names=["window", "n_main", "n_valid", "h0", "c0"],
        output_names=["log_probs", "h", "c"],
        dynamic_axes={"window": {1: "steps"}, "log_probs": {0: "chunk"}},
    )


def to_onnx(model_path: str | Path, out: str | Path) -> dict:
    """Write a model file's network as ONNX (dynamic batch and time axes) with the rest of the file
    (units, features, CMVN, decoding, LM files, training summary, results) in its metadata.

    Returns:
        the metadata written (see :mod:`asr.model.onnxrt`).
    """
    out = check_output_file(out, "--onnx")
    ckpt = load(model_path).data
    model = build_from_checkpoint(ckpt, str(model_path))
    network = (_StreamStep if model.cfg.streaming else _Unrolled)(model).eval()
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation; it does the job
            warnings.simplefilter("ignore")
            # a streaming model: its chunk step, the states as inputs and outputs
            (_export_stream_step if model.cfg.streaming else _export_offline)(network, ckpt, tmp)
        meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
        meta["parameters"] = sum(v.numel() for v in ckpt["state_dict"].values())
        graph = onnx.load(str(tmp))
        graph.metadata_props.add(key=onnxrt.META_KEY, value=json.dumps(meta))
        onnx.save(graph, str(tmp))
        os.replace(tmp, check_output_file(out, "--onnx"))  # checked again: it may have changed meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return meta
