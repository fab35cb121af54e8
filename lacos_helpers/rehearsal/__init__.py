"""Rehearsing BLOOM at the paper's sizes without its weights: random checkpoints of the real
shapes (``checkpoint``), peak-memory measurement (``measure``) and the rehearsal run (``run``)."""

from lacos_helpers.rehearsal.checkpoint import write_random_bloom
from lacos_helpers.rehearsal.measure import PeakMemory, process_memory
from lacos_helpers.rehearsal.run import reference_records, rehearse, summary_line

__all__ = ["PeakMemory", "process_memory", "reference_records", "rehearse", "summary_line",
           "write_random_bloom"]
