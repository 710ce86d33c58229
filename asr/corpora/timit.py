"""TIMIT (LDC93S1): read American English sentences with time-aligned phone transcriptions, 16 kHz.

The LDC release (and its copies, in upper or lower case) is the tree::

    TIMIT/TRAIN/DR<1-8>/<speaker>/<sentence>.WAV   NIST SPHERE, 16-bit 16 kHz (some copies convert to RIFF)
    TIMIT/TRAIN/DR<1-8>/<speaker>/<sentence>.PHN   "<first sample> <last sample> <phone>" per line, 61 phones
    TIMIT/TRAIN/DR<1-8>/<speaker>/<sentence>.WRD   "<first> <last> <word>" per line
    TIMIT/TRAIN/DR<1-8>/<speaker>/<sentence>.TXT   "<first> <last> <sentence text>"
    TIMIT/TEST/...                                  the same for the 168 test speakers

Sentences: SA1/SA2 (read by every speaker; left out, as the literature does), SX and SI.
The standard splits: ``train`` is every TRAIN speaker (462, 3,696 sentences), ``dev`` the 50
speakers of TEST that Kaldi's recipe lists (400 sentences), ``test`` the 24-speaker core test
set (192 sentences). A speaker id is its folder name, lower case (``fcjf0``); an utterance id
``<speaker>_<sentence>`` (``fcjf0_si1027``).

Text: ``text="phones"`` (default) transcribes each sentence as its phones folded from 61 to
``phone_set`` (48 by default, Lee & Hon; 61 keeps them all, 39 trains on the scoring set); the
score stage folds references and hypotheses to 39 (:mod:`asr.text.phones`) for the phone error rate.
``text="words"`` writes the sentence text (lower case, punctuation dropped) for word recognition.

TIMIT is licensed by the LDC and cannot be downloaded without an account: give the folder with
``--corpus-dir`` (or ``$ASR_CORPORA``), holding ``TIMIT/`` or ``timit/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import CorpusError, ManifestError
from asr.core.fsutil import file_stamp, sha256sum
from asr.core.textfiles import read_lines
from asr.corpora.textnorm import normalize
from asr.data.audio import read_info
from asr.data.manifest import Utterance
from asr.text.phones import TIMIT_FOLD, TIMIT_SETS, fold_timit

VERSION = 1  # of the prepare stage's output: bump when the manifests it writes change
SAMPLE_RATE = 16_000
SPLITS = ("train", "dev", "test")
CORE_TEST = (
    "mdab0",
    "mwbt0",
    "felc0",
    "mtas1",
    "mwew0",
    "fpas0",
    "mjmp0",
    "mlnt0",
    "fpkt0",
    "mlll0",
    "mtls0",
    "fjlm0",
    "mbpm0",
    "mklt0",
    "fnlp0",
    "mcmj0",
    "mjdh0",
    "fmgd0",
    "mgrt0",
    "mnjm0",
    "fdhc0",
    "mjln0",
    "mpam0",
    "fmld0",
)  # 24 speakers: 2 men and a woman from each dialect region (TIMIT's documentation)
DEV = (
    "faks0",
    "fdac1",
    "fjem0",
    "mgwt0",
    "mjar0",
    "mmdb1",
    "mmdm2",
    "mpdf0",
    "fcmh0",
    "fkms0",
    "mbdg0",
    "mbwm0",
    "mcsh0",
    "fadg0",
    "fdms0",
    "fedw0",
    "mgjf0",
    "mglb0",
    "mrtk0",
    "mtaa0",
    "mtdt0",
    "mthc0",
    "mwjg0",
    "fnmr0",
    "frew0",
    "fsem0",
    "mbns0",
    "mmjr0",
    "mdls0",
    "mdlf0",
    "mdvc0",
    "mers0",
    "fmah0",
    "fdrw0",
    "mrcs0",
    "mrjm4",
    "fcal1",
    "mmwh0",
    "fjsj0",
    "majc0",
    "mjsw0",
    "mreb0",
    "fgjd0",
    "fjmg0",
    "mroa0",
    "mteb0",
    "mjfc0",
    "mrjr0",
    "fmml0",
    "mrws1",
)  # 50 speakers of TEST, as Kaldi's egs/timit/s5/conf/dev_spk.list


@dataclass(frozen=True)
class TimitConfig(corpora.Pooling):
    """The ``prepare`` stage's config section."""

    corpus_dir: str | None = None  # folder holding TIMIT/ (--corpus-dir, else $ASR_CORPORA); LDC-licensed, no download
    text: Literal["phones", "words"] = "phones"  # what the transcripts hold: phones (PER) or the sentence's words
    phone_set: int = 48  # phones: fold the 61 TIMIT phones to 61, 48 or 39 for training (scoring folds to 39)

    def __post_init__(self):
        super().__post_init__()
        if self.phone_set not in TIMIT_SETS:
            raise ValueError(f"phone_set must be one of {list(TIMIT_SETS)}, got {self.phone_set}")


# --- finding the corpus ------------------------------------------------------------------------


def _ci(folder: Path, name: str) -> Path | None:
    """``folder/name`` in whichever case the copy uses."""
    for cand in (folder / name.upper(), folder / name.lower()):
        if cand.is_dir():
            return cand
    return None


def _root_in(folder: Path) -> Path | None:
    for cand in (folder / "TIMIT", folder / "timit", folder / "timit" / "TIMIT", folder / "data", folder):
        if _ci(cand, "train") and _ci(cand, "test"):
            return cand
    return None


def source() -> corpora.Source:
    return corpora.Source("TIMIT", _root_in, "TIMIT/TRAIN/DR1/...", "", "timit.tar.gz")


def locate(corpus_dir: str | Path | None = None) -> Path:
    """The TIMIT root (the folder holding TRAIN/ and TEST/).

    Raises:
        CorpusError: no copy named, or a named folder without TIMIT.
    """
    root = corpora.local_root(corpus_dir)
    if root is None:
        raise CorpusError(
            "TIMIT is licensed by the LDC (LDC93S1) and cannot be downloaded here: give the folder "
            "holding TIMIT/ with --corpus-dir or the ASR_CORPORA environment variable"
        )
    return corpora.find_local(source(), root, "")


def _sentences(root: Path) -> list[tuple[str, Path]]:
    """``(split, audio path)`` of every SX/SI sentence of the standard splits (SA left out)."""
    out = []
    core, dev = set(CORE_TEST), set(DEV)
    for part in ("train", "test"):
        top = _ci(root, part)
        for spk_dir in sorted(p for p in top.glob("*/*") if p.is_dir()):
            spk = spk_dir.name.lower()
            split = "train" if part == "train" else "test" if spk in core else "dev" if spk in dev else None
            if split is None:
                continue  # a TEST speaker outside the core test and dev sets (the "complete test" remainder)
            for wav in sorted(spk_dir.iterdir()):
                if wav.suffix.lower() == ".wav" and not wav.stem.lower().startswith("sa") and "." not in wav.stem:
                    out.append((split, wav))
    return out


def fingerprint(cfg: TimitConfig) -> dict[str, str] | None:
    """Transcription files (hashed) and audio (size, modification time) of the standard splits."""
    try:
        root = locate(cfg.corpus_dir)
    except CorpusError:
        return {}  # the stage itself reports it
    out = {}
    for _, wav in _sentences(root):
        out[str(wav)] = file_stamp(wav)
        for f in wav.parent.glob(f"{wav.stem}.*"):
            if f.suffix.lower() in (".phn", ".txt"):
                out[str(f)] = f"sha256 {sha256sum(f)}"
    return out


# --- parsing ------------------------------------------------------------------------------------


def _sibling(wav: Path, suffix: str) -> Path | None:
    for cand in (wav.with_suffix(suffix.upper()), wav.with_suffix(suffix.lower())):
        if cand.is_file():
            return cand
    return None


def _phones(path: Path, problems: list) -> list[str]:
    phones = []
    for n, line in read_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            problems.append((f"{path}:{n}", "expected '<first sample> <last sample> <phone>'"))
        elif fields[2] not in TIMIT_FOLD:
            problems.append((f"{path}:{n}", f"{fields[2]!r} is not one of TIMIT's 61 phones"))
        else:
            phones.append(fields[2])
    return phones


def _words(path: Path, problems: list) -> str:
    lines = [line for _, line in read_lines(path) if line.strip()]
    fields = lines[0].split(maxsplit=2) if lines else []
    if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
        problems.append((f"{path}:1", "expected '<first sample> <last sample> <sentence>'"))
        return ""
    return normalize(fields[2])


def read_sets(root: Path, cfg: TimitConfig) -> dict[str, list[Utterance]]:
    """The standard splits, utterances sorted by id.

    Raises:
        ManifestError: a sentence without its .PHN or .TXT, malformed lines, phones outside the 61
            (every problem, by file and line).
    """
    sets: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    problems: list[tuple[str, str]] = []
    for split, wav in _sentences(root):
        kind = ".phn" if cfg.text == "phones" else ".txt"
        transcript = _sibling(wav, kind)
        if transcript is None:
            problems.append((str(wav), f"no {wav.stem}{kind.upper()} beside it"))
            continue
        before = len(problems)
        if cfg.text == "phones":
            text = " ".join(fold_timit(_phones(transcript, problems), cfg.phone_set))
        else:
            text = _words(transcript, problems)
        if len(problems) > before:
            continue
        spk = wav.parent.name.lower()
        sets[split].append(Utterance(f"{spk}_{wav.stem.lower()}", str(wav), read_info(wav).duration, text, spk))
    if problems:
        raise ManifestError(str(root), problems)
    for split, utts in sets.items():
        if not utts:
            raise CorpusError(f"{root}: no {split} sentences (is this the full TIMIT tree with TRAIN/ and TEST/?)")
        utts.sort(key=lambda u: u.id)
    return sets


def prepare(root: Path, out: Path, cfg: TimitConfig) -> dict:
    """Write ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl``.

    Returns:
        sentences, speakers, hours and (phones) distinct phones per set.
    """
    sets = read_sets(root, cfg)
    counts = corpora.write_sets(out, sets, "TIMIT")
    if cfg.text == "phones":
        for split, utts in sets.items():
            counts[split]["phones"] = len({p for u in utts for p in u.text.split()})
    return counts


def stage(ctx: StageContext) -> dict:
    """The ``prepare`` stage: read the TIMIT tree and write the manifests."""
    cfg: TimitConfig = ctx.config
    root = locate(cfg.corpus_dir)
    ctx.log(f"prepare: TIMIT from {root} ({cfg.text}{f', {cfg.phone_set} phones' if cfg.text == 'phones' else ''})")
    return {"counts": prepare(root, ctx.out, cfg), "corpus": str(root)}
