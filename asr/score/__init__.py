"""Scoring: WER/CER with bootstrap intervals, report folders and pages, ``asr evaluate`` and the score stage."""
