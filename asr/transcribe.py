"""Transcribing audio with a trained model file: the ``asr.load_model`` API behind
``asr transcribe`` and ``asr evaluate``.

Long files are read and decoded in chunks (``chunk_seconds``), so memory does not
grow with the file's length; word times come from the CTC frame positions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.audio import resample, stream_audio
from asr.config import from_dict
from asr.ctc import greedy_frames
from asr.decode import BeamSearch, DecodeOptions
from asr.errors import AsrError, ConfigError
from asr.features import Cmvn, FeatureConfig, Mfcc
from asr.model import build_from_checkpoint, read_checkpoint
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
    """A loaded model with its features, CMVN and decoder.

    Args:
        ckpt: the model file's dict (see :func:`asr.model.checkpoint_dict`).
        options: the decoder (:class:`asr.decode.DecodeOptions`); ``None``: lexicon + LM
            beam search with ``lm``, greedy without.
        lm: for the lexicon methods, the lm stage's output folder or an ARPA file.
        chunk_seconds: longer audio is processed in chunks of this length.
        source: the model file's name, for error messages.
    Raises:
        AsrError: a model file whose parts do not fit together (names ``source``).
    """

    def __init__(self, ckpt: dict, options: DecodeOptions | None = None, lm: str | Path | None = None,
                 chunk_seconds: float = 30.0, device: str = "cpu", source: str = "model file"):
        self.options = options = options or decode_options(lm)
        self.model = build_from_checkpoint(ckpt, source).to(device)
        self.device = torch.device(device)
        self.tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
        try:
            self.feature_config: FeatureConfig = from_dict(FeatureConfig, ckpt["features"])
        except ConfigError as e:
            raise AsrError(f"{source}: bad feature config in the model file ({e})") from None
        if self.feature_config.dim != self.model.input_dim:
            raise AsrError(f"{source}: the feature config gives {self.feature_config.dim} values per frame, "
                           f"the network takes {self.model.input_dim}; the file is damaged")
        self.mfcc = Mfcc(self.feature_config).to(device)
        self.cmvn = Cmvn.from_dict(ckpt["cmvn"], self.feature_config.dim, source)
        self.frame_seconds = self.feature_config.hop_ms / 1000 * self.model.cfg.stack
        self.chunk_seconds = chunk_seconds
        self.beam = BeamSearch(self.tokenizer, options, lm) if options.method != "greedy" else None

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @torch.inference_mode()
    def _decode(self, wave: np.ndarray, offset: float) -> tuple[str, list[Word]]:
        n = torch.tensor([len(wave)], device=self.device)
        feats, frames = self.mfcc(torch.from_numpy(wave)[None].to(self.device), n)
        x = torch.from_numpy(self.cmvn(feats[0, : int(frames[0])].cpu().numpy()))[None].to(self.device)
        log_probs, lengths = self.model(x, torch.tensor([x.shape[1]]))
        lp = log_probs[0, : int(lengths[0])].cpu()
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
               **decoding) -> Recognizer:
    """Load a model file for transcription.

    Args:
        path: the model file (``data/<recipe>/train/model.pt``).
        lm: the lm stage's output folder or an ARPA file, for the lexicon methods.
        decoding: fields of :class:`asr.decode.DecodeOptions` (``method="lexicon_lm"``,
            ``lm_weight=0.5``, ...); unset ones keep their defaults, and without ``method``
            the decoder is lexicon + LM beam search when ``lm`` is given, else greedy.
    Raises:
        AsrError: a missing or bad model file, or unknown decoding options.

    Example:
        >>> asr.load_model("data/fsdd/train/model.pt").transcribe("seven.wav").text
        'seven'
    """
    return Recognizer(read_checkpoint(path), decode_options(lm, **decoding), lm, chunk_seconds, device, source=str(path))


def decode_options(lm: str | Path | None = None, **decoding) -> DecodeOptions:
    """:class:`DecodeOptions` from the given fields; without ``method``: lexicon + LM beam search
    when there is an ``lm``, greedy when there is none.

    Raises:
        AsrError: unknown fields or bad values.
    """
    fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    unknown = sorted(set(decoding) - fields)
    if unknown:
        raise AsrError(f"unknown decoding option(s) {unknown}; options: {sorted(fields)}")
    if "method" not in decoding and not lm:
        decoding["method"] = "greedy"
    try:
        return DecodeOptions(**decoding)
    except ValueError as e:
        raise AsrError(f"decoding options: {e}") from None
