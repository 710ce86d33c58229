"""What a model file holds, without torch: its required entries, the decoding it carries, its LM files.

A model file is a dict of plain data (the network config, tokenizer units, feature config,
CMVN statistics) plus the weights: ``torch.save``d as ``model.pt`` (weights as tensors,
loaded with ``weights_only=True``), or as an ONNX graph whose metadata holds the rest
(:mod:`asr.model.onnxrt`). An exported file (the recipes' ``export`` stage) adds the decoding
tuned on dev, the lexicon and LM files that decoding reads, the training summary, the
scored results and the git commit. Both kinds are read through the checks here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.core.errors import AsrError, ConfigError, TokenizerError
from asr.core.layout import LmDir
from asr.features.frontend import Cmvn, FeatureConfig, feature_config
from asr.model.config import ModelConfig
from asr.search.options import DecodeOptions
from asr.text.tokenizer import PhoneTokenizer, Tokenizer, spells_words_in_phones, tokenizer_from_dict

FORMAT_VERSION = 1
# what a model file must hold, with the type of each entry (the weights are checked by whoever loads them)
REQUIRED = {"model": dict, "input_dim": int, "tokenizer": dict, "features": dict, "cmvn": dict}
# the lm stage's files an exported model may embed (see asr.model.export.lm_files); nothing else is written out
_LM = LmDir(Path())
LM_FILE_NAMES = tuple(p.name for p in (_LM.lexicon, _LM.words, _LM.arpa, _LM.unigrams, _LM.general, _LM.tokens_arpa))
OPTIONAL_LM_FILES = (_LM.general.name,)  # read when the lm stage wrote it (lm.general), else not needed
MAX_UNITS = 100_000
# the optional plain data describe() and the decoders read: entry -> field -> type
_NUMBER = (int, float)
OPTIONAL = {
    "training": {
        "train_utterances": int,
        "updates": int,
        "dev_wer": _NUMBER,
        "dev_cer": _NUMBER,
        "schedule": dict,
        "chosen": (str, type(None)),
    },
    "train_config": {"train_sets": list, "dev_sets": list},
    "decoding": {"tuned_on": list},
    "results": {},
    "lm_files": {},
}
RESULT_FIELDS = {"wer": _NUMBER, "cer": _NUMBER, "greedy_wer": _NUMBER, "utterances": int, "wer_ci": (list, type(None))}


class DamagedModel(AsrError):
    """A model file whose plain data is not what ``asr`` writes."""

    def __init__(self, source: str, field: str, what: str):
        super().__init__(
            f"{source}: the model file's {field} {what}; the file is damaged (or not written by "
            "`asr run`): retrain or re-export it"
        )


def _typed(value: object, kind) -> bool:
    return isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, _NUMBER))


def _check_plain(d: dict, source: str) -> None:
    """The optional entries' types, each field named on failure (``asr info`` and the decoders read them)."""
    units = d["tokenizer"].get("units")
    if not isinstance(units, list) or not 2 <= len(units) <= MAX_UNITS:
        raise DamagedModel(source, "tokenizer units", "are not a list of 2 to 100,000 units")
    if not all(isinstance(u, str) and u for u in units) or len(set(units)) != len(units):
        raise DamagedModel(source, "tokenizer units", "are not distinct non-empty strings")
    for entry, fields in OPTIONAL.items():
        value = d.get(entry)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise DamagedModel(source, entry, f"is a {type(value).__name__}, not a mapping")
        for name, kind in fields.items():
            if name in value and not _typed(value[name], kind):
                raise DamagedModel(source, f"{entry}.{name}", f"is {value[name]!r}")
    for key in ("train_sets", "dev_sets"):
        if not all(isinstance(x, str) for x in (d.get("train_config") or {}).get(key, [])):
            raise DamagedModel(source, f"train_config.{key}", "holds something other than set names")
    if not all(isinstance(x, str) for x in (d.get("decoding") or {}).get("tuned_on", [])):
        raise DamagedModel(source, "decoding.tuned_on", "holds something other than set names")
    hours = ((d.get("training") or {}).get("schedule") or {}).get("hours", 0.0)
    if not _typed(hours, _NUMBER):
        raise DamagedModel(source, "training.schedule.hours", f"is {hours!r}")
    for name, r in (d.get("results") or {}).items():
        if not isinstance(r, dict) or not all(
            _typed(r.get(k), t) for k, t in RESULT_FIELDS.items() if k in r or k in ("wer", "cer", "greedy_wer")
        ):
            raise DamagedModel(source, f"results[{name!r}]", "is not a result (wer, cer, greedy_wer, utterances)")
        ci = r.get("wer_ci")
        if ci is not None and not (len(ci) == 2 and all(_typed(x, _NUMBER) for x in ci)):
            raise DamagedModel(source, f"results[{name!r}].wer_ci", f"is {ci!r}, not two numbers")
    for name, text in (d.get("lm_files") or {}).items():
        if name not in LM_FILE_NAMES:
            raise DamagedModel(source, f"lm_files[{name!r}]", f"is none of the lm stage's files {list(LM_FILE_NAMES)}")
        if not isinstance(text, str) or "\0" in text:
            raise DamagedModel(source, f"lm_files[{name!r}]", "is not text")
    if not isinstance(d.get("git_commit", ""), (str, type(None))):
        raise DamagedModel(source, "git_commit", f"is {d['git_commit']!r}")


def check(d: object, source: str) -> dict:
    """``d`` if it is a model file's dict of our format, its plain data of the right types.

    Raises:
        AsrError: not a model file, a newer format, missing entries, or an entry of the wrong type or
            out of bounds (one error naming ``source`` and the field).
    """
    if not isinstance(d, dict) or d.get("format") != FORMAT_VERSION:
        raise AsrError(f"{source}: not an asr model file of format {FORMAT_VERSION}")
    bad = [k for k, kind in REQUIRED.items() if not isinstance(d.get(k), kind)]
    if bad or not isinstance(d["tokenizer"].get("units"), list):
        raise AsrError(
            f"{source}: the model file lacks {bad or ['tokenizer units']} (damaged, or not written by "
            "`asr run`); retrain or use another model file"
        )
    _check_plain(d, source)
    stored_options(d, source)
    return d


def stored_options(d: dict, source: str = "model file") -> DecodeOptions | None:
    """The decoding a model file carries, or ``None`` (a file from before the export stage)."""
    stored = d.get("decoding")
    if not stored:
        return None
    if not isinstance(stored, dict):
        raise DamagedModel(source, "decoding", f"is a {type(stored).__name__}, not a mapping")
    fields = {f.name: f.type for f in dataclasses.fields(DecodeOptions)}
    for k, v in stored.items():
        kind = {"int": int, "float": _NUMBER}.get(str(fields.get(k)), str if k == "method" else object)
        if k in fields and not _typed(v, kind):
            raise DamagedModel(source, f"decoding.{k}", f"is {v!r}")
    try:
        return DecodeOptions(**{k: v for k, v in stored.items() if k in fields})
    except (TypeError, ValueError) as e:
        raise AsrError(f"{source}: bad decoding settings in the model file ({e})") from None


log = logging.getLogger(__name__)


@functools.cache  # once per file and process
def _say_greedy(source: str) -> None:
    log.warning(
        f"{source} holds no tuned decoding (a train-stage model file), so it decodes greedily; "
        "the recipe's export stage writes data/<recipe>/model.pt with the decoding tuned on dev"
    )


def needed_lm_files(options: DecodeOptions) -> tuple[str, ...]:
    """The lm stage's files a decoding reads, by name (none for greedy and beam)."""
    if options.method == "beam_lm":
        return (_LM.tokens_arpa.name,)
    if options.method == "lexicon":
        return _LM.lexicon.name, _LM.words.name
    if options.method == "lexicon_lm":
        return (_LM.lexicon.name, _LM.words.name, _LM.arpa.name) + (
            (_LM.unigrams.name, _LM.general.name) if options.mix_weight < 1 else ()
        )
    return ()


def _network_config(d: dict, source: str) -> ModelConfig:
    """The ``model`` entry as a :class:`ModelConfig`, every field of its declared type (a ``chunk`` of 1.5 or
    ``"2"`` is refused here, not when a stream first runs)."""
    kinds = {"int": int, "float": _NUMBER, "bool": bool}
    for f in dataclasses.fields(ModelConfig):
        value = d["model"].get(f.name)
        kind = kinds.get(str(f.type))
        if value is not None and kind is not None and not _typed(value, kind):
            raise DamagedModel(source, f"model.{f.name}", f"is {value!r}")
    try:
        return ModelConfig(**d["model"])
    except (TypeError, ValueError) as e:
        raise DamagedModel(source, "model config", f"is not valid ({e})") from None


@dataclass(frozen=True)
class ModelFile:
    """A model file read and checked once (:meth:`from_dict`): the network's config, units, features and CMVN as
    objects, and the decoding it carries. The recognizer, streams, export, ``asr info`` and the decode stage ask
    it, never the raw dict (kept in :attr:`data` for writing a file anew)."""

    data: dict  # the file's plain data (and, from a .pt, its weights under "state_dict")
    source: str  # what messages call it: the path
    config: ModelConfig
    tokenizer: Tokenizer
    features: FeatureConfig
    cmvn: Cmvn
    tuned: DecodeOptions | None  # the decoding tuned on dev (the export stage's); None: a train-stage file

    @classmethod
    def from_dict(cls, d: object, source: str) -> ModelFile:
        """Check ``d`` (see :func:`check`) and build its parts.

        Raises:
            AsrError: not a model file of our format, or an entry that is damaged (named with ``source``).
        """
        d = check(d, source)
        config = _network_config(d, source)
        try:
            tokenizer = tokenizer_from_dict(d["tokenizer"])
        except TokenizerError as e:
            raise DamagedModel(source, "tokenizer", f"cannot be read ({e})") from None
        try:
            features = feature_config(d["features"])
        except ConfigError as e:
            raise AsrError(f"{source}: bad feature config in the model file ({e})") from None
        if features.dim != d["input_dim"]:
            raise AsrError(
                f"{source}: the feature config gives {features.dim} values per frame, "
                f"the network takes {d['input_dim']}; the file is damaged"
            )
        cmvn = Cmvn.from_dict(d["cmvn"], features.dim, source)
        inter = d.get("inter_tokenizer")
        if inter is not None:
            if not isinstance(inter, dict):
                raise DamagedModel(source, "inter_tokenizer", f"is a {type(inter).__name__}, not a mapping")
            try:
                tokenizer_from_dict(inter)
            except TokenizerError as e:
                raise DamagedModel(source, "inter_tokenizer", f"cannot be read ({e})") from None
        return cls(d, source, config, tokenizer, features, cmvn, stored_options(d, source))

    @property
    def input_dim(self) -> int:
        return self.data["input_dim"]

    def check_network(self, network) -> None:
        """Run ``network`` (a torch or ONNX network of this file) once on silence as the recognizer runs it, so
        a network that does not fit this file's metadata is refused on load, not on the first request: the
        input width, the frames it stacks (an offline network gives ``ceil(T / stack)`` frames), a streaming
        network's chunk, right context and state shapes (two chunks, the second with the first's state), the
        units per frame, and finite output (NaN weights give NaN).

        Raises:
            DamagedModel: what did not fit, named.
        """
        cfg, units = self.config, len(self.tokenizer.units)
        try:
            if self.is_streaming:
                window = np.zeros((cfg.chunk + cfg.right_context, self.input_dim * cfg.stack), np.float32)
                out, state = network.step(window, cfg.chunk, None)
                out, _ = network.step(window, cfg.chunk, state)
                want = (cfg.chunk, units)
            else:
                out = network(np.zeros((8 * cfg.stack, self.input_dim), np.float32))
                want = (8, units)
        except Exception as e:  # torch and onnxruntime raise their own types for inputs a graph does not take
            detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise DamagedModel(
                self.source, "network", f"does not run as its metadata describes it ({detail})"
            ) from None
        out = np.asarray(out)
        if out.shape != want:
            raise DamagedModel(
                self.source, "network", f"gives {out.shape} log-probabilities where its metadata means {want}"
            )
        if not np.isfinite(out).all():
            raise DamagedModel(self.source, "network", "gives NaN or infinite values (damaged weights)")

    @property
    def is_streaming(self) -> bool:
        """A latency-controlled model (``chunk`` > 0), which streams; an offline one reads whole utterances."""
        return self.config.streaming

    @property
    def is_phone_model(self) -> bool:
        """Its units are phones (its greedy output is phones, scored against the references' phones)."""
        return isinstance(self.tokenizer, PhoneTokenizer)

    @property
    def spells_words_in_phones(self) -> bool:
        """A phone model of word transcripts (a word separator unit): words come from a lexicon's pronunciations,
        so only the lexicon methods output words."""
        return spells_words_in_phones(self.tokenizer)

    @property
    def written_characters(self) -> set[str]:
        """The characters the model's words can hold: its character units, or, for a phone model of words, those
        of its decoding vocabulary (the words its lexicon spells)."""
        if self.spells_words_in_phones:
            words = [(line.split() or [""])[0] for line in self.lm_files.get("words.txt", "").splitlines()]
            return {c for w in words if w != "<unk>" for c in w}  # the decoder's unknown word is never written
        return self.tokenizer.alphabet - {" "}

    @property
    def frame_samples(self) -> int:
        """Audio samples per network output frame."""
        return self.features.hop_length * self.config.stack

    @property
    def frame_seconds(self) -> float:
        return self.frame_samples / self.features.sample_rate

    @property
    def inter_tokenizer(self) -> dict | None:
        """The intermediate CTC layer's units when they differ from the model's (training only), as stored."""
        return self.data.get("inter_tokenizer")

    @property
    def lm_files(self) -> dict[str, str]:
        return self.data.get("lm_files") or {}

    @property
    def tuned_on(self) -> list[str]:
        return (self.data.get("decoding") or {}).get("tuned_on") or []

    @property
    def training(self) -> dict:
        return self.data.get("training") or {}

    @property
    def train_config(self) -> dict:
        return self.data.get("train_config") or {}

    @property
    def results(self) -> dict:
        return self.data.get("results") or {}

    def decoding(self, lm: str | Path | None = None, overrides: dict | None = None) -> DecodeOptions:
        """The decoding to use: the file's tuned one with ``overrides`` (fields of :class:`DecodeOptions`).

        Another ``method`` than the stored one starts from that method's defaults. A file without a
        tuned decoding decodes with lexicon + LM beam search when ``lm`` is given, else greedily, and
        says so once per file.

        Raises:
            AsrError: unknown fields or bad values.
        """
        overrides = overrides or {}
        fields = {f.name for f in dataclasses.fields(DecodeOptions)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise AsrError(f"unknown decoding option(s) {unknown}; options: {sorted(fields)}")
        stored = self.tuned
        same_method = stored is not None and overrides.get("method", stored.method) == stored.method
        chosen = {**(dataclasses.asdict(stored) if same_method else {}), **overrides}
        if "method" not in chosen:
            chosen["method"] = "lexicon_lm" if lm else "greedy"
            if not lm:
                _say_greedy(self.source)
        try:
            return DecodeOptions(**chosen)
        except ValueError as e:
            raise AsrError(f"decoding options: {e}") from None

    @contextlib.contextmanager
    def lm_folder(self, options: DecodeOptions) -> Iterator[Path | None]:
        """The embedded LM files ``options`` reads, as an lm stage folder for the decoder, removed once it has
        read them; ``None`` when the file embeds none (names and types were checked on load: see :func:`check`)."""
        files = {n: t for n, t in self.lm_files.items() if n in needed_lm_files(options)}
        if not files:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="asr-model-lm-") as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            yield Path(tmp)
