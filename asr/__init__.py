"""asr: staged speech recognition, audio -> MFCC -> BiLSTM/GRU CTC -> decoding -> WER."""

import os

from asr.core.provenance import __version__

__all__ = ["__version__", "load_model"]

# oneDNN (PyTorch's CPU LSTM kernel) caches a primitive per batch shape, 1,024 by default:
# with length-grouped batches nearly every batch has a new shape and the cache grew the
# fsdd train stage's peak memory from 1.0 to 1.7 GB; 16 entries keep it flat at the same speed.
# Set before torch first uses oneDNN; an explicit setting in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")


def load_model(path, **options):
    """Load a trained model file for transcription; see :class:`asr.recognize.recognizer.Recognizer`."""
    from asr.recognize.recognizer import load_model as _load

    return _load(path, **options)
