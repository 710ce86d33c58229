"""The ``score`` stage: a report per decoded set (:mod:`asr.score.report`) and ``RESULTS.md``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from asr.core.config import flatten
from asr.core.context import StageContext
from asr.core.fsutil import atomic_write_text
from asr.core.layout import RECORD, DecodeDir, ScoreDir, TrainDir
from asr.core.provenance import command_line, git_commit
from asr.core.textfiles import read_text
from asr.corpora import pool
from asr.score.report import write_report
from asr.score.training_page import write_training_page
from asr.score.wer import BOOTSTRAP_SAMPLES, Score, score
from asr.search.options import DecodeOptions
from asr.text.phones import PHONE_MAPS, fold_text

VERSION = 6  # of the score stage's output: bump when what it writes changes


@dataclass(frozen=True)
class ScoreConfig:
    """The ``score`` stage's config section."""

    bootstrap_samples: int = BOOTSTRAP_SAMPLES  # resamples for the 95% intervals; 0: no intervals
    # phone models: fold references and hypotheses to a scoring phone set first (timit39: TIMIT's 39
    # phones, Lee & Hon); the word error rate over phones is then the phone error rate (PER)
    phone_map: str = ""

    def __post_init__(self):
        if self.bootstrap_samples < 0:
            raise ValueError(f"bootstrap_samples must be >= 0, got {self.bootstrap_samples}")
        if self.phone_map and self.phone_map not in PHONE_MAPS:
            raise ValueError(f"unknown phone_map {self.phone_map!r}; maps: {list(PHONE_MAPS)} or '' for none")


def _record(d: Path) -> dict:
    """A stage's record; a cross-validation fold's folder has none, its stage folder above has it."""
    for p in (d / RECORD, d.parent / RECORD):
        if p.is_file():
            return json.loads(p.read_text())
    return {}


def _interval(s: Score, samples: int, chars: bool = False) -> str:
    if not samples:
        return ""
    lo, hi = s.bootstrap(samples, chars=chars)
    return f" [{100 * lo:.2f}, {100 * hi:.2f}]"


def _decoding(settings: dict) -> str:
    """The decode stage's settings (its tuned :class:`DecodeOptions` and more), as one line."""
    fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    return DecodeOptions(**{k: v for k, v in settings.items() if k in fields}).summary()


def _score_set(ctx: StageContext, cfg: ScoreConfig, name: str, settings: dict) -> tuple[dict, str, bool]:
    """One decoded set scored and its report written; returns its metrics, its RESULTS.md row, and whether
    greedy decoding was scored in phones (a phone model of word transcripts)."""
    d = DecodeDir(ctx.inputs["decode"]).set(name)

    def read(path: Path) -> dict[str, str]:
        return {k: fold_text(v, cfg.phone_map) for k, v in read_text(path).items()}

    refs = read(d.ref)
    s = score(refs, read(d.hyp), ref_name=str(d.ref), hyp_name=str(d.hyp))
    greedy_per = d.greedy_ref.is_file()  # a phone model of word transcripts: greedy output is phones
    g = score(read(d.greedy_ref) if greedy_per else refs, read(d.greedy))
    facts = [
        ("decoding", _decoding(settings)),
        ("greedy", f"{'PER' if greedy_per or cfg.phone_map else 'WER'} {100 * g.words.rate:.2f}%"),
        ("model", str(TrainDir(ctx.inputs["train"]).model)),
    ]
    audio = read_text(d.audio) if d.audio.is_file() else None
    groups = json.loads(d.groups.read_text(encoding="utf-8")) if d.groups.is_file() else None
    out = ScoreDir(ctx.out).set(name).root
    ctx.log(write_report(out, s, read_text(d.utt2spk), name, cfg.bootstrap_samples, facts, audio, groups=groups))
    oov = settings.get("oov", {}).get(name)
    metrics = {
        "wer": s.words.rate,
        "cer": s.chars.rate,
        "greedy_wer": g.words.rate,  # a phone model of word transcripts: its phone error rate ...
        "greedy_units": "phones" if greedy_per else "words",  # ... and this says so
        "utterances": len(s.ids),
        "words": s.words.ref_len,
    }
    if cfg.bootstrap_samples:
        metrics["wer_ci"] = list(s.bootstrap(cfg.bootstrap_samples))
        metrics["cer_ci"] = list(s.bootstrap(cfg.bootstrap_samples, chars=True))
    metrics["oov"] = oov
    row = (
        f"| {name} | {len(s.ids)} | {s.words.ref_len} | {100 * s.words.rate:.2f}"
        f"{_interval(s, cfg.bootstrap_samples)} | {100 * s.chars.rate:.2f}"
        f"{_interval(s, cfg.bootstrap_samples, chars=True)} | {100 * g.words.rate:.2f} | "
        f"{settings['method']} | {'-' if oov is None else f'{100 * oov:.2f}'} |"
    )
    return metrics, row, greedy_per


def _training_line(ctx: StageContext) -> str:
    """RESULTS.md's line on training, with a link to the training page (written here when there is a history)."""
    train_dir = TrainDir(ctx.inputs["train"])
    # the train stage's summary.json, not its record.json: a cross-validation fold has only the former
    train_rec = json.loads(train_dir.summary.read_text()) if train_dir.summary.is_file() else {}
    training_page = ""
    if train_dir.history.is_file():  # (a cross-validation fold's train folder has one per fold)
        config = _record(train_dir.root).get("config", {})
        write_training_page(ScoreDir(ctx.out).training_page, json.loads(train_dir.history.read_text()), flatten(config))
        training_page = f" ([training page](score/{ScoreDir(ctx.out).training_page.name}))"
    return (
        f"- training: {train_rec.get('train_seconds', 0):.0f} s, "
        f"{train_rec.get('updates')} updates ({train_rec.get('epochs')} epochs), kept {train_rec.get('chosen')}, "
        f"dev WER (greedy) {100 * train_rec.get('dev_wer', 0):.2f}%{training_page}"
    )


def pooled_lines(ctx: StageContext) -> list[str]:
    """RESULTS.md's line on the corpora pooled into training (none when nothing was)."""
    lent = pool.read(ctx.inputs["prepare"]) if "prepare" in ctx.inputs else {}
    return [f"Pooled into training (never into dev or test): {pool.describe(lent)}.", ""] if lent else []


def stage(ctx: StageContext) -> dict:
    """The ``score`` stage: a report per decoded set and ``RESULTS.md``."""
    cfg: ScoreConfig = ctx.config
    dec = DecodeDir(ctx.inputs["decode"])
    settings = json.loads(dec.settings.read_text())
    rows, metrics, greedy_per = [], {}, False
    for name in dec.sets():
        metrics[name], row, phones = _score_set(ctx, cfg, name, settings)
        rows.append(row)
        greedy_per = greedy_per or phones
    rate = "PER" if cfg.phone_map else "WER"
    greedy_rate = "PER" if greedy_per else rate
    peak = max(_record(p).get("peak_rss_mb", 0) for p in ctx.inputs.values())
    ci = "95% CI" if cfg.bootstrap_samples else "no CI"
    lines = [
        "# Results",
        "",
        f"Test sets scored once, with settings tuned on {settings['tuned_on']}."
        + (
            f" Phones folded by {cfg.phone_map} before scoring: {rate} is the phone error rate."
            if cfg.phone_map
            else ""
        ),
        "",
        f"| set | utterances | {'phones' if cfg.phone_map else 'words'} | {rate} % [{ci}] | CER % [{ci}] | "
        f"greedy {greedy_rate} % | decoder | OOV % |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Pages (errors by speaker, word and utterance, with the audio): "
        + ", ".join(f"[{n}](score/{n}/index.html)" for n in dec.sets())
        + ".",
        "",
        *pooled_lines(ctx),
        "OOV: running words of the references missing from the decoder's word list (the lm stage's)."
        + (
            " Greedy PER: the phone model's best path against the references' phones (each word's first pronunciation)."
            if greedy_rate == "PER" and not cfg.phone_map
            else ""
        ),
        "",
        f"- decoding: {_decoding(settings)}"
        + (
            f"; on {', '.join(settings['tuned_on'])}: WER {100 * min(g['dev_wer'] for g in settings['grid']):.2f}%, "
            f"greedy {greedy_rate} {100 * settings['greedy_dev_wer']:.2f}%"
            if settings.get("grid") and settings.get("greedy_dev_wer") is not None
            else ""
        ),
        f"- decoding real-time factor (nj={settings.get('nj')}): "
        + ", ".join(f"{k} {v:.4f}" for k, v in settings.get("rtf", {}).items()),
        _training_line(ctx),
        f"- peak memory (max RSS of a stage process): {peak:.0f} MB",
        f"- git commit: {git_commit()}",
        f"- command: `{command_line()}`",
        (
            f"- confidence intervals: bootstrap over utterances ({cfg.bootstrap_samples} resamples)"
            if cfg.bootstrap_samples
            else "- confidence intervals: none (score.bootstrap_samples=0)"
        ),
        "",
    ]
    atomic_write_text(ScoreDir(ctx.out).results, "\n".join(lines))
    return {"metrics": metrics}
