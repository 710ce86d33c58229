"""The benchmark scripts behind the tables in docs/benchmarks.md and the recipe pages
(``python -m asr.benchmarks.NAME``): each prints a table, ours against the reference in the same run, as a ratio."""
