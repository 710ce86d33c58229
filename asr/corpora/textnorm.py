"""The scoring form of English transcripts, shared by the corpora that ship them in upper case with punctuation
(speechocean762, LibriSpeech, TIMIT): one normaliser, so their references and training text agree."""

from __future__ import annotations

import re

_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> str:
    """Lower case, typographic apostrophes as ``'``, other punctuation dropped, single spaces. Applied alike to
    references and training text."""
    text = text.lower().replace("\u2019", "'").replace("`", "'")
    words = (w.strip("'") for w in _KEEP.sub(" ", text).split())
    return " ".join(w for w in words if w)
