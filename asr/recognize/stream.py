"""Live recognition: audio in as it arrives, partial text out after every piece, utterances ended by silence.

A :class:`Stream` chains the causal parts of a streaming model file (``train.model.chunk > 0``, features with
``top_db=0`` and ``online`` or ``global`` CMVN): :class:`asr.features.frontend.FeatureStream`, the CMVN's running
normalisation, the latency-controlled network one chunk at a time (its forward states carried,
``network.step``) and the search one piece at a time (:meth:`asr.search.beam.BeamSearch.stream`). Each part gives
what it gives for the whole signal at once, so the final text of a stream is the decode stage's text of the
same audio, whatever the sizes of the pieces (up to float rounding in the features' matrix products).

An utterance ends at an endpoint, as Kaldi's online decoders and Vosk's: after speech, ``endpoint_silence``
seconds in which the likeliest unit of every frame is the blank or the word separator (rule 3 of Kaldi's
``OnlineEndpointConfig``), or after ``max_utterance`` seconds. The search then gives that utterance's final
words and starts again; the network goes on with its state. A stream of any length keeps only the current
chunk, the search of the current utterance (at most ``max_utterance``) and the running CMVN sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asr.core.errors import AsrError
from asr.data.audio import MAX_STREAM_SAMPLE_RATE, MIN_SAMPLE_RATE, is_stream_rate
from asr.features.frontend import FeatureStream
from asr.text.transcript import Segment, Transcript

ENDPOINT_SILENCE = 1.0  # seconds of non-speech after speech that end an utterance (Kaldi's rule 3)
MAX_UTTERANCE = 30.0  # seconds: an utterance this long ends here (the search's memory grows with it)


@dataclass
class Partial:
    """What one :meth:`Stream.accept` gives: the utterances an endpoint ended in it (final) and the text so far
    of the utterance in progress."""

    text: str
    finished: list[Transcript] = field(default_factory=list)


class Stream:
    """One live audio stream through a streaming model (:meth:`asr.recognize.recognizer.Recognizer.stream`).

    Args:
        recognizer: a loaded streaming model (``asr.load_model``).
        sample_rate: the rate of the samples given to :meth:`accept` (resampled as they come); ``None``: the
            model's.
        endpoint_silence, max_utterance: the endpoint rule, in seconds (0 silence: never end on silence).
    Raises:
        AsrError: an offline model (its backward direction needs the whole utterance), a model whose
            features or CMVN need the whole utterance, or a bad sample rate.
    """

    def __init__(
        self,
        recognizer,
        sample_rate: int | None = None,
        endpoint_silence: float = ENDPOINT_SILENCE,
        max_utterance: float = MAX_UTTERANCE,
    ):
        config, source = recognizer.model.config, recognizer.source
        if not config.streaming or not hasattr(recognizer.network, "step"):
            raise AsrError(
                f"{source}: an offline model (its backward direction reads the whole utterance) cannot stream; "
                "train a streaming one with --set train.model.chunk=N (the fsdd_stream recipe does)"
                if not config.streaming
                else f"{source}: this runtime cannot stream the model; use its .pt file"
            )
        self.rate = recognizer.sample_rate if sample_rate is None else sample_rate
        if not is_stream_rate(self.rate):
            raise AsrError(
                f"a stream's sample rate is a whole number of Hz, {MIN_SAMPLE_RATE}-{MAX_STREAM_SAMPLE_RATE}; "
                f"got {sample_rate!r}"
            )
        try:
            self.features = FeatureStream(recognizer.feature_config)
            self.cmvn = recognizer.cmvn.stream()
        except AsrError as e:
            raise AsrError(f"{source}: {e}") from None
        self.resampler = None
        if self.rate != recognizer.sample_rate:
            import soxr  # soxr's stream keeps its filter state between pieces (librosa's resample does not)

            self.resampler = soxr.ResampleStream(self.rate, recognizer.sample_rate, 1, dtype="float32", quality="HQ")
        self.recognizer, self.network = recognizer, recognizer.network
        self.stack, self.chunk, self.right = config.stack, config.chunk, config.right_context
        self.frame_seconds = recognizer.frame_seconds
        self.endpoint_frames = round(endpoint_silence / self.frame_seconds) if endpoint_silence > 0 else 0
        self.max_frames = max(1, round(max_utterance / self.frame_seconds))
        units = recognizer.tokenizer.units
        sep = recognizer.tokenizer.separator
        self.quiet = [0] + ([units.index(sep)] if sep in units[1:] else [])  # the blank, the word separator
        self.feats = np.zeros((0, recognizer.feature_config.dim), np.float32)  # normalised frames not yet stacked
        self.steps = np.zeros((0, recognizer.feature_config.dim * self.stack), np.float32)  # stacked, not yet run
        self.state = None  # the network's forward states after the last chunk
        self.frames = 0  # network output frames so far
        self.segments: list[Transcript] = []
        self._begin(0)
        self.finished = False

    def _begin(self, frame: int) -> None:
        self.search, self.start, self.heard, self.silent = self.recognizer.search.stream(), frame, False, 0
        self.peaks: list[np.ndarray] = []  # the utterance's best probability per frame (word confidences)

    def accept(self, samples: np.ndarray) -> Partial:
        """The next samples (mono float in [-1, 1] at the stream's rate) -> what is new.

        Raises:
            AsrError: after :meth:`finish`, or samples that are not finite numbers.
        """
        if self.finished:
            raise AsrError("the stream has finished; start another for more audio")
        x = np.asarray(samples, np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise AsrError("the samples hold NaN or infinite values")
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x)
        done = len(self.segments)
        self._frames(self.features.accept(x), final=False)
        return Partial(self.search.partial().text, self.segments[done:])

    def finish(self) -> list[Transcript]:
        """The end of the audio: the last utterance's final words. Returns the utterances this call finished
        (none, or the last one; a second call finishes none); the whole stream's are in :attr:`segments`,
        joined in :attr:`transcript`."""
        if self.finished:
            return []
        done = len(self.segments)
        if self.resampler is not None:  # the resampler's last samples
            tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._frames(self.features.accept(tail), final=False)
        self._frames(self.features.finish(), final=True)
        self._end()
        self.finished = True
        return self.segments[done:]

    @property
    def transcript(self) -> Transcript:
        """The whole stream's transcript so far: its finished utterances, joined."""
        return Transcript.join(self.segments)

    def _frames(self, feats: np.ndarray, final: bool) -> None:
        """Normalised feature frames -> stacked RNN steps -> chunks through the network -> the search."""
        self.feats = np.concatenate([self.feats, self.cmvn(feats)]) if len(feats) else self.feats
        n = len(self.feats) // self.stack
        if final and len(self.feats) % self.stack:  # the last step's missing frames are zeros, as in training
            pad = self.stack - len(self.feats) % self.stack
            self.feats = np.concatenate([self.feats, np.zeros((pad, self.feats.shape[1]), np.float32)])
            n += 1
        stacked = self.feats[: n * self.stack].reshape(n, self.steps.shape[1])
        self.feats = self.feats[n * self.stack :]
        self.steps = np.concatenate([self.steps, stacked])
        while len(self.steps) >= self.chunk + self.right or (final and len(self.steps)):
            n_main = min(self.chunk, len(self.steps))
            lp, self.state = self.network.step(self.steps[: self.chunk + self.right], n_main, self.state)
            self.steps = self.steps[n_main:]
            self._search(lp)

    def _search(self, lp: np.ndarray) -> None:
        """Log-probabilities to the search, an utterance ended where the endpoint rule says."""
        quiet = np.isin(lp.argmax(-1), self.quiet)
        peaks = np.exp(lp.max(-1))
        i = 0
        for t in range(len(lp)):
            self.silent = self.silent + 1 if quiet[t] else 0
            self.heard = self.heard or not quiet[t]
            length = self.frames + t + 1 - self.start
            if (self.heard and self.endpoint_frames and self.silent >= self.endpoint_frames) or (
                length >= self.max_frames
            ):
                self.search.step(lp[i : t + 1])
                self.peaks.append(peaks[i : t + 1])
                i = t + 1
                self._end()
                self._begin(self.frames + t + 1)
        self.search.step(lp[i:])
        self.peaks.append(peaks[i:])
        self.frames += len(lp)

    def _end(self) -> None:
        """The utterance in progress ends: its final words, timed from the stream's start."""
        best = self.search.end()
        s, peaks = self.frame_seconds, np.concatenate(self.peaks) if self.peaks else np.zeros(0)
        words = [
            w.timed(s, self.start, float(peaks[w.first : w.last + 1].mean()) if w.last < len(peaks) else 0.0)
            for w in best.words
        ]
        if best.text:  # an utterance of noise alone gives no result
            segment = Segment(self.start * s, max(self.frames, self.start) * s, best.text, words)
            self.segments.append(Transcript(best.text, words, segments=[segment]))
