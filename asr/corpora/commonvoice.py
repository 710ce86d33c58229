"""Mozilla Common Voice, any language and release: read sentences from crowd-sourced MP3 clips.

A release unpacks to::

    cv-corpus-<version>/<language>/clips/common_voice_<language>_<n>.mp3
    cv-corpus-<version>/<language>/{train,dev,test,validated,invalidated,other}.tsv
    cv-corpus-<version>/<language>/clip_durations.tsv          (newer releases: clip, duration in ms)

Each TSV has a header row; the columns used are ``client_id`` (the speaker), ``path`` (the clip's
file name under ``clips/``) and ``sentence``. The release's own ``train``, ``dev`` and ``test``
splits are speaker-disjoint and are used as they are.

Downloading: Mozilla hands out each release through a signed link after you accept its terms on
https://commonvoice.mozilla.org/datasets (now the Mozilla Data Collective), and lists the archive's
SHA-256 beside it; there is no fixed public URL. Pass that link and checksum as ``prepare.url`` and
``prepare.sha256`` (or unpack the archive yourself and give ``--corpus-dir``).

Clips are MP3: soundfile reads them through libsndfile >= 1.1 (its wheels bundle one); an older
system libsndfile gets a clear error from :func:`asr.data.audio.read_info`. :func:`normalize` is the
text form used for training and scoring, per language.
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import AudioError, CorpusError, ManifestError
from asr.core.fsutil import file_stamp, sha256sum
from asr.core.textfiles import read_lines
from asr.data.audio import read_info
from asr.data.manifest import Utterance

VERSION = 1  # of the prepare stage's output: bump when the manifests it writes change
SAMPLE_RATE = 16_000  # clips are 32 or 48 kHz MP3; features resample to this
SPLITS = ("train", "dev", "test")
MIN_LIBSNDFILE = (1, 1)  # the first libsndfile that reads MP3
# Turkish and Azerbaijani lower-case a dotted capital I to i and a plain I to a dotless one.
_DOTLESS = {"tr", "az"}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})


@dataclass(frozen=True)
class CommonVoiceConfig(corpora.Pooling):
    """The ``prepare`` stage's config section."""

    language: str = "en"  # the release's folder name for the language (en, de, fr, zh-CN, ...)
    corpus_dir: str | None = None  # folder holding cv-corpus-*/<language>/ (--corpus-dir, else $ASR_CORPORA)
    download_dir: str = "data/downloads"
    url: str | None = None  # the signed download link Mozilla gives you for the release ...
    sha256: str | None = None  # ... and the checksum it lists beside it
    max_train_hours: float = 0.0  # keep the first this many hours of train (by sorted id); 0: all

    def __post_init__(self):
        super().__post_init__()
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]+)*", self.language):
            raise ValueError(f"language {self.language!r} is not a Common Voice language code (en, de, zh-CN, ...)")
        if self.url and not self.sha256:
            raise ValueError("prepare.url needs prepare.sha256, the checksum Mozilla lists beside the download")


def normalize(text: str, language: str) -> str:
    """Scoring form of a sentence: Unicode NFKC, lower case by the language's rules, apostrophes
    unified and kept inside words, every other punctuation mark and symbol dropped, digits kept as
    written, single spaces. Applied alike to references and training text."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if language.split("-")[0] in _DOTLESS:
        text = text.replace("I", "\u0131").replace("\u0130", "i")
    text = text.lower()
    kept = "".join(c if c == "'" or unicodedata.category(c)[0] in "LMN" else " " for c in text)
    return " ".join(w.strip("'") for w in kept.split() if w.strip("'"))


# --- finding the corpus ------------------------------------------------------------------------


def _probe(language: str):
    def probe(folder: Path) -> Path | None:
        candidates = [folder / language, folder, *sorted(folder.glob(f"cv-corpus-*/{language}"), reverse=True)]
        for cand in candidates:
            if (cand / "train.tsv").is_file() and (cand / "clips").is_dir():
                return cand
        return None

    return probe


def source(cfg: CommonVoiceConfig) -> corpora.Source:
    return corpora.Source(
        f"Common Voice ({cfg.language})",
        _probe(cfg.language),
        f"cv-corpus-<version>/{cfg.language}/train.tsv",
        cfg.url or "",
        f"commonvoice-{cfg.language}.tar.gz",
        cfg.sha256,
    )


def locate(cfg: CommonVoiceConfig) -> Path:
    """The language folder of the release; downloads and unpacks ``cfg.url`` when no copy is on disk.

    Raises:
        CorpusError: no copy and no download link, a failed or corrupt download.
    """
    src = source(cfg)
    if not cfg.url and corpora.find_local(src, cfg.corpus_dir, cfg.download_dir) is None:
        raise CorpusError(
            "no Common Voice copy: Mozilla hands out each release through a signed link after you accept its "
            "terms at https://commonvoice.mozilla.org/datasets; give the unpacked folder with --corpus-dir, or "
            "the link and its SHA-256 with --set prepare.url=... --set prepare.sha256=..."
        )
    return corpora.locate(src, cfg.corpus_dir, cfg.download_dir)


def fingerprint(cfg: CommonVoiceConfig) -> dict[str, str] | None:
    """The TSV files (hashed) and every clip they list (size, modification time); None before a download."""
    return corpora.fingerprint(source(cfg), cfg.corpus_dir, cfg.download_dir, _stamps)


def _stamps(root: Path) -> dict[str, str]:
    out = {}
    for split in SPLITS:
        tsv = root / f"{split}.tsv"
        if tsv.is_file():
            out[str(tsv)] = f"sha256 {sha256sum(tsv)}"
            for row, _ in _rows(tsv)[0]:
                clip = corpora.inside(root / "clips", row["path"])
                if clip is not None:  # one outside is refused by the stage
                    out[str(clip)] = file_stamp(clip)
    return out


# --- parsing ------------------------------------------------------------------------------------


def check_mp3_support() -> None:
    """Raise unless libsndfile reads MP3 (1.1 or newer).

    Raises:
        CorpusError: naming the libsndfile found and what to install.
    """
    found = tuple(int(x) for x in re.findall(r"\d+", sf.__libsndfile_version__)[:2])
    if found < MIN_LIBSNDFILE or "MP3" not in sf.available_formats():
        raise CorpusError(
            f"Common Voice clips are MP3, which libsndfile reads from version 1.1; this one is "
            f"{sf.__libsndfile_version__}. Install a current soundfile wheel (pip install -U soundfile), "
            "which bundles one"
        )


def _rows(tsv: Path) -> tuple[list[tuple[dict, int]], list[tuple[str, str]]]:
    """A TSV's rows with their line numbers, and its problems (by file and line)."""
    lines = read_lines(tsv)
    if not lines:
        return [], [(str(tsv), "empty: expected a header row")]
    header = lines[0][1].split("\t")
    missing = [c for c in ("client_id", "path", "sentence") if c not in header]
    if missing:
        return [], [(f"{tsv}:1", f"header lacks column(s) {missing}")]
    rows, problems = [], []
    # sentences hold quotes of every kind: fields are split on tabs only, never unquoted
    for (n, _), fields in zip(
        lines[1:], csv.reader((line for _, line in lines[1:]), delimiter="\t", quoting=csv.QUOTE_NONE)
    ):
        if not any(fields):
            continue
        if len(fields) < len(header):
            problems.append((f"{tsv}:{n}", f"{len(fields)} fields, the header has {len(header)}"))
            continue
        rows.append((dict(zip(header, fields)), n))
    return rows, problems


MAX_CLIP_SECONDS = 300  # Common Voice clips last a few seconds; a listed duration past this is damage


def _durations(root: Path) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Clip -> seconds from ``clip_durations.tsv`` when the release has it (reading each MP3 header is slow),
    and the lines whose duration no clip can have."""
    f = root / "clip_durations.tsv"
    if not f.is_file():
        return {}, []
    out, problems = {}, []
    for n, line in read_lines(f)[1:]:
        clip, _, ms = line.partition("\t")
        if ms.strip().isdigit():
            if not 0 < int(ms) <= MAX_CLIP_SECONDS * 1000:
                problems.append(
                    (
                        f"{f}:{n}",
                        f"{clip}: {int(ms):,} ms is no clip's length (Common Voice clips last "
                        f"up to {MAX_CLIP_SECONDS} s); fix or delete clip_durations.tsv",
                    )
                )
            out[clip] = int(ms) / 1000
    return out, problems


def read_split(root: Path, split: str, language: str) -> list[Utterance]:
    """The utterances of ``<split>.tsv``, sorted by id, text normalised.

    Raises:
        ManifestError: malformed rows, clips that are missing, empty sentences (every problem, by file and line).
        CorpusError: a libsndfile that cannot read MP3.
    """
    tsv = root / f"{split}.tsv"
    rows, problems = _rows(tsv)
    durations, bad = _durations(root)
    problems += [(where, why) for where, why in bad if any(why.startswith(f"{r['path']}:") for r, _ in rows)]
    if any(r["path"].lower().endswith(".mp3") for r, _ in rows):
        check_mp3_support()
    utts = []
    for row, n in rows:
        clip, where = corpora.inside(root / "clips", row["path"]), f"{tsv}:{n}"
        if clip is None:
            problems.append((where, f"{row['path']!r} points outside the release's clips/ folder"))
            continue
        text = normalize(row["sentence"], language)
        if not text:
            problems.append((where, f"{row['path']}: the sentence {row['sentence']!r} is empty once normalised"))
            continue
        if not clip.is_file():
            problems.append((where, f"no clip clips/{row['path']}"))
            continue
        if not os.path.realpath(clip).startswith(os.path.realpath(root) + os.sep):
            problems.append((where, f"clips/{row['path']} links to a file outside the release {root}: copy it in"))
            continue
        if row["path"] in durations:
            seconds = durations[row["path"]]
        else:
            try:
                seconds = read_info(clip).duration
            except AudioError as e:
                problems.append((where, str(e)))
                continue
        utts.append(Utterance(Path(row["path"]).stem, str(clip), seconds, text, row["client_id"]))
    if problems:
        raise ManifestError(str(tsv), problems)
    return sorted(utts, key=lambda u: u.id)


def prepare(root: Path, out: Path, cfg: CommonVoiceConfig) -> dict:
    """Write ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl`` from the release's own splits.

    Returns:
        utterances, speakers and hours per set.
    """
    sets = {}
    for split in SPLITS:
        if not (root / f"{split}.tsv").is_file():
            raise CorpusError(
                f"{root} has no {split}.tsv: a Common Voice release ships train.tsv, dev.tsv and test.tsv"
            )
        utts = read_split(root, split, cfg.language)
        if split == "train" and cfg.max_train_hours:
            kept, total = [], 0.0
            for u in utts:
                if total >= cfg.max_train_hours * 3600:
                    break
                kept.append(u)
                total += u.duration
            utts = kept
        sets[split] = utts
    shared = corpora.shared_audio(sets)
    if shared:
        raise CorpusError(
            f"{root}: {len(shared)} clip(s) are in train.tsv and in dev.tsv or test.tsv (e.g. "
            f"{', '.join(Path(a).name for a in shared[:3])}); a set scored on training audio means "
            "nothing: remove them from one of the lists"
        )
    return corpora.write_sets(out, sets, f"Common Voice {cfg.language}")


def stage(ctx: StageContext) -> dict:
    """The ``prepare`` stage: find (or download) the release and write the manifests."""
    cfg: CommonVoiceConfig = ctx.config
    root = locate(cfg)
    ctx.log(f"prepare: Common Voice {cfg.language} from {root}")
    return {"counts": prepare(root, ctx.out, cfg), "corpus": str(root)}
