"""Transcribing audio with a model file: the ``asr.load_model`` API behind ``asr transcribe``,
``asr evaluate`` and ``asr serve``.

A :class:`Recognizer` is the numpy feature front end (:mod:`asr.frontend`), a network (the
torch model of a ``.pt`` file, or an ONNX session: :mod:`asr.onnxrt`) and a search
(:mod:`asr.search`). Only the torch network imports torch, so an ONNX model transcribes
without it. Long files are read and decoded in chunks (``chunk_seconds``), so memory does
not grow with the file's length; word times come from the CTC frame positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr import modelfile
from asr.audio import resample, stream_audio
from asr.ctc import greedy_frames
from asr.errors import AsrError, ConfigError
from asr.frontend import Cmvn, FeatureConfig, feature_config, mfcc
from asr.search import BeamSearch, DecodeOptions
from asr.tokenizer import tokenizer_from_dict


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    path: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "text": self.text,
                "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in self.words]}


class Recognizer:
    """A loaded model: its features, CMVN, network and decoder.

    Args:
        meta: the model file's dict (see :mod:`asr.modelfile`); its weights are the network's business.
        network: ``(T, D)`` normalised features -> ``(T', V)`` log-probabilities, numpy in and out.
        options: the decoder (:class:`asr.search.DecodeOptions`); ``None``: the model file's tuned one.
        lm: for the LM methods, the lm stage's output folder or an ARPA file; ``None``: the LM the model
            file embeds (an exported model), if any.
        chunk_seconds: longer audio is processed in chunks of this length.
        source: the model file's name, for error messages.
    Raises:
        AsrError: a model file whose parts do not fit together (names ``source``).
    """

    def __init__(self, meta: dict, network: Callable[[np.ndarray], np.ndarray], options: DecodeOptions | None = None,
                 lm: str | Path | None = None, chunk_seconds: float = 30.0, source: str = "model file"):
        if not 0 < chunk_seconds < math.inf:
            raise AsrError(f"chunk_seconds must be a positive number of seconds, got {chunk_seconds}")
        self.options = options = options or modelfile.decoding(meta, lm, {}, source)
        self.network, self.meta = network, meta
        self.tokenizer = tokenizer_from_dict(meta["tokenizer"])
        try:
            self.feature_config: FeatureConfig = feature_config(meta["features"])
        except ConfigError as e:
            raise AsrError(f"{source}: bad feature config in the model file ({e})") from None
        if self.feature_config.dim != meta["input_dim"]:
            raise AsrError(f"{source}: the feature config gives {self.feature_config.dim} values per frame, "
                           f"the network takes {meta['input_dim']}; the file is damaged")
        self.cmvn = Cmvn.from_dict(meta["cmvn"], self.feature_config.dim, source)
        self.frame_seconds = self.feature_config.hop_ms / 1000 * meta["model"].get("stack", 1)
        self.chunk_seconds = chunk_seconds
        self.beam = None
        if options.method != "greedy":
            with modelfile.lm_folder(meta if lm is None else {}) as embedded:  # the file's own LM, if any
                self.beam = BeamSearch(self.tokenizer, options, lm if lm is not None else embedded)

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def log_probs(self, wave: np.ndarray) -> np.ndarray:
        """``(T', V)`` log-probabilities of a mono signal at the model's rate."""
        return self.network(self.cmvn(mfcc(wave, self.feature_config)))

    def _decode(self, wave: np.ndarray, offset: float) -> tuple[str, list[Word]]:
        lp = self.log_probs(wave)
        if self.beam is not None:
            text, spans = self.beam(lp)
        else:
            path = greedy_frames(lp)
            text, spans = self.tokenizer.words([u for u, _ in path], [t for _, t in path])
        words = [Word(w, offset + s * self.frame_seconds, offset + (e + 1) * self.frame_seconds) for w, s, e in spans]
        return text, words

    def transcribe(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> Transcript:
        """Transcribe a file (any format, rate and channel count) or a mono float array.

        Raises:
            AudioError: an unreadable file (named in the message).
            AsrError: an array without its ``sample_rate``.
        """
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise AsrError("transcribe(array) needs sample_rate=")
            wave = np.asarray(audio, dtype=np.float32)
            wave = wave.mean(axis=1) if wave.ndim == 2 else wave
            step = int(self.chunk_seconds * self.sample_rate)
            wave = resample(wave, sample_rate, self.sample_rate)
            chunks = (wave[i: i + step] for i in range(0, len(wave), step))
            path = None
        else:
            chunks = stream_audio(audio, self.sample_rate, self.chunk_seconds)
            path = str(audio)
        texts, words, offset = [], [], 0.0
        for chunk in chunks:
            if len(chunk):
                text, w = self._decode(chunk, offset)
                texts.append(text)
                words += w
            offset += len(chunk) / self.sample_rate
        return Transcript(" ".join(t for t in texts if t), words, path)


def load_model(path: str | Path, lm: str | Path | None = None, chunk_seconds: float = 30.0, device: str = "cpu",
               threads: int = 0, **decoding) -> Recognizer:
    """Load a model file for transcription.

    Args:
        path: the model file: a recipe's exported ``data/<recipe>/model.pt`` (its tuned decoding and
            LM inside), the train stage's ``data/<recipe>/train/model.pt``, or an ``.onnx`` export
            (``asr export``), which runs on onnxruntime without importing torch.
        lm: the lm stage's output folder or an ARPA file, instead of the LM the model file embeds.
        device: ``cpu`` or ``cuda`` for a torch model (an ONNX model runs on the CPU).
        threads: CPU threads for the network (0: the runtime's default; torch's setting is process-wide).
        decoding: fields of :class:`asr.search.DecodeOptions` (``method="lexicon_lm"``,
            ``lm_weight=0.5``, ...) overriding the model file's tuned decoding; another ``method``
            starts from that method's defaults. A model file without a tuned decoding decodes
            with lexicon + LM beam search when ``lm`` is given, else greedily (and says so once).
    Raises:
        AsrError: a missing or bad model file, or unknown decoding options.

    Example:
        >>> asr.load_model("data/fsdd/model.pt").transcribe("seven.wav").text
        'seven'
    """
    source = str(path)
    if str(path).endswith(".onnx"):
        from asr.onnxrt import load  # here: onnxruntime is loaded only for an ONNX model

        meta, network = load(path, threads)
    else:
        from asr.model import Network, read_checkpoint  # here: importing torch costs ~2.5 s of an ONNX start

        meta = read_checkpoint(path)
        network = Network(meta, device, source, threads)
    options = modelfile.decoding(meta, lm, decoding, source)
    return Recognizer(meta, network, options, lm, chunk_seconds, source)
