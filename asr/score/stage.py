"""Scoring: corpus-level WER/CER through jiwer, bootstrap intervals, and readable decode reports.

Rates are always corpus level (total errors / total reference words), never an
average of per-utterance rates. ``%WER`` lines follow Kaldi's ``compute-wer``.
The bootstrap follows Bisani & Ney (2004), as Kaldi's ``compute-wer-bootci``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from asr.core.config import flatten
from asr.core.context import StageContext
from asr.core.errors import AsrError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import RECORD, DecodeDir, ReportDir, ScoreDir, TrainDir
from asr.core.provenance import command_line, git_commit
from asr.core.textfiles import read_text, write_text
from asr.score.report_page import comparison, write_page, write_training_page
from asr.search.options import DecodeOptions
from asr.text.phones import PHONE_MAPS, fold_text

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts of a corpus (words or characters)."""

    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """jiwer's definition: errors / reference length (0 errors on an empty reference is 0)."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.ref_len

    def line(self, name: str = "WER") -> str:
        return (
            f"%{name} {100 * self.rate:.2f} [ {self.errors} / {self.ref_len}, {self.insertions} ins, "
            f"{self.deletions} del, {self.substitutions} sub ]"
        )


def _counts(out) -> ErrorCounts:
    return ErrorCounts(out.hits, out.substitutions, out.deletions, out.insertions)


@dataclass
class Score:
    """Scores of aligned hypotheses; ``ids`` in order, with per-utterance word errors for the bootstrap."""

    ids: list[str]
    refs: list[str]
    hyps: list[str]
    words: ErrorCounts
    chars: ErrorCounts
    utt_errors: np.ndarray  # (N,) word errors per utterance
    utt_ref_len: np.ndarray  # (N,) reference words per utterance
    utt_char_errors: np.ndarray  # (N,) character errors per utterance
    utt_ref_chars: np.ndarray  # (N,) reference characters per utterance
    alignment: object  # jiwer WordOutput

    def bootstrap(self, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, chars: bool = False) -> tuple[float, float]:
        """95% confidence interval of the WER (or CER) by resampling utterances.

        Raises:
            AsrError: ``samples`` < 1.
        """
        if samples < 1:
            raise AsrError(f"a bootstrap interval needs at least one resample, got {samples}")
        errs, lens = (self.utt_char_errors, self.utt_ref_chars) if chars else (self.utt_errors, self.utt_ref_len)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(self.ids), size=(samples, len(self.ids)))
        rates = errs[idx].sum(1) / np.maximum(lens[idx].sum(1), 1)
        lo, hi = np.percentile(rates, [2.5, 97.5])
        return float(lo), float(hi)


def score(
    refs: dict[str, str],
    hyps: dict[str, str],
    missing_as_deletions: bool = False,
    ref_name: str = "REF",
    hyp_name: str = "HYP",
) -> Score:
    """Align every utterance of ``refs`` with its hypothesis and count errors.

    Raises:
        AsrError: ids in only one of the two (listed), unless ``missing_as_deletions``
            (then a missing hypothesis is empty; extra hypotheses are still an error).
    """
    only_ref = sorted(set(refs) - set(hyps))
    only_hyp = sorted(set(hyps) - set(refs))
    if only_hyp or (only_ref and not missing_as_deletions):
        parts = []
        if only_ref:
            parts.append(f"{len(only_ref)} id(s) in {ref_name} but not in {hyp_name}: {only_ref[:10]}")
        if only_hyp:
            parts.append(f"{len(only_hyp)} id(s) in {hyp_name} but not in {ref_name}: {only_hyp[:10]}")
        hint = "" if only_hyp else " (use --missing-as-deletions to count them as deleted)"
        raise AsrError("; ".join(parts) + hint)
    if not refs:
        raise AsrError(f"{ref_name} holds no utterances")
    ids = sorted(refs)
    r = [refs[i] for i in ids]
    h = [hyps.get(i, "") for i in ids]
    words = jiwer.process_words(r, h)
    chars = jiwer.process_characters(r, h)
    return Score(ids, r, h, _counts(words), _counts(chars), *_per_utterance(words), *_per_utterance(chars), words)


def _per_utterance(out) -> tuple[np.ndarray, np.ndarray]:
    """Errors and reference length of each utterance of a jiwer result (words or characters)."""
    errs, lens = [], []
    for ref, chunks in zip(out.references, out.alignments):
        e = 0
        for c in chunks:
            if c.type in ("substitute", "delete"):
                e += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                e += c.hyp_end_idx - c.hyp_start_idx
        errs.append(e)
        lens.append(len(ref))
    return np.array(errs), np.array(lens)


def compare(a: Score, b: Score, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> float:
    """Probability that ``a`` has a lower WER than ``b`` (paired bootstrap over utterances)."""
    if a.ids != b.ids:
        raise AsrError("the two hypothesis sets cover different utterances")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a.ids), size=(samples, len(a.ids)))
    delta = b.utt_errors[idx].sum(1) - a.utt_errors[idx].sum(1)
    return float((delta > 0).mean())


# --- decode output directory ---------------------------------------------------------------------


UNKNOWN_SPEAKER = "unknown"


def speaker_of(uid: str, speakers: dict[str, str] | None) -> str:
    """The utterance's speaker from ``speakers``; never guessed from the id (``7_jackson_32`` is not
    spoken by "7"): an utterance without one is counted under ``unknown``."""
    return (speakers or {}).get(uid) or UNKNOWN_SPEAKER


def write_report(
    out_dir: str | Path,
    s: Score,
    speakers: dict[str, str] | None = None,
    name: str = "test",
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    facts: list[tuple[str, str]] = (),
    audio: dict[str, str] | None = None,
    other: tuple[str, Score] | None = None,
    embed_audio: bool = False,
    groups: dict[str, dict[str, str]] | None = None,
) -> str:
    """Write hypotheses, alignments, per-speaker table, confusions, sclite ``trn`` files, a summary, and
    the page (``index.html``: ``facts`` in its summary, ``audio`` files linked (or in the page with
    ``embed_audio``), the error rate by each of ``groups`` (``{grouping: {utterance: value}}``, e.g. age
    and gender) as by speaker, and the paired comparison with ``other``, ``(name, its score)``, on the same
    utterances; :mod:`asr.score.report_page`).

    Returns:
        the one-line summary (also in ``wer``).
    """
    out = ReportDir(Path(out_dir))
    if out.root.exists() and not out.root.is_dir():
        raise AsrError(f"{out.root} is a file; the report needs a folder: give another path")
    out.root.mkdir(parents=True, exist_ok=True)
    write_text(out.hyp, dict(zip(s.ids, s.hyps)))
    write_text(out.ref, dict(zip(s.ids, s.refs)))
    # sclite trn: "words (speaker_utt)"; sclite's -i rm takes the speaker from the id's prefix
    trn_id = {u: f"{speaker_of(u, speakers)}_{u}" for u in s.ids}
    atomic_write_text(out.ref_trn, "".join(f"{r} ({trn_id[u]})\n" for u, r in zip(s.ids, s.refs)))
    atomic_write_text(out.hyp_trn, "".join(f"{h} ({trn_id[u]})\n" for u, h in zip(s.ids, s.hyps)))

    lines, confusions = [], Counter()
    per_spk = defaultdict(lambda: np.zeros(4, dtype=np.int64))  # utts, words, errors, sentence errors
    for k, (u, ref_w, hyp_w, chunks) in enumerate(
        zip(s.ids, s.alignment.references, s.alignment.hypotheses, s.alignment.alignments)
    ):
        rr, hh, ops = [], [], []
        for c in chunks:
            rw, hw = ref_w[c.ref_start_idx : c.ref_end_idx], hyp_w[c.hyp_start_idx : c.hyp_end_idx]
            n = max(len(rw), len(hw))
            rw, hw = rw + ["***"] * (n - len(rw)), hw + ["***"] * (n - len(hw))
            op = {"equal": " ", "substitute": "S", "delete": "D", "insert": "I"}[c.type]
            for a, b in zip(rw, hw):
                w = max(len(a), len(b))
                rr.append(a.ljust(w))
                hh.append(b.ljust(w))
                ops.append(op.ljust(w))
                if op == "S":
                    confusions[f"{a} -> {b}"] += 1
                elif op == "D":
                    confusions[f"{a} -> ***"] += 1
                elif op == "I":
                    confusions[f"*** -> {b}"] += 1
        lines += [f"{u} ref  {' '.join(rr)}", f"{u} hyp  {' '.join(hh)}", f"{u} op   {' '.join(ops)}".rstrip(), ""]
        stats = per_spk[speaker_of(u, speakers)]
        stats += [1, s.utt_ref_len[k], s.utt_errors[k], int(s.utt_errors[k] > 0)]
    atomic_write_text(out.alignments, "\n".join(lines))
    atomic_write_text(out.confusions, "".join(f"{n:6d}  {pair}\n" for pair, n in confusions.most_common()))
    rows = ["speaker      utts  words  errors   WER%  SER%"]
    for spk, (n, w, e, se) in sorted(per_spk.items()):
        rows.append(f"{spk:<12} {n:4d} {w:6d} {e:7d} {100 * e / max(w, 1):6.2f} {100 * se / max(n, 1):5.1f}")
    atomic_write_text(out.speakers, "\n".join(rows) + "\n")
    summary = f"{name}: {s.words.line('WER')} {s.chars.line('CER')}"
    if bootstrap_samples:
        lo, hi = s.bootstrap(bootstrap_samples)
        summary += f" 95% CI [{100 * lo:.2f}, {100 * hi:.2f}]"
    atomic_write_text(out.summary, summary + "\n")
    paired = None
    if other is not None:
        paired = comparison(s, other[1], other[0], compare(s, other[1], max(bootstrap_samples, 1)))
    write_page(out.root, s, name, speakers, facts, audio, bootstrap_samples, paired, embed_audio, groups)
    return summary


# --- the stage ---------------------------------------------------------------------------------------


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


def stage(ctx: StageContext) -> dict:
    """The ``score`` stage: a report per decoded set and ``RESULTS.md``."""
    cfg: ScoreConfig = ctx.config
    dec = DecodeDir(ctx.inputs["decode"])
    settings = json.loads(dec.settings.read_text())
    rows, metrics = [], {}
    rate = "PER" if cfg.phone_map else "WER"
    greedy_rate = rate

    def read(path: Path) -> dict[str, str]:
        return {k: fold_text(v, cfg.phone_map) for k, v in read_text(path).items()}

    for name in dec.sets():
        d = dec.set(name)
        refs = read(d.ref)
        speakers = read_text(d.utt2spk)
        s = score(refs, read(d.hyp), ref_name=str(d.ref), hyp_name=str(d.hyp))
        greedy_per = d.greedy_ref.is_file()  # a phone model of word transcripts: greedy output is phones
        g = score(read(d.greedy_ref) if greedy_per else refs, read(d.greedy))
        greedy_rate = "PER" if greedy_per else greedy_rate
        facts = [
            ("decoding", _decoding(settings)),
            ("greedy", f"{greedy_rate} {100 * g.words.rate:.2f}%"),
            ("model", str(TrainDir(ctx.inputs["train"]).model)),
        ]
        audio = read_text(d.audio) if d.audio.is_file() else None
        groups = json.loads(d.groups.read_text(encoding="utf-8")) if d.groups.is_file() else None
        summary = write_report(
            ScoreDir(ctx.out).set(name).root, s, speakers, name, cfg.bootstrap_samples, facts, audio, groups=groups
        )
        metrics[name] = {
            "wer": s.words.rate,
            "cer": s.chars.rate,
            "greedy_wer": g.words.rate,  # a phone model of word transcripts: its phone error rate ...
            "greedy_units": "phones" if greedy_per else "words",  # ... and this says so
            "utterances": len(s.ids),
            "words": s.words.ref_len,
        }
        if cfg.bootstrap_samples:
            metrics[name]["wer_ci"] = list(s.bootstrap(cfg.bootstrap_samples))
            metrics[name]["cer_ci"] = list(s.bootstrap(cfg.bootstrap_samples, chars=True))
        oov = settings.get("oov", {}).get(name)
        metrics[name]["oov"] = oov
        rows.append(
            f"| {name} | {len(s.ids)} | {s.words.ref_len} | {100 * s.words.rate:.2f}"
            f"{_interval(s, cfg.bootstrap_samples)} | {100 * s.chars.rate:.2f}"
            f"{_interval(s, cfg.bootstrap_samples, chars=True)} | {100 * g.words.rate:.2f} | "
            f"{settings['method']} | {'-' if oov is None else f'{100 * oov:.2f}'} |"
        )
        ctx.log(summary)
    # the train stage's summary.json, not its record.json: a cross-validation fold has only the former
    summary_path = TrainDir(ctx.inputs["train"]).summary
    train_rec = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    train_dir = TrainDir(ctx.inputs["train"])
    training_page = ""
    if train_dir.history.is_file():  # (a cross-validation fold's train folder has one per fold)
        config = _record(train_dir.root).get("config", {})
        write_training_page(ScoreDir(ctx.out).training_page, json.loads(train_dir.history.read_text()), flatten(config))
        training_page = f" ([training page](score/{ScoreDir(ctx.out).training_page.name}))"
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
        f"- training: {train_rec.get('train_seconds', 0):.0f} s, "
        f"{train_rec.get('updates')} updates ({train_rec.get('epochs')} epochs), kept {train_rec.get('chosen')}, "
        "dev WER (greedy) "
        f"{100 * train_rec.get('dev_wer', 0):.2f}%{training_page}",
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
