"""Peak memory of a piece of work: on the CPU the process's anonymous resident memory
(``RssAnon``; memory-mapped checkpoint pages, which the kernel can drop, are reported apart),
sampled by a separate process; on a GPU ``torch.cuda.max_memory_allocated``."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lacos_helpers.memory.step import GB

STATUS = Path("/proc/self/status")


def process_memory() -> dict[str, int]:
    """``{"rss_anon": bytes, "rss": bytes, "rss_file": bytes}`` of this process (Linux)."""
    names = {"RssAnon": "rss_anon", "VmRSS": "rss", "RssFile": "rss_file"}
    values = dict.fromkeys(names.values(), 0)
    for line in STATUS.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            values[names[key]] = int(rest.split()[0]) * 1024
    return values


# A separate process samples this one's /proc status: a sampling *thread* needs the GIL and
# missed transients inside one long GIL-holding call (the same 560m load read 0.70 and 1.41 GB).
_SAMPLER = """
import select, sys
path, interval = sys.argv[1], float(sys.argv[2])
def read():
    try:
        with open(path) as f:
            fields = dict(line.partition(":")[::2] for line in f)
    except OSError:
        return 0, 0
    return [int(fields.get(key, "0").split()[0]) * 1024 for key in ("RssAnon", "VmRSS")]
peak_anon = peak_rss = 0
while True:
    ready, _, _ = select.select([sys.stdin], [], [], interval)
    anon, rss = read()
    peak_anon, peak_rss = max(peak_anon, anon), max(peak_rss, rss)
    if ready:
        command = sys.stdin.readline().strip()
        print(peak_anon, peak_rss, flush=True)
        if command != "phase":
            break
        peak_anon = anon
"""


@dataclass
class PeakMemory:
    """Context manager: the peaks of :func:`process_memory` while it is open (``peak_anon``,
    ``peak_rss`` in bytes), sampled every ``interval`` seconds by a separate process;
    :meth:`phase_peak` gives the anonymous peak of each phase. ``cuda_peak`` only when ``cuda``
    (a CPU rehearsal must not report the peak of a model the process holds on the GPU)."""

    interval: float = 0.005
    cuda: bool = False
    peak_anon: int = 0
    peak_rss: int = 0
    start_anon: int = 0
    cuda_peak: int | None = None
    _sampler: subprocess.Popen | None = field(default=None, repr=False)
    _phase_anon: int = field(default=0, repr=False)

    def _record(self, anon: int, rss: int) -> None:
        self.peak_anon, self.peak_rss = max(self.peak_anon, anon), max(self.peak_rss, rss)
        self._phase_anon = max(self._phase_anon, anon)

    def sample(self) -> None:
        """Take one sample in this process (the sampler process takes the others)."""
        now = process_memory()
        self._record(now["rss_anon"], now["rss"])

    def _ask(self, command: str) -> None:
        self._sampler.stdin.write(command + "\n")
        self._sampler.stdin.flush()
        self._record(*(int(v) for v in self._sampler.stdout.readline().split()))

    def phase_peak(self) -> int:
        """Anonymous peak (bytes) since the previous call (or the start); starts a new phase."""
        self.sample()
        self._ask("phase")
        peak, self._phase_anon = self._phase_anon, process_memory()["rss_anon"]
        return peak

    def __enter__(self) -> PeakMemory:
        import torch

        self.start_anon = process_memory()["rss_anon"]
        self.sample()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._sampler = subprocess.Popen(
            [sys.executable, "-c", _SAMPLER, f"/proc/{os.getpid()}/status", str(self.interval)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._ask("phase")  # the sampler is running once it answers
        return self

    def __exit__(self, *exc) -> bool:
        import torch

        self.sample()
        try:
            self._ask("stop")
        finally:
            self._sampler.stdin.close()
            self._sampler.wait(timeout=10)
        if self.cuda:
            self.cuda_peak = torch.cuda.max_memory_allocated()
        return False


def gb(n: float) -> float:
    """Bytes -> GB (:data:`~lacos_helpers.memory.step.GB`), rounded to 3 decimals."""
    return round(n / GB, 3)
