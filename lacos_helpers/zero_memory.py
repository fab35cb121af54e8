"""The 0.2 path of :mod:`lacos_helpers.memory.zero3` (chapter 7 imports it)."""

from lacos_helpers.memory.zero3 import (  # noqa: F401
    Zero3Memory,
    markdown,
    single_device_gb,
    zero3_memory,
    zero3_table,
)
