"""Benchmark: writing the evaluation page (``index.html``) against the text report alone, in the same run.

    python -m asr.benchmarks.report [--utterances 2500] [--speakers 125] [--repeats 3]

Synthetic references of 8 words (speechocean762's size: 2,500 sentences, 125 speakers), a third of
them with an error; scoring (jiwer) is done once, outside the timings. Prints the median wall time
of ``write_report`` (the text files, and the page since it exists) and of ``write_page`` alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from asr.score.report import write_report
from asr.score.report_page import write_page
from asr.score.wer import score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=2500)
    p.add_argument("--speakers", type=int, default=125)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    words = "the cat sat on a mat with my hat and".split()
    refs = {
        f"s{k % args.speakers:03d}_{k:05d}": " ".join(words[(k + i) % 10] for i in range(8))
        for k in range(args.utterances)
    }
    hyps = {u: r.replace("cat", "bat") if k % 3 == 0 else r for k, (u, r) in enumerate(refs.items())}
    speakers = {u: u.split("_")[0] for u in refs}
    s = score(refs, hyps)
    times: dict[str, list[float]] = {"write_report (text files + page)": [], "write_page alone": []}
    with tempfile.TemporaryDirectory(prefix="asr-bench-report-") as tmp:
        for r in range(args.repeats):
            t0 = time.perf_counter()
            write_report(Path(tmp) / f"r{r}", s, speakers, "bench")
            times["write_report (text files + page)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page = write_page(Path(tmp) / f"p{r}", s, "bench", speakers)
            times["write_page alone"].append(time.perf_counter() - t0)
        size = page.stat().st_size
    report = statistics.median(times["write_report (text files + page)"])
    print(
        f"report: {args.utterances} utterances, {args.speakers} speakers; page {size / 1e6:.1f} MB; "
        f"median of {args.repeats}"
    )
    print("| step | seconds | share of write_report | target |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {statistics.median(ts) / report:.2f} | < 5 s |")


if __name__ == "__main__":
    main()
