"""Transcribing audio with a trained model file: the ``asr.load_model`` API behind
``asr transcribe`` and ``asr evaluate``.

Long files are read and decoded in chunks (``chunk_seconds``), so memory does not
grow with the file's length; word times come from the CTC frame positions.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.audio import resample, stream_audio
from asr.config import from_dict
from asr.errors import AsrError
from asr.features import Cmvn, FeatureConfig, Mfcc
from asr.model import build_from_checkpoint, read_checkpoint
from asr.tokenizer import CharTokenizer


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


def lm_dir_for(lm: str | Path) -> Path:
    """The lm stage's output folder, or an ARPA file (its lexicon is written to a temporary folder)."""
    from asr import lm as lm_mod

    lm = Path(lm)
    if lm.is_dir():
        if not (lm / "lexicon.txt").is_file():
            raise AsrError(f"{lm}: no lexicon.txt; pass the lm stage's output folder (e.g. data/fsdd/lm) or an .arpa file")
        return lm
    model = lm_mod.NgramLM.read_arpa(lm)
    tmp = Path(tempfile.mkdtemp(prefix="asr-lm-"))
    from asr.decode import write_lexicon
    from asr.fsutil import atomic_write_text

    words = sorted(model.vocab - {lm_mod.BOS, lm_mod.EOS, lm_mod.UNK})
    write_lexicon(words, tmp / "lexicon.txt")
    atomic_write_text(tmp / "words.txt", "".join(f"{w}\n" for w in [*words, lm_mod.UNK]))
    (tmp / "lm.arpa").symlink_to(lm.resolve())
    return tmp


class Recognizer:
    """A loaded model with its features, CMVN and decoder.

    Args:
        ckpt: the model file's dict (see :func:`asr.model.checkpoint_dict`).
        method: ``greedy``, ``beam`` (lexicon-free), ``lexicon`` or ``lexicon_lm``.
        lm: for the lexicon methods, the lm stage's output folder or an ARPA file.
        chunk_seconds: longer audio is processed in chunks of this length.
    """

    def __init__(self, ckpt: dict, method: str = "greedy", lm: str | Path | None = None, beam_size: int = 16,
                 lm_weight: float = 1.0, word_score: float = 0.0, chunk_seconds: float = 30.0, device: str = "cpu"):
        self.model = build_from_checkpoint(ckpt).to(device)
        self.device = torch.device(device)
        self.tokenizer = CharTokenizer.from_dict(ckpt["tokenizer"])
        self.feature_config: FeatureConfig = from_dict(FeatureConfig, ckpt["features"])
        self.mfcc = Mfcc(self.feature_config).to(device)
        self.cmvn = Cmvn.from_dict(ckpt["cmvn"])
        self.frame_seconds = self.feature_config.hop_ms / 1000 * self.model.cfg.stack
        self.chunk_seconds = chunk_seconds
        self.beam = None
        if method != "greedy":
            from asr.decode import BeamSearch

            self.beam = BeamSearch(self.tokenizer.units, method, lm_dir_for(lm) if lm else None, beam_size,
                                   lm_weight=lm_weight, word_score=word_score)

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @torch.inference_mode()
    def _decode(self, wave: np.ndarray, offset: float) -> tuple[str, list[Word]]:
        from asr.decode import greedy_frames, words_with_frames

        n = torch.tensor([len(wave)], device=self.device)
        feats, frames = self.mfcc(torch.from_numpy(wave)[None].to(self.device), n)
        x = torch.from_numpy(self.cmvn(feats[0, : int(frames[0])].cpu().numpy()))[None].to(self.device)
        log_probs, lengths = self.model(x, torch.tensor([x.shape[1]]))
        lp = log_probs[0, : int(lengths[0])].cpu()
        if self.beam is not None:
            text, spans = self.beam(lp)
        else:
            path = greedy_frames(lp)
            text, spans = words_with_frames([u for u, _ in path], [t for _, t in path], self.tokenizer.units)
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


def load_model(path: str | Path, **options) -> Recognizer:
    """Load a model file for transcription; ``options`` as :class:`Recognizer`.

    Example:
        >>> asr.load_model("data/fsdd/train/model.pt").transcribe("seven.wav").text
        'seven'
    """
    return Recognizer(read_checkpoint(path), **options)
