"""Foundations every room uses: the error family, frozen-dataclass configs, what a stage is and sees, atomic
file writes, UTF-8 text files and Kaldi tables, worker processes, stage folder names (layout), provenance, checked
downloads and CTC best paths. Imports nothing else of the package."""
