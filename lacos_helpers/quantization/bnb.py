"""bitsandbytes' 8-bit layers: the one place that recognises, builds and reads them.

``bitsandbytes.nn.Linear8bitLt(has_fp16_weights=False)`` (what ``load_in_8bit`` builds) keeps
int8 weights as an ``Int8Params`` parameter and the per-row absmax ``SCB`` outside the parameters
(on the weight before the first forward, on ``layer.state`` after it).
"""

from __future__ import annotations

import torch
from torch import nn


def is_linear8bit(module: nn.Module) -> bool:
    """Whether ``module`` is a bitsandbytes ``Linear8bitLt`` (False without bitsandbytes)."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - bitsandbytes is a dependency of the course
        return False
    return isinstance(module, bnb.nn.Linear8bitLt)


def scale_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The ``SCB`` tensors a module holds outside its parameters and buffers (for memory
    accounting; empty for anything but bitsandbytes layers)."""
    holders = (getattr(module, "weight", None), getattr(module, "state", None))
    return [scb for scb in (getattr(h, "SCB", None) for h in holders)
            if isinstance(scb, torch.Tensor)]


def row_scales(layer: nn.Module) -> torch.Tensor:
    """The per-row absmax ``SCB`` (out,) of a ``Linear8bitLt``: ``W ~= int8 * SCB / 127``."""
    scales = scale_tensors(layer)
    if not scales:
        raise RuntimeError("Linear8bitLt holds no row scales (SCB): are its weights quantized?")
    return scales[0]


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """Float32 weight (out, in) of a ``Linear8bitLt`` (int8 rows times ``SCB / 127``)."""
    if layer.weight.dtype != torch.int8:  # has_fp16_weights=True keeps float weights
        return layer.weight.detach().float()
    return layer.weight.detach().float() * (row_scales(layer).float()[:, None] / 127.0)


def to_linear8bit(linear: nn.Linear, threshold: float) -> nn.Module:
    """``bnb.nn.Linear8bitLt(has_fp16_weights=False)`` holding ``linear``'s weights.

    Int8Params quantize when moved from the CPU to a device, so the weights are placed on the
    CPU first and then moved (``.to("cpu")`` quantizes too).
    """
    import bitsandbytes as bnb

    device = linear.weight.device
    layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                                bias=linear.bias is not None, has_fp16_weights=False,
                                threshold=threshold)
    layer.weight = bnb.nn.Int8Params(linear.weight.detach().to("cpu", copy=True),
                                     requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.detach().to("cpu", copy=True), requires_grad=False)
    return layer.to(device)
