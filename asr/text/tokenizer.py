"""Tokenizers: the units of the CTC output layer, characters or subwords.

:class:`CharTokenizer`: unit 0 is the CTC blank, unit 1 the word separator ``|`` that
stands for a space, then the characters of the alphabet in sorted order.
:class:`SubwordTokenizer`: a sentencepiece model (BPE or unigram, trained on the training
transcripts); unit 0 is the blank (in place of sentencepiece's ``<unk>``, which text never
maps to: characters outside the training alphabet are an error), unit k>0 is piece k, and a
piece starting with ``\u2581`` begins a word. :class:`PhoneTokenizer`: each space-separated
token of the text is a unit (phones, as TIMIT's), unit 0 the blank. Each is saved with the model as a plain dict
(the sentencepiece model as base64 text), so a model file alone can decode and loads with
``weights_only=True``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

import sentencepiece as spm

from asr.core.errors import TokenizerError
from asr.text.transcript import FrameWord

BLANK = "<blk>"
WORD_SEP = "|"
PIECE_START = "\u2581"  # sentencepiece's mark of a word's first piece


def _words(parts: Iterable[tuple[str, int, bool]]) -> tuple[str, list[FrameWord]]:
    """``(text, frame, begins a new word)`` per unit -> the text and its words with their first and last frames.
    A unit with empty text only marks a word boundary."""
    spans, cur, start, end = [], "", 0, 0
    for text, t, boundary in parts:
        if boundary and cur:
            spans.append(FrameWord(cur, start, end))
            cur = ""
        if not text:
            continue
        if not cur:
            start = t
        cur, end = cur + text, t
    if cur:
        spans.append(FrameWord(cur, start, end))
    return " ".join(w.word for w in spans), spans


class _Units:
    """What both tokenizers share: unit 0 is the CTC blank; text may hold only ``alphabet``."""

    units: list[str]

    @property
    def alphabet(self) -> set[str]:
        raise NotImplementedError

    @property
    def blank(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.units)

    def unknown_chars(self, text: str) -> list[str]:
        """The characters of ``text`` the tokenizer has no unit for, in order of appearance."""
        alphabet = self.alphabet
        return list(dict.fromkeys(c for c in text if c not in alphabet))


class CharTokenizer(_Units):
    """Maps text to unit ids and back.

    Args:
        alphabet: the characters text may hold, besides the space.
    """

    def __init__(self, alphabet: Iterable[str]):
        chars = sorted(set(alphabet) - {" "})
        for c in chars:
            if len(c) != 1 or c == WORD_SEP:
                raise TokenizerError(f"bad alphabet entry {c!r}: entries are single characters other than {WORD_SEP!r}")
        self.units: list[str] = [BLANK, WORD_SEP, *chars]
        self._index = {u: i for i, u in enumerate(self.units)}
        self._index[" "] = self._index.pop(WORD_SEP)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Learn the alphabet from training transcripts."""
        alphabet: set[str] = set()
        for t in texts:
            alphabet.update(t)
        return cls(alphabet)

    @property
    def alphabet(self) -> set[str]:
        """The characters accepted in text (the space included)."""
        return set(self.units[2:]) | {" "}

    def encode(self, text: str) -> list[int]:
        """Text -> unit ids. Runs of spaces collapse to one separator; edges are stripped.

        Raises:
            TokenizerError: a character outside the alphabet (never dropped silently).
        """
        bad = self.unknown_chars(text)
        if bad:
            raise TokenizerError(f"text {text!r} holds characters outside the alphabet: {bad}")
        return [self._index[c] for c in " ".join(text.split())]

    def decode(self, ids: Iterable[int]) -> str:
        """Unit ids (blanks already removed or not) -> text."""
        out = "".join(self.units[i] for i in ids if i != 0)
        return " ".join(out.replace(WORD_SEP, " ").split())

    def words(self, tokens: list[int], frames: list[int]) -> tuple[str, list[FrameWord]]:
        """Decoded units (blanks allowed) with their frames -> text and its timed words."""
        units = (self.units[u] for u in tokens)
        return _words(
            ("" if sym == WORD_SEP else sym, t, sym == WORD_SEP) for u, sym, t in zip(tokens, units, frames) if u != 0
        )

    @property
    def separator(self) -> str:
        """The unit that ends a word (the beam search's silence token)."""
        return WORD_SEP

    def to_dict(self) -> dict:
        return {"type": "char", "units": list(self.units)}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if d.get("type") != "char":
            raise TokenizerError(f"unknown tokenizer type {d.get('type')!r}")
        tok = cls(d["units"][2:])
        if tok.units != d["units"]:
            raise TokenizerError("saved tokenizer units are not in canonical order; the file is corrupt")
        return tok


class SubwordTokenizer(_Units):
    """Subword units from a sentencepiece model.

    Args:
        model: the serialized sentencepiece model (``ModelProto`` bytes).
    """

    def __init__(self, model: bytes):
        self.model = bytes(model)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model)
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        if self.sp.unk_id() != 0 or len(set(pieces)) != len(pieces):
            raise TokenizerError("sentencepiece model must have <unk> as piece 0 and distinct pieces")
        self.units: list[str] = [BLANK, *pieces[1:]]
        self._chars = {c for p in pieces[1:] for c in p} - {PIECE_START}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "bpe") -> SubwordTokenizer:
        """Train on transcripts (every character covered; deterministic for the same texts).

        Raises:
            TokenizerError: no texts, or a vocabulary too large for them (sentencepiece says how large it may be).
        """
        texts = [" ".join(t.split()) for t in texts if t.strip()]
        if not texts:
            raise TokenizerError("cannot train subword units on no text")
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_writer=out,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=1.0,
                bos_id=-1,
                eos_id=-1,
                unk_id=0,
                num_threads=1,
                minloglevel=2,
                hard_vocab_limit=True,
            )
        except RuntimeError as e:
            raise TokenizerError(f"subword units: {e} (lower train.vocab_size)") from None
        return cls(out.getvalue())

    @property
    def alphabet(self) -> set[str]:
        return self._chars | {" "}

    def encode(self, text: str) -> list[int]:
        """Text -> unit ids.

        Raises:
            TokenizerError: a character outside the training alphabet (never dropped silently).
        """
        bad = self.unknown_chars(text)
        if bad:
            raise TokenizerError(f"text {text!r} holds characters outside the alphabet: {bad}")
        return self.sp.encode(" ".join(text.split()))

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.sp.decode([i for i in ids if i != 0]).split())

    def words(self, tokens: list[int], frames: list[int]) -> tuple[str, list[FrameWord]]:
        """As :meth:`CharTokenizer.words`: a piece starting with the word mark begins a word."""
        pieces = ((self.units[u], t) for u, t in zip(tokens, frames) if u != 0)
        return _words((p.lstrip(PIECE_START), t, p.startswith(PIECE_START)) for p, t in pieces)

    @property
    def separator(self) -> str:
        """The beam search's silence token: the bare word mark when it is a piece, else the blank."""
        return PIECE_START if PIECE_START in self.units else BLANK

    def to_dict(self) -> dict:
        return {"type": "sentencepiece", "units": list(self.units), "model": base64.b64encode(self.model).decode()}

    @classmethod
    def from_dict(cls, d: dict) -> SubwordTokenizer:
        try:
            tok = cls(base64.b64decode(d["model"]))
        except (KeyError, ValueError, RuntimeError) as e:
            raise TokenizerError(f"saved subword model is damaged ({e})") from None
        if tok.units != d.get("units"):
            raise TokenizerError("saved subword units do not match the sentencepiece model; the file is damaged")
        return tok


class PhoneTokenizer(_Units):
    """Space-separated tokens as units (phone transcripts such as ``"sil dh ax k ae t"``): every
    token is a unit and a "word" of the output, so the scorer's word error rate is the phone error rate.
    Phones spelled from words through a lexicon (``"dh ah | k ae t"``, :func:`asr.text.lexicon.phone_sentence`)
    have the word separator ``|`` as a unit: it marks word boundaries, for the lexicon search, and is no
    phone of the output's words.

    Args:
        phones: the tokens text may hold.
    """

    def __init__(self, phones: Iterable[str]):
        phones = sorted(set(phones))
        for p in phones:
            if not p or p != p.strip() or " " in p or p == BLANK:
                raise TokenizerError(f"bad phone {p!r}: phones are non-empty tokens without spaces, not {BLANK!r}")
        self.units: list[str] = [BLANK, *phones]
        self._index = {u: i for i, u in enumerate(self.units)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> PhoneTokenizer:
        """Learn the phone set from training transcripts."""
        return cls({p for t in texts for p in t.split()})

    @property
    def alphabet(self) -> set[str]:
        return {c for u in self.units[1:] for c in u} | {" "}

    def unknown_chars(self, text: str) -> list[str]:
        """The tokens of ``text`` that are not phones of this set, in order of appearance."""
        return list(dict.fromkeys(p for p in text.split() if p not in self._index or p == BLANK))

    def encode(self, text: str) -> list[int]:
        """Text -> unit ids.

        Raises:
            TokenizerError: a token outside the phone set (never dropped silently).
        """
        bad = self.unknown_chars(text)
        if bad:
            raise TokenizerError(f"text {text!r} holds tokens outside the phone set: {bad}")
        return [self._index[p] for p in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.units[i] for i in ids if i != 0)

    def words(self, tokens: list[int], frames: list[int]) -> tuple[str, list[FrameWord]]:
        """Each decoded phone is a word of its own (the word separator only a boundary)."""
        return _words(
            ("" if self.units[u] == WORD_SEP else self.units[u], t, True) for u, t in zip(tokens, frames) if u != 0
        )

    @property
    def separator(self) -> str:
        """The word separator of phones spelled from words; else none: the beam search's silence token is the blank."""
        return WORD_SEP if WORD_SEP in self._index else BLANK

    def to_dict(self) -> dict:
        return {"type": "phone", "units": list(self.units)}

    @classmethod
    def from_dict(cls, d: dict) -> PhoneTokenizer:
        tok = cls(d["units"][1:])
        if tok.units != d["units"]:
            raise TokenizerError("saved phone units are not in canonical order; the file is corrupt")
        return tok


Tokenizer = CharTokenizer | SubwordTokenizer | PhoneTokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild the tokenizer a model file holds.

    Raises:
        TokenizerError: an unknown type or a damaged entry.
    """
    kinds = {"char": CharTokenizer, "sentencepiece": SubwordTokenizer, "phone": PhoneTokenizer}
    if not isinstance(d, dict) or d.get("type") not in kinds:
        raise TokenizerError(f"unknown tokenizer type {d.get('type') if isinstance(d, dict) else d!r}")
    return kinds[d["type"]].from_dict(d)


def spells_words_in_phones(tokenizer: Tokenizer) -> bool:
    """A phone model of word transcripts: phones with a word separator unit, whose words come from a lexicon's
    pronunciations (only the lexicon searches output words; greedy and the lexicon-free ones output phones)."""
    return isinstance(tokenizer, PhoneTokenizer) and tokenizer.separator == WORD_SEP
