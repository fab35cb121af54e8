"""A plain float copy of a trained backbone, what any transformers user can load: every LoRA
layer folded into a float ``nn.Linear`` (``W = dequantize(W8) + (alpha / r) B A``), every
other 8-bit linear layer dequantized, and nothing left that only this package knows.

Why the float weights are the *dequantized* 8-bit ones: the adapters were trained on top of the
8-bit base, so that base (not the original float checkpoint) is what the trained encoder
computes with. With weight-only 8-bit compute (``quant.compute = "dequantize"``, the cpu
profile) the float copy gives the same outputs up to float rounding; LLM.int8 compute also
rounds the *activations* to int8, which the float copy does not (the export measures the
difference, :mod:`lacos_helpers.export.sentence_transformers`).
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from lacos_helpers.lora import LoRALinear, dequantized_linear, is_linear, lora_layers
from lacos_helpers.modules import replace_submodule

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


def _is_quantized_linear(module: nn.Module) -> bool:
    """An 8-bit linear layer (Int8Linear, Linear8bitLt), not a float ``nn.Linear``."""
    weight = getattr(module, "weight", None)
    return is_linear(module) and weight is not None and not weight.dtype.is_floating_point


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


def float_backbone(backbone: nn.Module, *, merge: bool = True) -> nn.Module:
    """Turn ``backbone`` (8-bit and/or LoRA layers) into a plain float32 model, **in place**.

    ``merge=True``: each :class:`~lacos_helpers.lora.LoRALinear` becomes one ``nn.Linear``
    with the adapter folded in; ``merge=False``: it becomes its dequantized base layer (the
    adapter is dropped: save it first with :func:`lacos_helpers.lora.save_adapter`). Every other
    8-bit linear layer is dequantized; float parameters are cast to float32. Returns the model.
    """
    layers = lora_layers(backbone)
    for name, layer in layers.items():
        new = _merged_linear(layer) if merge else dequantized_linear(layer.base_layer)
        replace_submodule(backbone, name, new)
    quantized = [name for name, module in backbone.named_modules()
                 if name and _is_quantized_linear(module)]
    for name in quantized:
        replace_submodule(backbone, name, dequantized_linear(backbone.get_submodule(name)))
    _forget_quantization(backbone)
    backbone.float()
    for param in backbone.parameters():
        param.requires_grad_(False)
    log.info("[export] float32 backbone: %d LoRA layers %s, %d 8-bit layers dequantized",
             len(layers), "merged" if merge else "removed (adapter kept apart)", len(quantized))
    return backbone
