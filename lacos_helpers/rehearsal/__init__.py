"""Rehearsing BLOOM at the paper's sizes without its weights: random checkpoints of the real
shapes (``checkpoint``) and the rehearsal run (``run``), measured by
:mod:`lacos_helpers.memory.measure`."""

from lacos_helpers.rehearsal.checkpoint import write_random_bloom
from lacos_helpers.rehearsal.run import reference_records, rehearse, summary_line

__all__ = ["reference_records", "rehearse", "summary_line", "write_random_bloom"]
