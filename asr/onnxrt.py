"""Running an exported ONNX model (``asr export MODEL --onnx OUT``) with onnxruntime, without torch.

The ONNX file holds the network (inputs ``feats`` ``(B, T, D)`` float32 and ``lengths`` ``(B,)``
int64; outputs ``log_probs`` ``(B, T', V)`` and ``out_lengths``) and, in its metadata under
``asr``, the rest of the model file as JSON: units, feature config, CMVN, the tuned decoding
and its LM files, training summary and results (see :mod:`asr.modelfile`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from asr import modelfile
from asr.errors import AsrError

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


def load(path: str | Path, threads: int = 0) -> tuple[dict, OnnxNetwork]:
    """The model file's data and its network, from an ONNX export.

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
    meta = modelfile.check(meta, str(path))
    width = session.get_outputs()[0].shape[-1]
    if not isinstance(width, int) or width != len(meta["tokenizer"]["units"]):
        raise AsrError(
            f"{path}: the network gives {width} values per frame for {len(meta['tokenizer']['units'])} "
            "units; the file is damaged"
        )
    return meta, OnnxNetwork(session)
