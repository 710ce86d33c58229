"""Utterance manifests: typed records stored as JSON Lines, and Kaldi data directories.

A manifest line is one :class:`Utterance`::

    {"id": "7_jackson_32", "audio": "/data/7_jackson_32.wav", "duration": 0.41,
     "text": "seven", "speaker": "jackson"}

with an optional ``offset`` (seconds) when the utterance is a segment of a longer
recording, an optional ``weight`` (how often a training pass sees it; pooled corpora, :mod:`asr.corpora.pool`),
and optional ``groups`` the report pages break the error rate down by, as
``{"gender": "f", "age": "child"}``. Kaldi data directories map onto the same records:
``wav.scp`` (plain paths only), ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur``, for segments
``segments``, and ``spk2gender`` (the ``gender`` group). (Reading the text files themselves,
UTF-8 checked line by line, is :mod:`asr.core.textfiles`'s.)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from asr.core.errors import AsrError, AudioError, ManifestError
from asr.core.fsutil import atomic_write_text, file_stamp, sha256sum
from asr.core.textfiles import read_kaldi_table, read_lines
from asr.data.audio import check_file, read_info

FIELDS = ("id", "audio", "duration", "text", "speaker", "offset", "groups", "weight")
POOLED = "pooled"  # the group naming the corpus a pooled utterance comes from


@dataclass(frozen=True)
class Utterance:
    """One utterance.

    Attributes:
        id: unique utterance id, no whitespace.
        audio: path of the audio file.
        duration: length in seconds (of the segment when ``offset`` is set).
        text: the transcript, words separated by single spaces.
        speaker: speaker id, no whitespace.
        offset: start of the segment inside ``audio``, in seconds; ``None`` for a whole file.
        groups: ``(grouping, value)`` pairs, e.g. ``(("age", "child"), ("gender", "f"))``: what the report
            pages break the error rate down by, besides the speaker; ``("pooled", corpus)`` marks an utterance
            another corpus lent to the training set.
        weight: how often a training pass sees the utterance on average (0.5: every other pass, 2: twice).
    """

    id: str
    audio: str
    duration: float
    text: str
    speaker: str
    offset: float | None = None
    groups: tuple[tuple[str, str], ...] = ()
    weight: float = 1.0

    @property
    def pooled_from(self) -> str | None:
        """The corpus that lent this utterance to a training set, or None for the recipe's own."""
        return dict(self.groups).get(POOLED)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["offset"] is None:
            del d["offset"]
        if self.groups:
            d["groups"] = dict(self.groups)
        else:
            del d["groups"]
        if self.weight == 1.0:
            del d["weight"]
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> Utterance:
        """Build from a parsed JSON object, with errors that say where the bad line is."""
        where = where or "manifest entry"
        if not isinstance(d, dict):
            raise ManifestError(where, [("?", f"expected a JSON object, got {type(d).__name__}")])
        uid = str(d.get("id", "?"))
        missing = [k for k in ("id", "audio", "duration", "text", "speaker") if k not in d]
        unknown = sorted(set(d) - set(FIELDS))
        problems = []
        if missing:
            problems.append((uid, f"missing field(s) {missing}"))
        if unknown:
            problems.append((uid, f"unknown field(s) {unknown}; allowed: {list(FIELDS)}"))
        if problems:
            raise ManifestError(where, problems)
        # no coercion: "text": ["a"] became the text "['a']", a duration "3" passed as 3.0
        wrong = [
            f"{k} must be a string, got {type(d[k]).__name__}"
            for k in ("id", "audio", "text", "speaker")
            if not isinstance(d[k], str)
        ]
        for k in ("duration", "offset"):
            v = d.get(k)
            if (v is not None or k == "duration") and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            ):
                wrong.append(f"{k} must be a number of seconds >= 0, got {v!r}")
        groups = d.get("groups", {})
        if not isinstance(groups, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in groups.items()
        ):
            wrong.append(f'groups must be an object of non-empty strings (e.g. {{"gender": "f"}}), got {groups!r}')
        weight = d.get("weight", 1.0)
        if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0 < weight < math.inf):
            wrong.append(f"weight must be a number > 0 (how often a training pass sees it), got {weight!r}")
        if wrong:
            raise ManifestError(where, [(uid, "; ".join(wrong))])
        offset = d.get("offset")
        return cls(
            id=d["id"],
            audio=d["audio"],
            duration=float(d["duration"]),
            text=d["text"],
            speaker=d["speaker"],
            offset=None if offset is None else float(offset),
            groups=tuple(sorted(groups.items())),
            weight=float(weight),
        )


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a JSON Lines manifest; relative audio paths are taken relative to its folder.

    Raises:
        ManifestError: a line that is not valid JSON or not a valid record (all such
            lines are reported, each with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(str(path), [("-", "no such manifest file")])
    utts, problems, not_json = [], [], 0
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            u = Utterance.from_dict(json.loads(line), where)
            if not Path(u.audio).is_absolute():  # relative audio paths are relative to the manifest
                u = dataclasses.replace(u, audio=str(path.parent / u.audio))
            utts.append(u)
        except json.JSONDecodeError as e:
            problems.append((f"line {lineno}", f"not valid JSON ({e.msg})"))
            not_json += 1
        except ValueError as e:  # Python's JSON reader refuses integers of more than 4,300 digits this way
            problems.append((f"line {lineno}", f"a value JSON readers cannot take ({str(e)[:80]})"))
        except RecursionError:
            problems.append((f"line {lineno}", "JSON nested too deeply to be a manifest record"))
        except ManifestError as e:
            problems += [(f"line {lineno} ({uid})", reason) for uid, reason in e.problems]
    if not utts and problems and not_json == len(problems):
        raise ManifestError(
            str(path),
            [
                (
                    "-",
                    "not a JSON Lines manifest (no line is JSON): give a manifest with one "
                    '{"id", "audio", "text"} record a line, or the Kaldi data directory '
                    "(the folder holding wav.scp and text)",
                )
            ],
        )
    if problems:
        raise ManifestError(str(path), problems)
    return utts


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> None:
    """Write a JSON Lines manifest atomically."""
    text = "".join(json.dumps(u.to_dict(), ensure_ascii=False) + "\n" for u in utts)
    atomic_write_text(path, text)


# --- Kaldi data directories -------------------------------------------------------


def _fmt(x: float) -> str:
    return repr(float(x))  # shortest text that reads back as the same float


def _seconds(text: str) -> float | None:
    """A finite, non-negative number of seconds, or ``None``."""
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _kaldi_durations(d: Path, problems: list) -> dict[str, float | None]:
    """``utt2dur``, if there is one; a value that is no duration is a problem, named."""
    utt2dur = {}
    for uid, value in (read_kaldi_table(d / "utt2dur") if (d / "utt2dur").is_file() else {}).items():
        seconds = _seconds(value)
        if seconds is None:
            problems.append((uid, f"utt2dur: {value!r} is no duration in seconds"))
        utt2dur[uid] = seconds
    return utt2dur


def _kaldi_segments(d: Path, problems: list) -> tuple[dict[str, tuple[str, float, float]], set[str]]:
    """``segments``, if there is one, as ``{utterance: (recording, start, end)}``, and the utterances of its bad
    lines (named as problems)."""
    segments, listed = {}, read_kaldi_table(d / "segments") if (d / "segments").is_file() else {}
    for uid, value in listed.items():
        fields = value.split()
        times = [_seconds(x) for x in fields[1:]]
        if len(fields) != 3 or None in times or times[1] <= times[0]:
            problems.append(
                (
                    uid,
                    f"segments: expected '<utterance> <recording> <start> <end>' with start < end "
                    f"in seconds, got {uid} {value}",
                )
            )
        else:
            segments[uid] = (fields[0], times[0], times[1])
    return segments, listed.keys() - segments.keys()


def _kaldi_problems(wav: dict, text: dict, utt2spk: dict, segments: dict, bad_segments: set[str]) -> list:
    """What does not fit together across ``wav.scp``, ``text``, ``utt2spk`` and ``segments``."""
    problems = []
    for key, value in wav.items():
        if value.endswith("|") or value.startswith("-"):
            problems.append(
                (
                    key,
                    "wav.scp entry is a command pipe; only plain paths are supported "
                    "(convert the audio to files first, e.g. with sox)",
                )
            )
    for uid in text:
        if uid not in utt2spk:
            problems.append((uid, "in text but not in utt2spk"))
        rec = segments[uid][0] if uid in segments else uid
        if rec not in wav and uid not in bad_segments:  # a bad segments line is named already
            problems.append((uid, f"recording {rec!r} not in wav.scp"))
    for uid in utt2spk:
        if uid not in text:
            problems.append((uid, "in utt2spk but not in text"))
    return problems


def read_kaldi_dir(data_dir: str | Path) -> list[Utterance]:
    """Import a Kaldi data directory (``wav.scp``, ``text``, ``utt2spk``; optional
    ``segments``, ``utt2dur``, ``spk2gender``: the ``gender`` group).

    Durations come from ``utt2dur``, else from ``segments``, else from the audio
    header. Relative paths in ``wav.scp`` are taken relative to the data directory.

    Raises:
        ManifestError: missing files, piped ``wav.scp`` entries, or ids missing from
            one of the files (every one reported).
    """
    d = Path(data_dir)
    for name in ("wav.scp", "text", "utt2spk"):
        if not (d / name).is_file():
            raise ManifestError(
                str(d), [("-", f"missing {name}: a Kaldi data directory needs wav.scp, text and utt2spk")]
            )
    wav = read_kaldi_table(d / "wav.scp")
    text = read_kaldi_table(d / "text", allow_empty_value=True)
    utt2spk = read_kaldi_table(d / "utt2spk")
    problems = []
    utt2dur = _kaldi_durations(d, problems)
    segments, bad_segments = _kaldi_segments(d, problems)
    problems += _kaldi_problems(wav, text, utt2spk, segments, bad_segments)
    if problems:
        raise ManifestError(str(d), problems)
    gender = read_kaldi_table(d / "spk2gender") if (d / "spk2gender").is_file() else {}

    utts = []
    for uid in text:
        offset = None
        if uid in segments:
            rec, start, end = segments[uid]
            offset = None if (rec == uid and start == 0.0) else start
            seg_duration = end - start
        else:
            rec, seg_duration = uid, None
        audio = Path(wav[rec])
        if not audio.is_absolute():
            audio = d / audio
        if uid in utt2dur:
            duration = utt2dur[uid]
        elif seg_duration is not None:
            duration = seg_duration
        else:
            duration = read_info(audio).duration
        groups = (("gender", gender[utt2spk[uid]]),) if gender.get(utt2spk[uid]) else ()
        utts.append(Utterance(uid, str(audio), duration, " ".join(text[uid].split()), utt2spk[uid], offset, groups))
    return utts


def write_kaldi_dir(data_dir: str | Path, utts: Sequence[Utterance]) -> None:
    """Export to a Kaldi data directory, sorted by id as Kaldi requires.

    Writes ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur``, when any utterance has an
    offset ``segments`` with one recording id per audio file, and ``spk2gender`` when the utterances have
    a ``gender`` group (other groups have no Kaldi file).
    """
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    for u in utts:
        for field in ("id", "speaker"):
            if not getattr(u, field) or any(c.isspace() for c in getattr(u, field)):
                raise ManifestError(
                    str(d),
                    [(u.id, f"{field} {getattr(u, field)!r} is empty or holds whitespace; Kaldi cannot store it")],
                )
    utts = sorted(utts, key=lambda u: u.id)
    segmented = any(u.offset is not None for u in utts)
    table = lambda rows: "".join(f"{k} {v}\n" if v != "" else f"{k}\n" for k, v in rows)  # noqa: E731

    if segmented:
        # A whole-file utterance names its recording after itself, which is how
        # read_kaldi_dir tells it (offset None) from a segment starting at 0.
        rec_ids = {a: f"rec{i:06d}" for i, a in enumerate(sorted({u.audio for u in utts}))}
        for u in reversed(utts):
            if u.offset is None:
                rec_ids[u.audio] = u.id
        atomic_write_text(d / "wav.scp", table((r, a) for a, r in sorted(rec_ids.items(), key=lambda x: x[1])))
        atomic_write_text(
            d / "segments",
            table(
                (u.id, f"{rec_ids[u.audio]} {_fmt(u.offset or 0.0)} {_fmt((u.offset or 0.0) + u.duration)}")
                for u in utts
            ),
        )
    else:
        atomic_write_text(d / "wav.scp", table((u.id, u.audio) for u in utts))
        (d / "segments").unlink(missing_ok=True)
    atomic_write_text(d / "text", table((u.id, u.text) for u in utts))
    atomic_write_text(d / "utt2spk", table((u.id, u.speaker) for u in utts))
    atomic_write_text(d / "utt2dur", table((u.id, _fmt(u.duration)) for u in utts))
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker, []).append(u.id)
    atomic_write_text(d / "spk2utt", table((s, " ".join(ids)) for s, ids in sorted(spk2utt.items())))
    gender = {u.speaker: dict(u.groups)["gender"] for u in utts if "gender" in dict(u.groups)}
    if gender:
        atomic_write_text(d / "spk2gender", table(sorted(gender.items())))
    else:
        (d / "spk2gender").unlink(missing_ok=True)


def utterance_groups(utts: Iterable[Utterance | dict]) -> dict[str, dict[str, str]]:
    """``{grouping: {utterance id: value}}`` of utterances (or their records in a feature index), every
    grouping any of them has, ``unknown`` where one lacks it; ``{}`` when none has groups."""
    rows = [(u.id, dict(u.groups)) if isinstance(u, Utterance) else (u["id"], u.get("groups") or {}) for u in utts]
    names = sorted({k for _, g in rows for k in g})
    return {k: {uid: g.get(k, "unknown") for uid, g in rows} for k in names}


def load_data(path: str | Path) -> list[Utterance]:
    """Read a JSONL manifest file or a Kaldi data directory, whichever ``path`` is."""
    p = Path(path)
    return read_kaldi_dir(p) if p.is_dir() else read_manifest(p)


def data_fingerprint(path: str | Path) -> dict[str, str]:
    """What a set's content depends on, for the cache: ``{file: stamp}``.

    The listing files (a JSONL manifest, or every file of a Kaldi data directory:
    wav.scp, text, utt2spk, segments, ...) are hashed; each audio file they name is
    stamped with its size and modification time (cheap, as make and Snakemake do).
    A listing that cannot be parsed is only hashed: the prepare stage reports it.
    """
    p = Path(path)
    out: dict[str, str] = {}
    listings = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    for q in listings:
        out[str(q)] = f"sha256 {sha256sum(q)}" if q.is_file() else "missing"
    try:
        audio = (
            sorted({u.audio for u in read_manifest(p)})
            if not p.is_dir()
            else sorted({a if Path(a).is_absolute() else str(p / a) for a in read_kaldi_table(p / "wav.scp").values()})
        )
    except (AsrError, OSError):
        audio = []
    for a in audio:
        out[a] = file_stamp(a)
    return out


def manifest_names(folder: Path) -> list[str]:
    """Names (``isolated/train``) of the manifests under a prepare output."""
    return sorted(
        str(p.relative_to(folder).with_suffix(""))
        for p in folder.rglob("*.jsonl")
        if not p.name.endswith(".layout.jsonl")
    )


def expand_sets(patterns, available: list[str]) -> list[str]:
    """Set names matching ``patterns`` (exact names or globs like ``train/*``), in pattern order.

    Raises:
        AsrError: a pattern that matches nothing (with the sets there are).
    """
    out: list[str] = []
    for pat in patterns:
        hits = [a for a in sorted(available) if fnmatch.fnmatchcase(a, pat)]
        if not hits:
            raise AsrError(f"no set matches {pat!r}; sets: {sorted(available)}")
        out += [h for h in hits if h not in out]
    return out


# --- validation ---------------------------------------------------------------------


def validate(
    utts: Sequence[Utterance],
    alphabet: set[str] | None = None,
    check_audio: bool = True,
) -> list[tuple[str, str]]:
    """Find every bad entry; returns ``(id, reason)`` pairs (empty when all is well).

    Checks: duplicate ids, empty ids, empty text, non-positive or non-finite
    durations, negative offsets, missing audio files (when ``check_audio``), and
    characters outside ``alphabet`` (when given; the space is always allowed).
    """
    problems = []
    counts = Counter(u.id for u in utts)
    seen_dup = set()
    for u in utts:
        if not u.id or any(c.isspace() for c in u.id):
            problems.append((u.id or "<empty id>", "id is empty or holds whitespace"))
        if counts[u.id] > 1 and u.id not in seen_dup:
            seen_dup.add(u.id)
            problems.append((u.id, f"duplicate id ({counts[u.id]} entries)"))
        if not u.text.strip():
            problems.append((u.id, "empty text"))
        if not (math.isfinite(u.duration) and u.duration > 0):
            problems.append((u.id, f"duration {u.duration} is not a positive number of seconds"))
        if u.offset is not None and not (math.isfinite(u.offset) and u.offset >= 0):
            problems.append((u.id, f"offset {u.offset} is not a non-negative number of seconds"))
        if not u.speaker:
            problems.append((u.id, "empty speaker"))
        if check_audio:
            try:
                check_file(Path(u.audio))
            except AudioError as e:
                why = "does not exist" if e.reason == "no such file" else e.reason
                problems.append((u.id, f"audio file {u.audio} {why}"))
        if alphabet is not None:
            bad = sorted({c for c in u.text if c not in alphabet and c != " "})
            if bad:
                problems.append((u.id, f"text holds characters outside the alphabet: {bad}"))
    return problems


def check(utts: Sequence[Utterance], source: str, **kwargs) -> None:
    """Raise :class:`ManifestError` listing every problem :func:`validate` finds."""
    problems = validate(utts, **kwargs)
    if problems:
        raise ManifestError(source, problems)
