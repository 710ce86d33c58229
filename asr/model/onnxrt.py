"""Running an exported ONNX model (``asr export MODEL --onnx OUT``) with onnxruntime, without torch.

The ONNX file holds the network (inputs ``feats`` ``(B, T, D)`` float32 and ``lengths`` ``(B,)``
int64; outputs ``log_probs`` ``(B, T', V)`` and ``out_lengths``) and, in its metadata under
``asr``, the rest of the model file as JSON: units, feature config, CMVN, the tuned decoding
and its LM files, training summary and results (see :mod:`asr.model.modelfile`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from asr.core.errors import AsrError
from asr.model.config import ModelConfig
from asr.model.modelfile import ModelFile

META_KEY = "asr"  # the metadata entry holding the model file's plain data


class OnnxNetwork:
    """An ONNX session as a function of one utterance: ``(T, D)`` normalised features -> ``(T', V)``
    log-probabilities, numpy in and out."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(feats, dtype=np.float32)[None]
        log_probs, lengths = self.session.run(None, {"feats": x, "lengths": np.array([x.shape[1]], np.int64)})
        return log_probs[0, : int(lengths[0])]


class OnnxStreamingNetwork:
    """A streaming model's exported chunk step: :meth:`step` as the torch model's, and the whole utterance
    (``__call__``) run chunk by chunk as a stream runs it."""

    def __init__(self, session: ort.InferenceSession, config: ModelConfig):
        self.session, self.config = session, config
        self.zeros = np.zeros((config.num_layers, 1, config.hidden), np.float32)
        self.inputs = {i.name for i in session.get_inputs()}  # a one-way model's graph has no n_valid

    def step(self, window: np.ndarray, n_main: int, state) -> tuple[np.ndarray, tuple]:
        h, c = state if state is not None else (self.zeros, self.zeros)
        x = np.concatenate([window, np.zeros((1, window.shape[1]), np.float32)])  # the context is never empty
        feed = {
            "window": np.ascontiguousarray(x, dtype=np.float32)[None],
            "n_main": np.array([n_main], np.int64),
            "n_valid": np.array([len(window)], np.int64),
            "h0": h,
            "c0": c,
        }
        log_probs, h, c = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})
        return log_probs, (h, c)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        s, chunk, right = self.config.stack, self.config.chunk, self.config.right_context
        x = np.asarray(feats, np.float32)
        x = np.concatenate([x, np.zeros(((-len(x)) % s, x.shape[1]), np.float32)]).reshape(-1, x.shape[1] * s)
        out, state = [], None
        for k in range(0, len(x), chunk):
            log_probs, state = self.step(x[k : k + chunk + right], min(chunk, len(x) - k), state)
            out.append(log_probs)
        return np.concatenate(out)


def load(path: str | Path, threads: int = 0) -> tuple[ModelFile, OnnxNetwork | OnnxStreamingNetwork]:
    """The model file (checked once) and its network, from an ONNX export.

    Args:
        threads: onnxruntime's intra-op threads (0: its default, one per core).
    Raises:
        AsrError: a missing file, one that is not ONNX, or an ONNX file not written by ``asr export``.
    """
    path = Path(path)
    if not path.is_file():
        raise AsrError(f"{path}: no such model file (write one with `asr export data/fsdd/model.pt --onnx {path}`)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for files that are not ONNX models
        raise AsrError(f"{path}: not an ONNX model onnxruntime can load ({str(e).strip()[:200]})") from None
    text = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if text is None:
        raise AsrError(f"{path}: an ONNX model without asr's metadata; export one with `asr export MODEL --onnx OUT`")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise AsrError(f"{path}: its asr metadata is not valid JSON ({e}); the file is damaged") from None
    model = ModelFile.from_dict(meta, str(path))
    width, units = session.get_outputs()[0].shape[-1], len(model.tokenizer.units)
    if not isinstance(width, int) or width != units:
        raise AsrError(f"{path}: the network gives {width} values per frame for {units} units; the file is damaged")
    inputs = {i.name for i in session.get_inputs()}
    need = {"window", "n_main", "h0", "c0"} if model.is_streaming else {"feats", "lengths"}
    if not need <= inputs:
        kind = "a streaming" if model.is_streaming else "an offline"
        raise AsrError(
            f"{path}: the graph's inputs {sorted(inputs)} are not {kind} network's {sorted(need)}, which its "
            "metadata describes; the file is damaged: re-export it"
        )
    network = OnnxStreamingNetwork(session, model.config) if model.is_streaming else OnnxNetwork(session)
    model.check_network(network)
    return model, network
