"""Text in the form a model writes its words: what ``asr evaluate`` does to a corpus's references and the recognizer
to a user's hotwords, so both meet the model's output as its recipe's references did."""

from __future__ import annotations

import re


def as_written(text: str, chars: set[str]) -> str:
    """``text`` in the form a model writing ``chars`` gives its words (a corpus's upper-case, punctuated transcripts
    scored against a lower-case model were 103% WER): lower case when the model writes no capital, typographic
    apostrophes as ``'``, punctuation it does not write dropped, single spaces."""
    if chars and not any(c.isupper() for c in chars):
        text = text.lower()
    text = text.replace("\u2019", "'").replace("`", "'")
    text = "".join(c if c.isalnum() or c in chars or c.isspace() else " " for c in text)
    words = (w.strip("'") if "'" not in chars else w for w in text.split())
    return re.sub(r"\s+", " ", " ".join(w for w in words if w)).strip()
