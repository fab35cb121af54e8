"""How much LoRA trains: trainable vs frozen parameters of a model, and LoRA's size for the
public BLOOM checkpoints versus rank."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

import torch
from torch import nn

from lacos_helpers import bloom
from lacos_helpers.checks import check_int, markdown_table
from lacos_helpers.lora.model import lora_layers, normalize_targets
from lacos_helpers.quantization import Int8Linear


def _stored_weights(model: nn.Module) -> list[torch.Tensor]:
    """Parameters plus Int8Linear's int8 weights (buffers), each tensor once."""
    int8 = (m.weight for m in model.modules() if isinstance(m, Int8Linear))
    return list({id(t): t for t in chain(model.parameters(), int8)}.values())


def trainable_report(model: nn.Module) -> dict:
    """Trainable vs total parameters: ``{"trainable", "total", "frozen", "percent",
    "lora_layers"}`` (``percent = 100 * trainable / total``). ``total`` also counts the int8
    weights Int8Linear stores as buffers (Linear8bitLt's are parameters already; row scales are
    not counted): the real parameter count whatever the base precision."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(t.numel() for t in _stored_weights(model))
    return {"trainable": trainable, "total": total, "frozen": total - trainable,
            "percent": 100.0 * trainable / total if total else 0.0,
            "lora_layers": len(lora_layers(model))}


def format_trainable_report(report: dict) -> str:
    """Three aligned lines: trainable (with percent), frozen, total."""
    return "\n".join([
        (f"{'trainable':<10}{report['trainable']:>16,}  ({report['percent']:.4f}%, "
         f"{report['lora_layers']} LoRA layers)"),
        f"{'frozen':<10}{report['frozen']:>16,}",
        f"{'total':<10}{report['total']:>16,}",
    ])


def lora_param_count(hidden_size: int, n_layer: int, r: int,
                     targets: Iterable[str] = bloom.LORA_TARGETS) -> int:
    """LoRA parameters of a BLOOM (``hidden_size`` h, ``n_layer`` blocks) at rank ``r``:
    ``r * (in + out)`` per targeted layer and block; e.g. ``4 h r`` per block for
    ``query_key_value`` (h -> 3h). Targets: keys of :data:`lacos_helpers.bloom.LINEAR_SHAPES`."""
    r = check_int(r, "LoRA rank r")
    check_int(hidden_size, "hidden_size")
    check_int(n_layer, "n_layer")
    targets = normalize_targets(targets)
    unknown = [t for t in targets if t not in bloom.LINEAR_SHAPES]
    if unknown:
        raise ValueError(f"unknown BLOOM layer(s) {unknown}; known: {list(bloom.LINEAR_SHAPES)}")
    per_block = sum(r * (i + o) * hidden_size for i, o in (bloom.LINEAR_SHAPES[t]
                                                           for t in dict.fromkeys(targets)))
    return n_layer * per_block


def bloom_lora_table(sizes: Iterable[str] = tuple(bloom.SHAPES),
                     ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                     targets: Iterable[str] = bloom.LORA_TARGETS) -> list[dict]:
    """LoRA parameters of the public BLOOM sizes versus rank (from their configs, no download):
    one dict per (size, rank): model, r, lora_params, base_params (BloomModel), percent
    (``100 * lora / base``), adapter_mb (float32 file size, 1 MB = 1e6 bytes)."""
    targets = normalize_targets(targets)
    rows = []
    for size in sizes:
        hidden, n_layer, _ = bloom.shape(size)
        base = bloom.param_count(hidden, n_layer)["total"]
        for r in ranks:
            lora = lora_param_count(hidden, n_layer, r, targets)
            rows.append({"model": f"bloom-{size}", "r": int(r), "lora_params": lora,
                         "base_params": base, "percent": 100.0 * lora / base,
                         "adapter_mb": 4 * lora / 1e6})
    return rows


def format_lora_table(rows: list[dict]) -> str:
    """Markdown table of :func:`bloom_lora_table` rows."""
    cells = [[row["model"], row["r"], f"{row['lora_params']:,}", f"{row['percent']:.4f}",
              f"{row['adapter_mb']:.2f}"] for row in rows]
    return markdown_table(cells, ["model", "r", "LoRA params", "% of model",
                                  "adapter MB (fp32)"], align="first-left")
