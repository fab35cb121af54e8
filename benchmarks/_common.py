"""Shared bits of the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time

import torch


def benchmark_devices(choice: str) -> list[torch.device]:
    """``"all"`` -> cpu (+ cuda when present), else the one named; prints the versions and
    any device that is skipped."""
    import bitsandbytes

    print(f"torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}")
    names = ["cpu", "cuda"] if choice == "all" else [choice]
    if "cuda" in names and not torch.cuda.is_available():
        print("\n(cuda not available: skipped)")
        names.remove("cuda")
    return [torch.device(name) for name in names]


def timed(fn, device: torch.device) -> tuple[float, object]:
    """Seconds for one call of ``fn`` (synchronized on GPUs) and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result
