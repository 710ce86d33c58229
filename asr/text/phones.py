"""Phone sets and their foldings, for recipes whose units are phones (TIMIT).

TIMIT transcribes 61 phones (60 and the glottal stop ``q``). Lee & Hon (1989) fold them to 48
for training and to 39 for scoring; :data:`TIMIT_FOLD` is that table as Kaldi's
``egs/timit/s5/conf/phones.60-48-39.map`` gives it (``q`` is dropped). Phone error rate is
reported on the 39 folded phones, as the literature does.
"""

from __future__ import annotations

# 61-phone label -> (48-phone label, 39-phone label); None drops the label (q)
TIMIT_FOLD: dict[str, tuple[str, str] | None] = {
    "aa": ("aa", "aa"),
    "ae": ("ae", "ae"),
    "ah": ("ah", "ah"),
    "ao": ("ao", "aa"),
    "aw": ("aw", "aw"),
    "ax": ("ax", "ah"),
    "ax-h": ("ax", "ah"),
    "axr": ("er", "er"),
    "ay": ("ay", "ay"),
    "b": ("b", "b"),
    "bcl": ("vcl", "sil"),
    "ch": ("ch", "ch"),
    "d": ("d", "d"),
    "dcl": ("vcl", "sil"),
    "dh": ("dh", "dh"),
    "dx": ("dx", "dx"),
    "eh": ("eh", "eh"),
    "el": ("el", "l"),
    "em": ("m", "m"),
    "en": ("en", "n"),
    "eng": ("ng", "ng"),
    "epi": ("epi", "sil"),
    "er": ("er", "er"),
    "ey": ("ey", "ey"),
    "f": ("f", "f"),
    "g": ("g", "g"),
    "gcl": ("vcl", "sil"),
    "h#": ("sil", "sil"),
    "hh": ("hh", "hh"),
    "hv": ("hh", "hh"),
    "ih": ("ih", "ih"),
    "ix": ("ix", "ih"),
    "iy": ("iy", "iy"),
    "jh": ("jh", "jh"),
    "k": ("k", "k"),
    "kcl": ("cl", "sil"),
    "l": ("l", "l"),
    "m": ("m", "m"),
    "n": ("n", "n"),
    "ng": ("ng", "ng"),
    "nx": ("n", "n"),
    "ow": ("ow", "ow"),
    "oy": ("oy", "oy"),
    "p": ("p", "p"),
    "pau": ("sil", "sil"),
    "pcl": ("cl", "sil"),
    "q": None,
    "r": ("r", "r"),
    "s": ("s", "s"),
    "sh": ("sh", "sh"),
    "t": ("t", "t"),
    "tcl": ("cl", "sil"),
    "th": ("th", "th"),
    "uh": ("uh", "uh"),
    "uw": ("uw", "uw"),
    "ux": ("uw", "uw"),
    "v": ("v", "v"),
    "w": ("w", "w"),
    "y": ("y", "y"),
    "z": ("z", "z"),
    "zh": ("zh", "sh"),
}
TIMIT_SETS = (61, 48, 39)
# any TIMIT label (of the 61, 48 or 39) -> its 39-phone label; the 48 and 39 labels are 61 labels or map uniquely
_TO_39 = {
    **{p48: p39 for p48, p39 in (v for v in TIMIT_FOLD.values() if v)},
    **{p: v[1] if v else "" for p, v in TIMIT_FOLD.items()},
}
PHONE_MAPS = ("timit39",)  # what the score stage's phone_map accepts ("" for none)


def timit_phones(n: int) -> set[str]:
    """The labels of TIMIT's 61-, 48- or 39-phone set."""
    if n == 61:
        return set(TIMIT_FOLD)
    k = TIMIT_SETS.index(n)
    return {v[k - 1] for v in TIMIT_FOLD.values() if v}


def fold_timit(phones: list[str], n: int) -> list[str]:
    """61-phone labels -> the ``n``-phone set (61, 48 or 39); ``q`` is dropped below 61.

    Raises:
        KeyError: a label outside the 61.
    """
    if n == 61:
        return list(phones)
    k = TIMIT_SETS.index(n) - 1
    return [v[k] for v in (TIMIT_FOLD[p] for p in phones) if v]


def fold_text(text: str, phone_map: str) -> str:
    """A space-separated phone string in its scoring form: with ``timit39``, every TIMIT label
    (61, 48 or 39 set) as its 39-phone label, ``q`` deleted (as Lee & Hon), an unknown label kept (an error)."""
    if not phone_map:
        return text
    if phone_map != "timit39":
        raise ValueError(f"unknown phone map {phone_map!r}; maps: {list(PHONE_MAPS)}")
    return " ".join(q for q in (_TO_39.get(p, p) for p in text.split()) if q)
