"""asr: staged speech recognition, audio -> MFCC -> BiLSTM/GRU CTC -> decoding -> WER."""

__version__ = "0.1.0"


def load_model(path, **options):
    """Load a trained model file for transcription; see :class:`asr.transcribe.Recognizer`."""
    from asr.transcribe import load_model as _load

    return _load(path, **options)
