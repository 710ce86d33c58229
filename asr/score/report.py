"""A scored set as files a person reads and tools take: hypotheses, alignments, per-speaker table, confusions,
sclite ``trn`` files, a summary line and the page (:mod:`asr.score.report_page`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from asr.core.errors import AsrError
from asr.core.fsutil import atomic_write_text
from asr.core.layout import ReportDir
from asr.core.textfiles import write_text
from asr.score.report_page import comparison, write_page
from asr.score.wer import BOOTSTRAP_SAMPLES, Score, compare, speaker_of


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
