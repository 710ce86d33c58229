"""Benchmark: hotwords, the recall of words a model never saw, and what they cost elsewhere.

    python -m asr.benchmarks.hotwords --model data/speechocean762/model.pt --lm data/speechocean762/lm \\
        --data data/speechocean762/prepare/dev.jsonl --train data/speechocean762/prepare/train.jsonl \\
        [--count 20] [--boosts 1,2,4,8]

The targets are the ``--count`` words of ``--data``'s references that never occur in the training transcripts
(``--train``), rarest in general English first (wordfreq: names and uncommon terms), as a user would list the
names a recording holds. They are then taken out of the decoder's word list and lexicon (a copy of ``--lm``),
so the model has truly never seen them, and given back as hotwords at each ``--boost``. The table gives, per
decoder: the targets' recall (their occurrences in the references that the hypothesis holds), and the WER of the
utterances holding a target and of those holding none (what hotwords must not make worse). The network runs once
per utterance; each row is a search over the same log-probabilities.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import jiwer

from asr.core.layout import LmDir
from asr.data.manifest import read_manifest
from asr.features.stage import load_utterance
from asr.recognize.recognizer import load_model
from asr.search.hotwords import Hotword


def targets(refs: list[str], train: list[str], count: int) -> list[str]:
    """The ``count`` words of ``refs`` never in ``train``, rarest in general English first."""
    import wordfreq

    seen = {w for t in train for w in t.split()}
    new = {w for r in refs for w in r.split() if w not in seen}
    return sorted(new, key=lambda w: (wordfreq.word_frequency(w, "en"), w))[:count]


def without(lm: Path, words: set[str], out: Path) -> Path:
    """A copy of the lm folder whose word list and lexicon lack ``words``."""
    shutil.copytree(lm, out)
    d = LmDir(out)
    for path in (d.lexicon, d.words):
        kept = [line for line in path.read_text().splitlines(True) if line.split()[0] not in words]
        path.write_text("".join(kept))
    return out


def recall(refs: list[str], hyps: list[str], words: set[str]) -> tuple[int, int]:
    """(occurrences of ``words`` in the references that the hypotheses hold, occurrences in all)."""
    hit = total = 0
    for r, h in zip(refs, hyps):
        rc, hc = Counter(w for w in r.split() if w in words), Counter(h.split())
        hit += sum(min(n, hc[w]) for w, n in rc.items())
        total += sum(rc.values())
    return hit, total


def wer(refs: list[str], hyps: list[str]) -> float:
    return 100 * jiwer.wer(refs, hyps) if refs else float("nan")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lm", required=True, help="the recipe's lm stage folder (the model's decoding vocabulary)")
    ap.add_argument("--data", required=True, help="a manifest of held-out utterances")
    ap.add_argument("--train", required=True, help="the training manifest (words never in it are the candidates)")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--boosts", default="1,2,4,8")
    args = ap.parse_args(argv)
    utts = read_manifest(args.data)
    refs = [u.text for u in utts]
    chosen = targets(refs, [u.text for u in read_manifest(args.train)], args.count)
    has = [any(w in chosen for w in r.split()) for r in refs]
    shipped = load_model(args.model, lm=args.lm, threads=1)
    lps = [shipped.log_probs(load_utterance(u, shipped.sample_rate)) for u in utts]
    print(f"{args.model} on {args.data}: {len(utts)} utterances, {sum(has)} holding one of {len(chosen)} targets:")
    print(", ".join(chosen))
    print("| decoder | targets recalled | WER % with targets | WER % without | search s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="asr-hotwords-") as tmp:
        removed = load_model(args.model, lm=without(Path(args.lm), set(chosen), Path(tmp) / "lm"), threads=1)
        rows = [("as shipped (targets in the word list)", shipped), ("targets removed (never seen)", removed)]
        for b in (float(x) for x in args.boosts.split(",")):
            rows.append((f"removed + hotwords, boost {b:g}", removed.with_hotwords([Hotword((w,), b) for w in chosen])))
        for name, rec in rows:
            t0 = time.perf_counter()
            hyps = [rec.search(lp).text for lp in lps]
            spent = time.perf_counter() - t0
            hit, total = recall(refs, hyps, set(chosen))
            with_t = [(r, h) for r, h, x in zip(refs, hyps, has) if x]
            rest = [(r, h) for r, h, x in zip(refs, hyps, has) if not x]
            print(
                f"| {name} | {hit} of {total} ({100 * hit / max(total, 1):.0f}%) | "
                f"{wer(*map(list, zip(*with_t))) if with_t else float('nan'):.2f} | "
                f"{wer(*map(list, zip(*rest))) if rest else float('nan'):.2f} | {spent:.1f} |"
            )


if __name__ == "__main__":
    main()
