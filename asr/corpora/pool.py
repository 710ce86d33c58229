"""Pooling: other corpora's training utterances in a recipe's training sets, as ESPnet's ``combine_data.sh`` or
lhotse's mixed cut sets do, with a weight per corpus.

A step of the recipe's prepare stage (:func:`pooled` wraps it): after the recipe's own manifests are written,
each pooled corpus's upstream training split (never its test split) is read, optionally cut to the utterances
made of the recipe's own training words (``pool_words="task"``, or ``an4:task`` for one corpus), and appended
to every training manifest (a set whose name has a ``train`` part: ``train``, ``loso/jackson/train``,
``train/mine``); dev and test sets never take any. A pooled utterance keeps its own audio, at its own rate (the
features stage resamples it to the recipe's), and is named by its corpus: id ``an4-<id>``, speaker
``an4-<speaker>`` (so two corpora never share a speaker), group ``pooled: an4`` (the lm stage leaves its
transcript out of the recipe's word model, so the decoding vocabulary stays the recipe's) and the corpus's
weight (how often a training pass sees it). What was pooled is ``pooled.json`` in the prepare output, which
``asr stages`` and RESULTS.md show; each pooled corpus's files and version are part of the prepare stage's data
stamps, so the cache notices them.

``espeak`` and ``flite`` are pooled alike, but they are no corpora: a synthesiser's voices speak each training
set's own transcripts (:mod:`asr.corpora.synthetic`, audio in the prepare output's ``espeak/`` or ``flite/``), so
a set gets its own transcripts only (a fold never hears a held-out speaker's sentences it would not otherwise
have); its stamp is the synthesiser's version and that of its voices and draws.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asr import corpora
from asr.core.context import StageContext
from asr.core.errors import CorpusError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import POOLED_RECORD
from asr.corpora import an4, fsdd, speechocean762, synthetic
from asr.data.manifest import POOLED, Utterance, check, manifest_names, read_manifest

VERSION = 1  # of what pooling adds to the prepare output: bump when it changes
ESPEAK = "espeak"  # the synthesiser prepare.espeak_renditions is for


@dataclass(frozen=True)
class Poolable:
    """A corpus a recipe can pool: where it is, its training utterances, the files they come from."""

    source: Callable[[], corpora.Source]
    training: Callable[[Path], list[Utterance]]  # the corpus root -> its upstream training utterances
    stamps: Callable[[Path], dict[str, str]]  # the corpus root -> {file: stamp} of what `training` reads
    version: int  # of the corpus module's reading: part of the cache key
    module: str  # the corpus module (a recipe never pools its own corpus)


def _fsdd_training(recordings: Path) -> list[Utterance]:
    # FSDD's official training indices (5-49); its test takes (0-4) stay out, as every corpus's test split does
    return [fsdd.to_utterance(r) for r in fsdd.scan(recordings) if fsdd.split_of(r) != "test"]


CORPORA: dict[str, Poolable] = {
    "an4": Poolable(an4.source, lambda root: an4.read_split(root, "train"), an4.stamps, an4.VERSION, an4.__name__),
    "fsdd": Poolable(fsdd.source, _fsdd_training, fsdd.stamps, fsdd.VERSION, fsdd.__name__),
    "speechocean762": Poolable(
        speechocean762.source,
        lambda root: speechocean762.read_split(root, "train")[0],
        speechocean762.stamps,
        speechocean762.VERSION,
        speechocean762.__name__,
    ),
}
assert tuple(sorted(CORPORA)) == corpora.POOLABLE


def is_training_set(name: str) -> bool:
    """A manifest that pooled utterances join: one with a ``train`` part in its name."""
    return "train" in name.split("/")


def _folder_of(name: str, cfg: corpora.Pooling) -> str | None:
    """The folder to find pooled corpus ``name`` in: ``pool_dir``, else the first of the recipe's corpus folder,
    the folder above it and ``$ASR_CORPORA`` that holds it; None: download it.

    Raises:
        CorpusError: local folders were given and none holds it.
    """
    if cfg.pool_dir:
        return cfg.pool_dir
    own = getattr(cfg, "corpus_dir", None)
    places = [p for p in (own, own and str(Path(own).parent), os.environ.get(corpora.CORPORA_ENV)) if p]
    for place in places:
        if CORPORA[name].source().probe(Path(place)) is not None:
            return place
    if places:
        raise CorpusError(
            f"{name} (pooled by prepare.pool) is in none of {places}; name the folder holding it with "
            f"--set prepare.pool_dir=DIR, or leave it out of prepare.pool"
        )
    return None


def fingerprint(cfg: corpora.Pooling, download_dir: str | Path) -> dict[str, str] | None:
    """The pooled corpora's data stamps and versions; ``{}`` when one is missing (the stage reports it), None
    before a download."""
    out: dict[str, str] = {"pooling": f"version {VERSION}"}
    for name in (e.name for e in corpora.pool_entries(cfg.pool, cfg.pool_words)):
        if name in synthetic.SYNTHESIZERS:
            try:
                out[f"pool {name}"] = f"version {synthetic.SYNTHESIZERS[name].version}, {synthetic.version(name)}"
            except CorpusError:
                return {}
            continue
        try:
            folder = _folder_of(name, cfg)
        except CorpusError:
            return {}
        stamps = corpora.fingerprint(CORPORA[name].source(), folder, download_dir, CORPORA[name].stamps)
        if stamps is None:
            return None
        out.update(stamps)
        out[f"pool {name}"] = f"version {CORPORA[name].version}"
    return out


def _lent(name: str, weight: float, root: Path, vocabulary: set[str] | None) -> list[Utterance]:
    """Corpus ``name``'s training utterances as a pooled corpus lends them: named by it, weighted, absolute
    audio paths (manifests in any folder read them), only ``vocabulary`` words when given."""
    return [
        dataclasses.replace(
            u,
            id=f"{name}-{u.id}",
            audio=str(Path(u.audio).resolve()),
            speaker=f"{name}-{u.speaker}",
            groups=((POOLED, name),),
            weight=weight,
        )
        for u in CORPORA[name].training(root)
        if u.text and (vocabulary is None or set(u.text.split()) <= vocabulary)
    ]


def add(out: Path, cfg: corpora.Pooling, own_module: str, log: Callable[[str], None]) -> dict[str, dict]:
    """Append the pooled corpora of ``cfg.pool`` to every training manifest under ``out``; write and return what
    was pooled (``{corpus: {utterances, speakers, hours, weight, sets}}``).

    Raises:
        CorpusError: a recipe pooling its own corpus, a pooled corpus that is missing or lends nothing, a
            speaker in a training set and in a dev or test set.
    """
    names = manifest_names(out)
    training = [n for n in names if is_training_set(n)]
    if not training:
        raise CorpusError(f"prepare.pool: the prepare output has no training set to pool into (sets: {names})")
    entries = corpora.pool_entries(cfg.pool, cfg.pool_words)
    vocabulary = None
    if any(e.words == "task" for e in entries):
        vocabulary = {w for n in training for u in read_manifest(out / f"{n}.jsonl") for w in u.text.split()}
    download_dir = getattr(cfg, "download_dir", corpora.DOWNLOADS)
    lent, summary, spoken = [], {}, {}
    for entry in entries:
        name, weight, words = entry.name, entry.weight, entry.words
        if name in synthetic.SYNTHESIZERS:  # each training set's own transcripts spoken (in two sets: one file)
            renditions = cfg.espeak_renditions if name == ESPEAK else 1
            spoken[name] = {
                n: synthetic.utterances(
                    name, (u.text for u in read_manifest(out / f"{n}.jsonl")), out / name, weight, renditions
                )
                for n in training
            }
            every = list({u.id: u for utts in spoken[name].values() for u in utts}.values())
            summary[name] = _summary(every, weight, len(training), synthetic.version(name))
            times = f", each {renditions} times" if renditions > 1 else ""
            log(f"prepare: + {describe({name: summary[name]})}, each training set its own transcripts{times}")
            continue
        if CORPORA[name].module == own_module:
            raise CorpusError(f"prepare.pool names {name}, this recipe's own corpus: pool other corpora")
        root = corpora.locate(CORPORA[name].source(), _folder_of(name, cfg), download_dir)
        utts = _lent(name, weight, root, vocabulary if words == "task" else None)
        if not utts:
            raise CorpusError(
                f"{name} ({root}) lends no utterance"
                + (" made only of this recipe's training words (task words)" if words == "task" else "")
            )
        lent += utts
        summary[name] = {**_summary(utts, weight, len(training), str(root)), "words": words}
        log(f"prepare: + {describe({name: summary[name]})} in each of {len(training)} training set(s)")
    for n in training:
        path = out / f"{n}.jsonl"
        said = [u for by_set in spoken.values() for u in by_set[n]]
        check(read_manifest(path) + lent + said, n)  # an id clash with the recipe's own is named here
        # spoken audio is in this output: relative to the manifest, as the recipe's own lines (the stage writes
        # into a folder that is renamed when it is done)
        extra = lent + [dataclasses.replace(u, audio=os.path.relpath(u.audio, path.parent)) for u in said]
        lines = "".join(json.dumps(u.to_dict(), ensure_ascii=False) + "\n" for u in extra)
        # appended as text: the recipe's own lines stay as written (relative audio paths included)
        atomic_write_text(path, path.read_text(encoding="utf-8") + lines)
    _check_disjoint(out, names)
    atomic_write_text(out / POOLED_RECORD, json.dumps(summary, indent=1) + "\n")
    return summary


def _summary(utts: list[Utterance], weight: float, sets: int, source: str) -> dict:
    return {
        "utterances": len(utts),
        "speakers": len({u.speaker for u in utts}),
        "hours": round(sum(u.duration for u in utts) / 3600, 3),
        "weight": weight,
        "sets": sets,
        "corpus": source,
    }


def _check_disjoint(out: Path, names: list[str]) -> None:
    """No pooled speaker in a dev or test set."""
    training = [u for n in names if is_training_set(n) for u in read_manifest(out / f"{n}.jsonl")]
    pooled = {u.speaker for u in training if u.pooled_from}
    for n in names:
        if not is_training_set(n):
            both = pooled & {u.speaker for u in read_manifest(out / f"{n}.jsonl")}
            if both:
                raise CorpusError(f"pooled speakers {sorted(both)[:5]} are also in {n}: a set must not share speakers")


def describe(summary: dict[str, dict]) -> str:
    """``an4: 137 utterances, 69 speakers, 0.071 h, weight 1`` for each pooled corpus (``, task words`` where only
    the utterances made of the recipe's words were lent)."""
    return "; ".join(
        f"{name}: {s['utterances']} utterances, {s['speakers']} speakers, {s['hours']:g} h, weight {s['weight']:g}"
        + (", task words" if s.get("words") == "task" else "")
        for name, s in summary.items()
    )


def read(prepare_out: Path) -> dict[str, dict]:
    """What a prepare output pooled (``{}``: nothing)."""
    path = Path(prepare_out) / POOLED_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def status(cfg, prepare_out: Path) -> str:
    """``asr stages``' line on pooling: what the prepare output pooled, else what the config asks for."""
    if not getattr(cfg, "pool", ()):
        return "pooled into training: nothing (prepare.pool)"
    lent = read(prepare_out)
    asked = ", ".join(
        f"{e.name} (weight {e.weight:g}{', task words' if e.words == 'task' else ''})"
        for e in corpora.pool_entries(cfg.pool, cfg.pool_words)
    )
    return f"pooled into training: {describe(lent) if lent else asked + ', once the prepare stage runs'}"


def pooled(prepare: Callable[[StageContext], dict]) -> Callable[[StageContext], dict]:
    """A corpus's prepare stage followed by pooling (:func:`add`) when its config names corpora to pool."""

    @functools.wraps(prepare)
    def stage(ctx: StageContext) -> dict:
        renditions = ctx.config.espeak_renditions
        if renditions > 1 and all(e.name != ESPEAK for e in corpora.pool_entries(ctx.config.pool)):
            raise CorpusError(
                f"prepare.espeak_renditions={renditions} sets how often eSpeak NG's voices speak each transcript, but "
                f"prepare.pool has no {ESPEAK}: add it (e.g. --set prepare.pool={ESPEAK}:0.3)"
            )
        result = prepare(ctx)
        if ctx.config.pool:
            result["pooled"] = add(Path(ctx.out), ctx.config, prepare.__module__, ctx.log)
        return result

    return stage


def pooled_fingerprint(data: Callable | None) -> Callable | None:
    """A corpus's data stamps with its pooled corpora's (:func:`fingerprint`)."""
    if data is None:
        return None

    @functools.wraps(data)
    def stamps(cfg) -> dict[str, str] | None:
        own = data(cfg)
        if not own or not getattr(cfg, "pool", ()):
            return own
        extra = fingerprint(cfg, getattr(cfg, "download_dir", corpora.DOWNLOADS))
        return None if extra is None else {**own, **extra}

    return stamps
