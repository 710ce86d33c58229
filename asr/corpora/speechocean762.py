"""speechocean762 (OpenSLR 101): read English sentences by non-native speakers.

Mandarin first language, half children and half adults, 16 kHz. Upstream is a Kaldi-style
tree::

    WAVE/SPEAKERnnnn/<utt>.WAV                    (our shared copy: <utt>.flac, same samples)
    train/{wav.scp,text,utt2spk,spk2utt,spk2age,spk2gender}   125 speakers, 2,500 sentences
    test/{...}                                                  125 other speakers, 2,500 sentences
    resource/{lexicon.txt,text-phone}

``wav.scp`` paths are relative to the corpus root (not to the data directory). We split
the upstream train speakers three ways, speaker-disjoint: ``dev`` (about 10% of the
speakers, children and adults balanced; it tunes decoding and stops training), ``devtest``
(as many again, for our own reports) and ``train`` (the rest). The official ``test`` is
prepared whenever the copy has it. Transcripts are upper case upstream; :func:`asr.corpora.textnorm.normalize`
turns references and training text alike into lower case words with their apostrophes.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import CorpusError, ManifestError
from asr.core.fsutil import file_stamp, sha256sum
from asr.core.textfiles import read_kaldi_table
from asr.corpora.textnorm import normalize
from asr.data.audio import read_info
from asr.data.manifest import Utterance, check, write_manifest

VERSION = 2  # of the prepare stage's output: bump when the manifests it writes change
# OpenSLR publishes no checksum for this archive and none could be found elsewhere (searched
# mirrors and downstream download scripts): a download is checked by its size (published as
# about 520 MB) and, once unpacked, by its content (each split's listing files must agree).
URL = "https://www.openslr.org/resources/101/speechocean762.tar.gz"
ARCHIVE_NAME = "speechocean762.tar.gz"
MIN_ARCHIVE_BYTES = 450_000_000
SAMPLE_RATE = 16_000
UPSTREAM_SPLITS = ("train", "test")
SPLITS = ("train", "dev", "devtest", "test")
CHILD_MAX_AGE = 17  # a speaker up to this age counts as a child for the balanced split


@dataclass(frozen=True)
class So762Config(corpora.Pooling):
    """The ``prepare`` stage's config section."""

    corpus_dir: str | None = None  # folder holding speechocean762/ (--corpus-dir, else $ASR_CORPORA); None: download
    download_dir: str = "data/downloads"
    dev_speakers: int = 12  # speakers of the upstream train split held out for dev (half children) ...
    devtest_speakers: int = 12  # ... and for devtest
    seed: int = 0  # which speakers go to dev and devtest

    def __post_init__(self):
        super().__post_init__()
        if self.dev_speakers < 1 or self.devtest_speakers < 0:
            raise ValueError("dev_speakers must be >= 1 and devtest_speakers >= 0")


# --- finding the corpus ----------------------------------------------------------------------


def _root_in(folder: Path) -> Path | None:
    for cand in (folder / "speechocean762", folder):
        if (cand / "train" / "wav.scp").is_file():
            return cand
    return None


def source(url: str = URL, min_bytes: int = MIN_ARCHIVE_BYTES) -> corpora.Source:
    return corpora.Source(
        "speechocean762", _root_in, "speechocean762/train/wav.scp", url, ARCHIVE_NAME, None, min_bytes
    )


def fingerprint(cfg: So762Config) -> dict[str, str] | None:
    """Listing files (hashed) and audio files (size, modification time) of the splits; None before a download."""
    return corpora.fingerprint(source(), cfg.corpus_dir, cfg.download_dir, stamps)


def stamps(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for split in UPSTREAM_SPLITS:
        d = root / split
        if not d.is_dir():
            continue
        for f in sorted(p for p in d.iterdir() if p.is_file()):
            out[str(f)] = f"sha256 {sha256sum(f)}"
        try:
            for path in read_kaldi_table(d / "wav.scp").values():
                out[str(root / path)] = file_stamp(root / path)
        except ManifestError:
            pass  # reported by the stage
    return out


# --- parsing -----------------------------------------------------------------------------------


def read_split(root: Path, split: str) -> tuple[list[Utterance], dict[str, int]]:
    """The utterances of an upstream split (text normalised, durations from the audio headers, the
    speaker's age group and gender as the report pages' groups) and each speaker's age.

    Raises:
        ManifestError: listing files that do not agree (every problem, by utterance id).
    """
    d = root / split
    wav, text, utt2spk = (read_kaldi_table(d / name) for name in ("wav.scp", "text", "utt2spk"))
    ages = read_kaldi_table(d / "spk2age") if (d / "spk2age").is_file() else {}
    genders = read_kaldi_table(d / "spk2gender") if (d / "spk2gender").is_file() else {}
    problems = [
        (u, f"in wav.scp but not in {name}")
        for name, table in (("text", text), ("utt2spk", utt2spk))
        for u in wav
        if u not in table
    ]
    problems += [(u, "in text but not in wav.scp") for u in text if u not in wav]
    if problems:
        raise ManifestError(str(d), problems)
    utts = []
    for uid in sorted(wav):
        audio = Path(wav[uid])
        audio = audio if audio.is_absolute() else root / audio
        info = read_info(audio)
        utts.append(Utterance(uid, str(audio), info.duration, normalize(text[uid]), utt2spk[uid]))
    speakers = {u.speaker for u in utts}
    age = {s: int(ages[s]) if ages.get(s, "").isdigit() else -1 for s in speakers}
    groups = {
        s: (
            ("age", "unknown" if age[s] < 0 else "child" if age[s] <= CHILD_MAX_AGE else "adult"),
            ("gender", genders.get(s, "").lower() or "unknown"),
        )
        for s in speakers
    }
    return [dataclasses.replace(u, groups=groups[u.speaker]) for u in utts], age


def sentences_of(root: Path, vocabulary: set[str], prefix: str = "so762-") -> list[Utterance]:
    """The upstream train split's sentences made only of ``vocabulary`` words (e.g. spoken digit
    strings), ids and speakers prefixed with ``prefix`` so they cannot clash with another corpus's."""
    utts, _ = read_split(root, "train")
    return [
        dataclasses.replace(u, id=prefix + u.id, speaker=prefix + u.speaker, groups=())
        for u in utts
        if u.text and set(u.text.split()) <= vocabulary
    ]


def speaker_split(ages: dict[str, int], n_dev: int, n_devtest: int, seed: int = 0) -> dict[str, str]:
    """Speaker -> ``train``, ``dev`` or ``devtest``; dev and devtest each take half children,
    half adults (speakers of unknown age count as adults), drawn with ``seed``."""
    rng = random.Random(seed)
    groups = [
        sorted(s for s, a in ages.items() if 0 <= a <= CHILD_MAX_AGE),
        sorted(s for s, a in ages.items() if not 0 <= a <= CHILD_MAX_AGE),
    ]
    for g in groups:
        rng.shuffle(g)
    out = {s: "train" for s in ages}
    for split, n in (("dev", n_dev), ("devtest", n_devtest)):
        for k in range(n):  # alternate children and adults, from whichever still has speakers
            g = groups[k % 2] if groups[k % 2] else groups[1 - k % 2]
            if not g:
                break
            out[g.pop()] = split
    return out


def prepare(root: Path, out: Path, cfg: So762Config = So762Config()) -> dict:
    """Write ``{train,dev,devtest}.jsonl`` (and ``test.jsonl`` when the copy has the official test).

    Returns:
        counts per set, speakers per set, and whether the official test was there.
    """
    utts, ages = read_split(root, "train")
    where = speaker_split(ages, cfg.dev_speakers, cfg.devtest_speakers, cfg.seed)
    if sum(s == "train" for s in where.values()) < 1:
        raise CorpusError(f"dev_speakers + devtest_speakers leave no training speakers of {len(where)}")
    sets = {split: [u for u in utts if where[u.speaker] == split] for split in ("train", "dev", "devtest")}
    has_test = (root / "test" / "wav.scp").is_file()
    if has_test:
        sets["test"] = read_split(root, "test")[0]
    counts, speakers = {}, {}
    for name, part in sets.items():
        check(part, f"speechocean762 {name}")
        write_manifest(out / f"{name}.jsonl", part)
        counts[name] = len(part)
        spk = sorted({u.speaker for u in part})
        speakers[name] = {"speakers": len(spk), "children": sum(0 <= ages.get(s, -1) <= CHILD_MAX_AGE for s in spk)}
    return {"counts": counts, "speakers": speakers, "official_test": has_test}


def stage(ctx: StageContext) -> dict:
    """The ``prepare`` stage: find (or download) the corpus and write the manifests."""
    cfg: So762Config = ctx.config
    root = corpora.locate(source(), cfg.corpus_dir, cfg.download_dir)
    ctx.log(f"prepare: speechocean762 from {root}")
    result = prepare(root, ctx.out, cfg)
    if not result["official_test"]:
        ctx.log("prepare: this copy has no official test split (test/); reporting dev and devtest only")
    return {**result, "corpus": str(root)}
