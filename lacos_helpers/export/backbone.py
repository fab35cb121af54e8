"""A plain float copy of a trained backbone that any transformers user can load: every LoRA
layer folded into a float ``nn.Linear`` (``W = dequantize(W8) + (alpha / r) B A``), every
other 8-bit linear layer dequantized, no attribute of this package left. The float weights
are the *dequantized* 8-bit ones because the adapters were trained on that base.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from lacos_helpers.lora import LoRALinear, dequantized_linear, lora_layers
from lacos_helpers.modules import replace_submodule
from lacos_helpers.quantization import is_8bit_linear

log = logging.getLogger(__name__)

# attributes this package (or a quantized load) sets on a backbone; none belongs in an export
_PACKAGE_ATTRIBUTES = ("lacos_lora", "lacos_quantization")


def _merged_linear(layer: LoRALinear) -> nn.Linear:
    """Float32 ``nn.Linear`` computing ``base(x) + scaling * B(A(x))`` of an unmerged layer:
    weight ``dequantize(W) + (alpha / r) * B @ A`` (out, in), the base's bias."""
    if layer.merged:
        raise ValueError("LoRA layer is merged into its 8-bit base (re-quantized, lossy): "
                         "unmerge_lora(model) before exporting")
    linear = dequantized_linear(layer.base_layer, torch.float32)
    with torch.no_grad():
        linear.weight.add_(layer.delta_weight().to(linear.weight.device))
    return linear


def _forget_quantization(model: nn.Module) -> None:
    """Remove what marks a model as quantized or LoRA-injected (package attributes, a
    ``load_in_8bit`` quantizer and its ``quantization_config``), so it saves and loads as a
    plain float model."""
    for name in _PACKAGE_ATTRIBUTES:
        if hasattr(model, name):
            delattr(model, name)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    for name in ("hf_quantizer", "quantization_method"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    for name in ("is_loaded_in_8bit", "is_loaded_in_4bit", "is_quantized"):
        if getattr(model, name, False) is True:
            with contextlib.suppress(AttributeError):  # a property derived from hf_quantizer
                setattr(model, name, False)


def _place(module: nn.Module, device: torch.device | None) -> nn.Module:
    """``module`` moved to ``device`` (None: left where it is)."""
    return module if device is None else module.to(device)


def float_backbone(backbone: nn.Module, *, merge: bool = True,
                   device: torch.device | str | None = "cpu") -> nn.Module:
    """Turn ``backbone`` (8-bit and/or LoRA layers) into a plain float32 model on ``device``
    (None: where it is), **in place**; returns it. ``merge=True``: each LoRA layer becomes one
    ``nn.Linear`` with the adapter folded in; ``merge=False``: its dequantized base layer (the
    adapter is dropped: save it first with :func:`lacos_helpers.lora.save_adapter`).

    Each float32 layer is moved to ``device`` before the next one is built, so a GPU holds at
    most one float32 layer (BLOOM-7b1: 0.27 GB, not 28 GB); the rest is moved, then cast.
    """
    target = None if device is None else torch.device(device)
    lora_names = list(lora_layers(backbone))
    for name in lora_names:
        layer = backbone.get_submodule(name)
        linear = _merged_linear(layer) if merge else dequantized_linear(layer.base_layer)
        replace_submodule(backbone, name, _place(linear, target))
    quantized = [name for name, module in backbone.named_modules()
                 if name and is_8bit_linear(module)]
    for name in quantized:
        linear = dequantized_linear(backbone.get_submodule(name))
        replace_submodule(backbone, name, _place(linear, target))
    _forget_quantization(backbone)
    if target is not None:
        if hasattr(backbone, "hf_device_map"):  # a load_in_8bit placement, now stale
            delattr(backbone, "hf_device_map")
        nn.Module.to(backbone, target)  # in their stored dtypes, then cast on the target
    backbone.float()
    for param in backbone.parameters():
        param.requires_grad_(False)
    log.info("[export] float32 backbone on %s: %d LoRA layers %s, %d 8-bit layers dequantized",
             target or "its device", len(lora_names),
             "merged" if merge else "removed (adapter kept apart)", len(quantized))
    return backbone
