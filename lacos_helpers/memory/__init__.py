"""The one home for bytes: what a training step holds at its peak (``step``, from the
configuration alone), per GPU under DeepSpeed ZeRO-3 (``zero3``), what a model's tensors hold
and the weight memory of the public BLOOM checkpoints (``weights``), and the peak a process
measures (``measure``). Every BLOOM size and linear shape comes from :mod:`lacos_helpers.bloom`;
GB = 1e9 bytes (:data:`GB`)."""

from lacos_helpers.memory.measure import PeakMemory
from lacos_helpers.memory.step import (
    CUDA_CONTEXT_BYTES,
    GB,
    ActivationDtypes,
    MemoryEstimate,
    activation_bytes,
    activation_dtypes,
    bloom_training_table,
    estimate_training_memory,
)
from lacos_helpers.memory.weights import bloom_memory_table, footprint, format_memory_table
from lacos_helpers.memory.zero3 import zero3_table

__all__ = ["CUDA_CONTEXT_BYTES", "GB", "ActivationDtypes", "MemoryEstimate", "PeakMemory",
           "activation_bytes", "activation_dtypes", "bloom_memory_table", "bloom_training_table",
           "estimate_training_memory", "footprint", "format_memory_table", "zero3_table"]
