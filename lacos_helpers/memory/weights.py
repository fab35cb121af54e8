"""What a model holds per dtype (:func:`footprint`) and the weight memory of the public BLOOM
checkpoints from their configurations alone (:func:`bloom_memory_table`).

Units: bytes unless the name says ``gb`` (:data:`~lacos_helpers.memory.step.GB`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from torch import nn

from lacos_helpers import bloom
from lacos_helpers.checks import markdown_table
from lacos_helpers.memory.step import GB
from lacos_helpers.quantization import bnb
from lacos_helpers.quantization.blockwise import DEFAULT_BLOCK_SIZE


def footprint(model: nn.Module) -> dict[str, int]:
    """Bytes held by ``model`` per dtype (parameters, buffers and bitsandbytes' row scales
    ``SCB``, kept outside both; shared tensors counted once).

    Returns e.g. ``{"torch.float32": 1234, "torch.int8": 567, "total": 1801}``.
    """
    scales = (scb for module in model.modules() for scb in bnb.scale_tensors(module))
    tensors = chain(model.parameters(), model.buffers(), scales)
    unique = {(t.data_ptr(), t.numel(), t.dtype) if t.data_ptr() else id(t): t for t in tensors}
    sizes: dict[str, int] = {}
    for t in unique.values():
        sizes[str(t.dtype)] = sizes.get(str(t.dtype), 0) + t.numel() * t.element_size()
    sizes = dict(sorted(sizes.items()))
    sizes["total"] = sum(sizes.values())
    return sizes


def bloom_memory_table(sizes: Iterable[str] = tuple(bloom.SHAPES),
                       block_size: int = DEFAULT_BLOCK_SIZE) -> list[dict]:
    """Weight memory of the public BLOOM checkpoints, from their configs (no download), one
    row per size (GB = 1e9 bytes). int8 (LLM.int8 / ``load_in_8bit``): linear weights int8 plus
    a float32 scale per output row, embeddings (= tied lm_head), LayerNorms and biases float16;
    ``int8_blockwise_gb`` stores the same weights blockwise (one float32 absmax per
    ``block_size`` values). Weights only: no activations, KV cache or optimizer state."""
    rows = []
    for size in sizes:
        hidden, n_layer, n_head = bloom.shape(size)
        counts = bloom.param_count(hidden, n_layer)
        fp16_rest = 2 * counts["other"]
        int8_bytes = counts["linear_weights"] + 4 * counts["linear_rows"] + fp16_rest
        absmax = n_layer * sum(-(-n // block_size) for n in bloom.linear_sizes(hidden))
        blockwise_bytes = counts["linear_weights"] + 4 * absmax + fp16_rest
        rows.append({
            "model": f"bloom-{size}",
            "hidden_size": hidden,
            "n_layer": n_layer,
            "n_head": n_head,
            "params": counts["total"],
            "params_int8": counts["linear_weights"],
            "fp32_gb": 4 * counts["total"] / GB,
            "fp16_gb": 2 * counts["total"] / GB,
            "int8_gb": int8_bytes / GB,
            "int8_blockwise_gb": blockwise_bytes / GB,
            "int8_bytes_per_param": int8_bytes / counts["total"],
        })
    return rows


def format_memory_table(rows: list[dict]) -> str:
    """Markdown table of :func:`bloom_memory_table` rows."""
    columns = ["model", "params", "fp32 GB", "fp16 GB", "int8 GB", "int8 blockwise GB",
               "int8 bytes/param"]
    cells = [[r["model"], f"{r['params'] / 1e9:.3f} B", f"{r['fp32_gb']:.2f}",
              f"{r['fp16_gb']:.2f}", f"{r['int8_gb']:.2f}", f"{r['int8_blockwise_gb']:.2f}",
              f"{r['int8_bytes_per_param']:.3f}"] for r in rows]
    return markdown_table(cells, columns, align="first-left")
