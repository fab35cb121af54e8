"""Measured seconds per notebook, the one source of every notebook time a reader sees (checked
by ``tests/test_timings.py``): the last cold ``make course`` (``build/summary.md``) in the
``cpu`` profile on the reference machine (2 cores, no GPU, native bfloat16, the converted-model
cache warm, chapter 5 without cached experiments)."""

from __future__ import annotations

CPU_SECONDS: dict[str, int] = {
    "00_introduction": 21,
    "01_blockwise_quantization": 13,
    "02_lora": 28,
    "03_siamese_mnr_training": 235,
    "04_sts_evaluation": 208,
    "05_reproducing_the_paper": 1138,
    "06_using_the_embeddings": 387,
    "07_scaling_out": 398,
}
FIRST_SIX = tuple(name for name in CPU_SECONDS if name < "06")


def total_minutes(names=None) -> float:
    """Measured minutes of ``names`` (default: all eight notebooks), summed, then rounded to
    0.1 (``KeyError`` for an unknown name)."""
    names = CPU_SECONDS if names is None else names
    return round(sum(CPU_SECONDS[name] for name in names) / 60, 1)


__all__ = ["CPU_SECONDS", "FIRST_SIX", "total_minutes"]
