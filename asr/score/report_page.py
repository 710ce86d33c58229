"""The evaluation report as a page: ``index.html`` beside the text files of a scored set.

One self-contained file that opens from disk (no server, nothing fetched): the summary, per-speaker
WER with bootstrap intervals (a matplotlib chart, inline SVG, and a sortable table), the words most
often substituted, deleted and inserted, and every utterance with its reference and hypothesis
aligned, errors coloured, sortable by errors, a click away from its recording (a relative link, or the
recording itself in the page when asked: a page to share).

The data goes into the page as JSON, with ``<``, ``>`` and ``&`` written as JSON escapes, and the
page's script puts every transcript into the page as text (``textContent``), never as markup: a
transcript holding ``<script>`` shows as those characters.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.core.errors import AudioError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import ReportDir
from asr.data.audio import load_audio
from asr.score.wer import interval, speaker_of

TOP = 30  # rows of each word table
SPEAKER_SAMPLES = 1000  # bootstrap resamples of a speaker's utterances
EMBED_RATE = 16_000  # embedded recordings: Opus takes 8, 12, 16, 24 or 48 kHz; speech needs no more than 16


def _speaker_rows(s, speakers: dict[str, str], samples: int) -> list[dict]:
    """WER (and its bootstrap interval) of each speaker, or of each value of another grouping of the
    utterances (``speakers``: utterance -> speaker or value), worst first."""
    groups: dict[str, list[int]] = defaultdict(list)
    for k, u in enumerate(s.ids):
        groups[speaker_of(u, speakers)].append(k)
    rng = np.random.default_rng(0)
    rows = []
    for spk, idx in groups.items():
        e, n = s.utt_errors[idx], s.utt_ref_len[idx]
        row = {"speaker": spk, "utts": len(idx), "words": int(n.sum()), "errors": int(e.sum())}
        row["wer"] = row["errors"] / max(row["words"], 1)
        if samples:
            row["lo"], row["hi"] = interval(e, n, samples, rng)
        rows.append(row)
    return sorted(rows, key=lambda r: -r["wer"])


def _chart(rows: list[dict], what: str = "speaker") -> str:
    """WER per speaker (or per value of another grouping), worst at the top, with 95% intervals: an inline SVG."""
    # imported here: matplotlib takes a second to import, and ``asr wer`` without a page needs none of it
    import matplotlib

    matplotlib.use("Agg")  # the chart is written into the page; no display
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):  # a speaker "$5 and $6" is text, not TeX math
        fig, ax = plt.subplots(figsize=(7, max(1.5, 0.22 * len(rows) + 0.8)))
        _bars(ax, rows, what)
    width = max((len(r["speaker"]) for r in rows), default=4)
    fig.subplots_adjust(left=min(0.5, 0.04 + 0.012 * width), right=0.97, top=0.98, bottom=0.5 / fig.get_figheight())
    return svg(fig)  # text as SVG text, not paths: 125 speakers' chart draws in a fraction of the time


def _bars(ax, rows: list[dict], what: str) -> None:
    y = np.arange(len(rows))[::-1]
    wer = np.array([100 * r["wer"] for r in rows])
    err = None
    if rows and "lo" in rows[0]:
        err = np.array([[100 * (r["wer"] - r["lo"]) for r in rows], [100 * (r["hi"] - r["wer"]) for r in rows]])
    ax.barh(y, wer, xerr=err, color="#4c78a8", ecolor="#333", capsize=2)
    ax.set_yticks(y, [r["speaker"] for r in rows], fontsize=7)
    ax.set_xlabel(f"WER % (95% interval over the {what}'s utterances)")
    ax.set_ylim(-0.7, len(rows) - 0.3)


def embedded(path: str) -> str:
    """A recording as a ``data:`` URI of Ogg Opus at 16 kHz mono (about 2 kB a second: 2.9 hours in about 21 MB),
    which every current browser plays; ``""`` for a file that cannot be read (its row has no play button)."""
    try:
        wave = load_audio(path, EMBED_RATE)
    except AudioError:
        return ""
    buf = io.BytesIO()
    sf.write(buf, wave, EMBED_RATE, format="OGG", subtype="OPUS")
    return "data:audio/ogg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _utterances(
    s, speakers: dict[str, str], audio: dict[str, str], folder: Path, embed: bool = False
) -> tuple[list[dict], Counter]:
    rows, pairs = [], Counter()
    for k, (u, ref_w, hyp_w, chunks) in enumerate(
        zip(s.ids, s.alignment.references, s.alignment.hypotheses, s.alignment.alignments)
    ):
        ops = []
        for c in chunks:
            rw, hw = ref_w[c.ref_start_idx : c.ref_end_idx], hyp_w[c.hyp_start_idx : c.hyp_end_idx]
            op = {"equal": "=", "substitute": "S", "delete": "D", "insert": "I"}[c.type]
            for i in range(max(len(rw), len(hw))):
                a, b = (rw[i] if i < len(rw) else ""), (hw[i] if i < len(hw) else "")
                ops.append([op, a, b])
                if op != "=":
                    pairs[(op, a, b)] += 1
        path = audio.get(u)
        if embed:
            link = embedded(path) if path else ""
        else:
            link = os.path.relpath(path, folder).replace(os.sep, "/") if path else ""
        n = int(s.utt_ref_len[k])
        e = int(s.utt_errors[k])
        rows.append(
            {
                "id": u,
                "speaker": speakers.get(u) or "unknown",
                "errors": e,
                "words": n,
                "wer": e / n if n else float(e > 0),
                "ops": ops,
                "audio": link,
            }
        )
    return rows, pairs


def _word_tables(pairs: Counter) -> dict[str, list]:
    subs = [[a, b, n] for (op, a, b), n in pairs.most_common() if op == "S"][:TOP]
    dels, ins = Counter(), Counter()
    for (op, a, b), n in pairs.items():
        if op == "D":
            dels[a] += n
        elif op == "I":
            ins[b] += n
    return {
        "substitutions": subs,
        "deletions": [[w, n] for w, n in dels.most_common(TOP)],
        "insertions": [[w, n] for w, n in ins.most_common(TOP)],
    }


def comparison(s, other, name: str, p_better: float) -> dict:
    """The paired comparison of ``s`` with ``other`` (the same utterances, another system called ``name``):
    its WER, the probability that ``s`` is better (:func:`asr.score.wer.compare`) and each utterance whose
    error count changed, the most changed first."""
    changed = [
        {"id": u, "ref": r, "hyp": h, "other": o, "errors": int(e), "other_errors": int(oe), "delta": int(oe - e)}
        for u, r, h, o, e, oe in zip(s.ids, s.refs, s.hyps, other.hyps, s.utt_errors, other.utt_errors)
        if e != oe
    ]
    return {
        "name": name,
        "wer": other.words.rate,
        "p_better": p_better,
        "better": sum(c["delta"] > 0 for c in changed),
        "worse": sum(c["delta"] < 0 for c in changed),
        "changed": sorted(changed, key=lambda c: -abs(c["delta"])),
    }


def page_json(data) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` characters left to end it."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_page(
    folder: str | Path,
    s,
    name: str,
    speakers: dict[str, str] | None = None,
    facts: list[tuple[str, str]] = (),
    audio: dict[str, str] | None = None,
    bootstrap_samples: int = SPEAKER_SAMPLES,
    comparison: dict | None = None,
    embed_audio: bool = False,
    groups: dict[str, dict[str, str]] | None = None,
) -> Path:
    """Write ``folder/index.html`` for the scored set ``s`` (an :class:`asr.score.stage.Score`).

    Args:
        name: the set's name, the page's title.
        speakers: utterance -> speaker.
        facts: ``(label, value)`` lines of the summary (decoder, settings, model, data).
        audio: utterance -> audio file, linked relative to ``folder``.
        bootstrap_samples: resamples for the intervals (0: none).
        comparison: another system's run on the same utterances (:func:`comparison`).
        embed_audio: put the recordings in the page (:func:`embedded`) instead of linking them.
        groups: ``{grouping: {utterance: value}}`` (age, gender, ...): a chart and table each, as the speakers'.
    Returns:
        the page's path.
    """
    folder = Path(folder)
    speakers = speakers or {}
    spk_rows = _speaker_rows(s, speakers, bootstrap_samples)
    utts, pairs = _utterances(s, speakers, audio or {}, folder.resolve(), embed_audio)
    summary = {
        "name": name,
        "wer": s.words.rate,
        "cer": s.chars.rate,
        "words": s.words.ref_len,
        "utterances": len(s.ids),
        "substitutions": s.words.substitutions,
        "deletions": s.words.deletions,
        "insertions": s.words.insertions,
        "facts": [[str(a), str(b)] for a, b in facts],
    }
    if bootstrap_samples:
        summary["wer_ci"] = list(s.bootstrap(bootstrap_samples))
        summary["cer_ci"] = list(s.bootstrap(bootstrap_samples, chars=True))
    groupings = [
        {"name": g, "rows": _speaker_rows(s, values, bootstrap_samples)} for g, values in (groups or {}).items()
    ]
    data = {
        "summary": summary,
        "speakers": spk_rows,
        "groups": groupings,
        "words": _word_tables(pairs),
        "utterances": utts,
    }
    if comparison is not None:
        data["comparison"] = comparison
    charts = "".join(
        f'<h2>By {html.escape(g["name"])}</h2><div class="chart">{_chart(g["rows"], html.escape(g["name"]))}</div>'
        f'<table id="group-{k}"></table>'
        for k, g in enumerate(groupings)
    )
    page = fill(
        TEMPLATE,
        TITLE=html.escape(f"{name}: WER {100 * s.words.rate:.2f}%"),
        CHART=_chart(spk_rows),
        GROUPS=charts,
        DATA=page_json(data),
    )
    path = ReportDir(Path(folder)).page
    atomic_write_text(path, page)
    return path


def fill(template: str, **parts: str) -> str:
    """``template`` with each ``__NAME__`` replaced by ``parts[NAME]`` in one pass: what is put in is never read
    for placeholders again (a speaker called ``__DATA__`` stays that text)."""
    return re.sub(r"__([A-Z]+)__", lambda m: parts.get(m[1], m[0]), template)


def svg(fig) -> str:
    """A matplotlib figure as inline SVG (its text as text), closed."""
    import matplotlib
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


TEMPLATE = (Path(__file__).resolve().parents[1] / "static" / "report.html").read_text()
