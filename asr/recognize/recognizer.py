"""Transcribing audio with a model file: the ``asr.load_model`` API behind ``asr transcribe``,
``asr evaluate`` and ``asr serve``.

A :class:`Recognizer` is the numpy feature front end (:mod:`asr.features.frontend`), a network (the
torch model of a ``.pt`` file, or an ONNX session: :mod:`asr.model.onnxrt`) and a search
(:mod:`asr.search.beam`). Only the torch network imports torch, so an ONNX model transcribes
without it. Long files are read and decoded in chunks (``chunk_seconds``), so memory does
not grow with the file's length; word times come from the CTC frame positions.

At a chunk's seams nothing is lost or doubled: the network hears each chunk with
:data:`CONTEXT_SECONDS` of audio on either side and keeps the chunk's own frames (a BiLSTM's
frames near an edge then see what they would in one pass), and the search is cut not at the
chunk's end but in the longest pause between two words of the best path.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from asr.core.ctc import greedy_frames
from asr.core.errors import AsrError
from asr.data.audio import resample, stream_audio
from asr.data.vad import speech_segments
from asr.features.frontend import mfcc
from asr.model.modelfile import ModelFile
from asr.recognize.stream import Stream
from asr.search.beam import searcher
from asr.search.ensemble import HypothesisEnsemble
from asr.search.hotwords import Hotword, read_hotwords
from asr.search.options import DecodeOptions
from asr.text.transcript import Segment, Transcript, Word
from asr.text.written import as_written

MIN_SEGMENT_SECONDS = 10.0  # the longest a speech segment may be, even with a shorter chunk_seconds (1 s cut words)
CONTEXT_SECONDS = 1.5  # audio each side of a chunk that the network hears with it
MIN_CHUNK_SECONDS = 1.0  # shorter chunks would be mostly context (and 0.0001 s chunks took minutes per file)
# the best path's last word may go on past the frames at hand: the pause after it counts as a place to cut
# only this long (the blanks between a word's own units last well under it)
TRAILING_PAUSE_SECONDS = 0.5


class Recognizer:
    """A loaded model: its features, CMVN, network and decoder.

    Args:
        model: the model file, checked (:class:`asr.model.modelfile.ModelFile`); its weights are the network's.
        network: ``(T, D)`` normalised features -> ``(T', V)`` log-probabilities, numpy in and out.
        options: the decoder (:class:`asr.search.options.DecodeOptions`); ``None``: the model file's tuned one.
        lm: for the LM methods, the lm stage's output folder or an ARPA file; ``None``: the LM the model
            file embeds (an exported model), if any.
        chunk_seconds: longer audio is processed in chunks of this length.
        hotwords: words and phrases to add to the lexicon and boost (:mod:`asr.search.hotwords`), written as the
            model writes its words (case and punctuation are made so).
        ensemble: other models (and their networks) of the same units and frame rate, trained apart (another
            seed): the lexicon search proposes each member's best word sequences and all members score them
            (:mod:`asr.search.ensemble`); each member runs its own features, CMVN, network and search, so the time
            grows with their number. Needs a lexicon decoding (this model's, with its LM).
    Raises:
        AsrError: bad ``chunk_seconds``, a decoding the model file cannot give (names the file), hotwords for a
            decoding without a lexicon or that the model cannot spell.
    """

    def __init__(
        self,
        model: ModelFile,
        network: Callable[[np.ndarray], np.ndarray],
        options: DecodeOptions | None = None,
        lm: str | Path | None = None,
        chunk_seconds: float = 30.0,
        vad: bool = True,
        hotwords: Sequence[Hotword] = (),
        ensemble: Sequence[tuple[ModelFile, Callable[[np.ndarray], np.ndarray]]] = (),
    ):
        if not MIN_CHUNK_SECONDS <= chunk_seconds < math.inf:
            raise AsrError(
                f"chunk_seconds must be a positive number of seconds, at least {MIN_CHUNK_SECONDS:g}, "
                f"got {chunk_seconds}"
            )
        self.options = options = options or model.decoding(lm)
        self.model, self.network, self.source = model, network, model.source
        self.tokenizer, self.feature_config, self.cmvn = model.tokenizer, model.features, model.cmvn
        self.frame_samples, self.frame_seconds = model.frame_samples, model.frame_seconds  # per output frame
        self.chunk_seconds = chunk_seconds
        self.vad = vad  # recordings past chunk_seconds: cut at pauses found by a voice activity detector
        self.lm = lm
        if ensemble and not options.needs_lexicon:
            raise AsrError(
                "an ensemble combines its members' word hypotheses through a lexicon: decode with lexicon or "
                f"lexicon_lm, not {options.method}"
            )
        for other, _ in ensemble:
            if other.is_streaming or model.is_streaming:
                raise AsrError(f"{other.source}: an ensemble is of offline models; streaming models run alone")
            if list(other.tokenizer.units) != list(model.tokenizer.units) or other.frame_samples != model.frame_samples:
                raise AsrError(
                    f"{other.source}: its units or frame rate differ from {self.source}'s; an ensemble's models "
                    "share both (the same recipe trained with another seed)"
                )
        self.members = [(model, network), *ensemble]
        self.hotwords, self.search = self._search(hotwords)

    def _search(self, hotwords: Sequence[Hotword]) -> tuple[list[Hotword], Callable]:
        """The hotwords as the model writes them, and the search with them."""
        chars = self.model.written_characters
        written = [replace(h, words=tuple(as_written(h.text, chars).split())) for h in hotwords]
        empty = [h.text for h, w in zip(hotwords, written) if not w.words]
        if empty:
            raise AsrError(f"hotword(s) {empty[:5]} hold no character this model writes")
        lm, options = self.lm, self.options
        with self.model.lm_folder(options) if lm is None else contextlib.nullcontext() as embedded:  # the file's LM
            try:
                search = searcher(self.tokenizer, options, lm if lm is not None else embedded, written)
                return written, HypothesisEnsemble(search, len(self.members)) if len(self.members) > 1 else search
            except AsrError as e:  # name the model file, not a temporary folder gone by the time it is read
                if lm is None and embedded is not None:
                    raise AsrError(str(e).replace(str(embedded), f"{self.source} (its embedded LM)")) from None
                raise

    def addable(self, words: Iterable[str]) -> list[str]:
        """The ``words`` (once each, in order) the decoder's word list lacks and the model can spell: what hotwords
        would add (none without a lexicon search)."""
        spell = getattr(self.search, "spell", None)
        return list(spell(words)[0]) if spell is not None else []

    def with_hotwords(self, hotwords: Sequence[Hotword]) -> Recognizer:
        """The same model and network decoding with these hotwords instead (a search of its own; the network is
        shared).

        Raises:
            AsrError: as the constructor's ``hotwords``.
        """
        other = copy.copy(self)
        other.hotwords, other.search = self._search(hotwords)
        return other

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def log_probs(self, wave: np.ndarray) -> np.ndarray:
        """``(T', V)`` log-probabilities of a mono signal at the model's rate (an ensemble: its members' side by
        side, ``(T', members x V)``, this model's first).

        Raises:
            AsrError: a network whose output is not one column per unit (a damaged or mismatched file).
        """
        each = []
        for model, network in self.members:
            lp = network(model.cmvn(mfcc(wave, model.features)))
            if lp.ndim != 2 or lp.shape[1] != len(self.tokenizer.units):
                raise AsrError(
                    f"{model.source}: the network gives {lp.shape[-1]} values per frame for "
                    f"{len(self.tokenizer.units)} units; the file is damaged"
                )
            each.append(lp)
        if len(each) == 1:
            return each[0]
        frames = min(len(lp) for lp in each)  # the same frame rate: at most a frame apart at the end
        return np.concatenate([lp[:frames] for lp in each], axis=1)

    def _decode(self, lp: np.ndarray, first_frame: int) -> Transcript:
        """The search over ``lp``, its words timed from the signal's start (``lp`` begins at ``first_frame``)."""
        best = self.search(lp)
        # this model's best unit's probability per frame (an ensemble's first member's): a word's confidence is its mean
        peaks = np.exp(lp[:, : len(self.tokenizer.units)].max(-1))
        words = [
            w.timed(
                self.frame_seconds, first_frame, float(peaks[w.first : w.last + 1].mean()) if w.last < len(lp) else None
            )
            for w in best.words
        ]
        return Transcript(best.text, words)

    def _log_prob_pieces(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The whole signal's ``(T', V)`` log-probabilities in consecutive pieces of about ``chunk_seconds``,
        each computed with :data:`CONTEXT_SECONDS` of audio on either side (a piece's frames are the
        frames of the whole signal: windows start on a multiple of an output frame's samples)."""
        step = self.frame_samples
        core = max(1, round(self.chunk_seconds * self.sample_rate / step)) * step
        context = round(CONTEXT_SECONDS * self.sample_rate / step) * step
        buf, buf_start, done = np.zeros(0, np.float32), 0, 0  # samples held, where they start, emitted up to
        for chunk in chunks:
            buf = np.concatenate([buf, chunk])
            while buf_start + len(buf) >= done + core + context:
                start = max(0, done - context)
                lp = self.log_probs(buf[start - buf_start : done + core + context - buf_start])
                first = (done - start) // step
                yield lp[first : first + core // step]
                done += core
                drop = max(0, done - context) - buf_start
                buf, buf_start = buf[drop:], buf_start + drop
        if buf_start + len(buf) > done:
            start = max(0, done - context)
            yield self.log_probs(buf[start - buf_start :])[(done - start) // step :]

    def _cut(self, lp: np.ndarray) -> int | None:
        """Where to split log-probabilities between two searches: the middle of the longest pause between
        words of the best path (or a long one after its last word); ``None`` when there is none."""
        path = greedy_frames(lp[:, : len(self.tokenizer.units)])  # this model's (an ensemble's first member's)
        _, spans = self.tokenizer.words([u for u, _ in path], [t for _, t in path])
        if not spans:
            return len(lp)  # no word at all
        pauses = [(b.first - a.last, (a.last + b.first + 1) // 2) for a, b in zip(spans, spans[1:])]
        trailing = len(lp) - 1 - spans[-1].last
        if trailing * self.frame_seconds >= TRAILING_PAUSE_SECONDS:
            pauses.append((trailing, (spans[-1].last + len(lp) + 1) // 2))
        cut = max(pauses)[1] if pauses else None
        return cut if cut is None or 0 < cut < len(lp) else None

    def _one_pass(self, chunks: Iterable[np.ndarray], path: str | None) -> Transcript:
        """The signal decoded as one utterance (in chunks past ``chunk_seconds``, cut in pauses of the best path);
        each search's part is a segment."""
        max_frames = max(1, round(self.chunk_seconds / self.frame_seconds))
        parts, held, first = [], [], 0  # held: pieces not yet searched, from frame ``first``

        def search(lp: np.ndarray) -> None:
            t = self._decode(lp, first)
            if t.text:
                start, end = (t.words[0].start, t.words[-1].end) if t.words else (first * self.frame_seconds,) * 2
                t.segments = [Segment(start, end, t.text, t.words)]
            parts.append(t)

        for piece in self._log_prob_pieces(chunks):
            held.append(piece)
            while sum(len(p) for p in held) >= max_frames:
                lp = np.concatenate(held)
                cut = self._cut(lp)
                if cut is None:  # one word so far: wait for more, up to twice the chunk
                    if len(lp) < 2 * max_frames:
                        held = [lp]
                        break
                    cut = len(lp)
                search(lp[:cut])
                held, first = [lp[cut:]], first + cut
        if held and sum(len(p) for p in held):
            search(np.concatenate(held))
        return replace(Transcript.join(parts), path=path)

    def _transcribe(self, chunks: Iterable[np.ndarray], path: str | None) -> Transcript:
        """A recording up to ``chunk_seconds`` in one pass; a longer one (with ``vad``) cut into its stretches of
        speech between pauses (:func:`asr.data.vad.speech_segments`), each decoded as an utterance of its own, as
        the recipe decoded its sentences: its own normalisation, no search across a pause, no silence or noise
        decoded."""
        chunks, head, held = iter(chunks), [], 0
        for chunk in chunks:
            head.append(chunk)
            held += len(chunk)
            if held > self.chunk_seconds * self.sample_rate:
                break
        else:
            return self._one_pass(head, path)
        if not self.vad:
            return self._one_pass(itertools.chain(head, chunks), path)
        segments = []
        longest = max(self.chunk_seconds, MIN_SEGMENT_SECONDS)  # a segment past chunk_seconds is decoded in chunks
        for piece in speech_segments(itertools.chain(head, chunks), self.sample_rate, longest):
            start, end = piece.seconds(self.sample_rate)
            t = self._one_pass([piece.audio], None)
            if t.text:
                words = [Word(w.word, w.start + start, w.end + start, w.conf) for w in t.words]
                segments.append(Segment(start, end, t.text, words))
        return Transcript(" ".join(s.text for s in segments), [w for s in segments for w in s.words], path, segments)

    def stream(self, sample_rate: int | None = None, **endpoint) -> Stream:
        """A live stream through a streaming model: ``accept(samples) -> Partial``, ``finish() -> list[Transcript]``.

        Args:
            sample_rate: the rate of the samples to come (``None``: the model's).
            endpoint: ``endpoint_silence``, ``max_utterance`` (seconds), see :class:`asr.recognize.stream.Stream`.
        Raises:
            AsrError: an offline model, or one whose features need the whole utterance.
        """
        return Stream(self, sample_rate, **endpoint)

    @property
    def streaming(self) -> bool:
        return self.model.is_streaming

    def transcribe(
        self,
        audio: str | Path | bytes | np.ndarray,
        sample_rate: int | None = None,
        name: str | None = None,
        max_samples: int | None = None,
    ) -> Transcript:
        """Transcribe a file (any format, rate and channel count), a file's bytes, or a mono float array.

        Args:
            name: what to call a file's bytes in messages.
            max_samples: refuse a file (or bytes) declaring more samples (frames x channels) than this.
        Raises:
            AudioError: an unreadable file (named in the message).
            AsrError: an array without its ``sample_rate``.
        """
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise AsrError("transcribe(array) needs sample_rate=")
            wave = np.asarray(audio, dtype=np.float32)
            wave = wave.mean(axis=1) if wave.ndim == 2 else wave
            if not np.isfinite(wave).all():
                raise AsrError("the samples hold NaN or infinite values")
            chunks, path = [resample(wave, sample_rate, self.sample_rate)], None
        else:
            chunks = stream_audio(audio, self.sample_rate, self.chunk_seconds, name=name, max_samples=max_samples)
            path = None if isinstance(audio, bytes) else str(audio)
        samples = [0]

        def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            for block in blocks:
                samples[0] += len(block)
                yield block

        if self.streaming:  # its forward states run on through the whole file, its utterances end at endpoints
            stream = self.stream()
            for chunk in counted(chunks):
                stream.accept(chunk)
            stream.finish()
            t = replace(stream.transcript, path=path)
        else:
            t = self._transcribe(counted(chunks), path)
        t.duration = samples[0] / self.sample_rate
        return t


def load_model(
    path: str | Path,
    lm: str | Path | None = None,
    chunk_seconds: float = 30.0,
    device: str = "cpu",
    threads: int = 0,
    vad: bool = True,
    hotwords: Sequence[Hotword | str] | str | Path = (),
    ensemble: Sequence[str | Path] = (),
    **decoding,
) -> Recognizer:
    """Load a model file for transcription.

    Args:
        path: the model file: a recipe's exported ``data/<recipe>/model.pt`` (its tuned decoding and
            LM inside), the train stage's ``data/<recipe>/train/model.pt``, or an ``.onnx`` export
            (``asr export``), which runs on onnxruntime without importing torch.
        lm: the lm stage's output folder or an ARPA file, instead of the LM the model file embeds.
        device: ``cpu`` or ``cuda`` for a torch model (an ONNX model runs on the CPU).
        threads: CPU threads for the network (0: the runtime's default; torch's setting is process-wide).
        vad: a recording longer than ``chunk_seconds`` is cut at the pauses a voice activity detector finds and
            each stretch of speech decoded on its own (False: fixed chunks, the search cut in pauses).
        hotwords: a hotword file (:func:`asr.search.hotwords.read_hotwords`), or words and phrases (strings, each
            boosted by the default, or :class:`asr.search.hotwords.Hotword`) to add to the lexicon and boost.
        ensemble: other model files of the same recipe (trained with other seeds) whose networks score the word
            sequences the search proposes with this one's (:mod:`asr.search.ensemble`; the decoding, a lexicon
            search, and its LM are this file's).
        decoding: fields of :class:`asr.search.beam.DecodeOptions` (``method="lexicon_lm"``,
            ``lm_weight=0.5``, ...) overriding the model file's tuned decoding; another ``method``
            starts from that method's defaults. A model file without a tuned decoding decodes
            with lexicon + LM beam search when ``lm`` is given, else greedily (and says so once).
    Raises:
        AsrError: a missing or bad model file, or unknown decoding options.

    Example:
        >>> asr.load_model("data/fsdd/model.pt").transcribe("seven.wav").text
        'seven'
    """
    model, network = _network(path, device, threads)
    others = [_network(p, device, threads) for p in ensemble]
    if isinstance(hotwords, (str, Path)):
        hotwords = read_hotwords(hotwords)
    hotwords = [h if isinstance(h, Hotword) else Hotword(tuple(str(h).split())) for h in hotwords]
    return Recognizer(model, network, model.decoding(lm, decoding), lm, chunk_seconds, vad, hotwords, others)


def _network(path: str | Path, device: str, threads: int) -> tuple[ModelFile, Callable[[np.ndarray], np.ndarray]]:
    """A model file and its network: onnxruntime's for an ``.onnx`` file, else torch's."""
    if str(path).endswith(".onnx"):
        from asr.model.onnxrt import load  # here: onnxruntime is loaded only for an ONNX model

        return load(path, threads)
    from asr.model.network import Network, load  # here: importing torch costs ~2.5 s of an ONNX start

    model = load(path)
    return model, Network(model, device, threads)
