"""Whole models to 8 bits: :func:`quantize_model` swaps a model's ``nn.Linear`` layers for
:class:`~lacos_helpers.quantization.int8_linear.Int8Linear` or bitsandbytes' ``Linear8bitLt``;
:func:`eight_bit_backend` is the one answer to "is this an 8-bit layer, and whose?"."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from lacos_helpers.checks import check_choice
from lacos_helpers.config import EIGHT_BIT_BACKENDS as QUANT_BACKENDS
from lacos_helpers.modules import matches_any, replace_submodule
from lacos_helpers.quantization import bnb
from lacos_helpers.quantization.int8_linear import DEFAULT_THRESHOLD, INT8_COMPUTE, Int8Linear


def eight_bit_backend(module: nn.Module) -> str | None:
    """The backend whose 8-bit linear layer ``module`` is (``"lacos"``: ``Int8Linear``,
    ``"bitsandbytes"``: ``Linear8bitLt``, e.g. after ``load_in_8bit``), None for anything
    else."""
    if isinstance(module, Int8Linear):
        return "lacos"
    return "bitsandbytes" if bnb.is_linear8bit(module) else None


def is_8bit_linear(module: nn.Module) -> bool:
    """Whether ``module`` is an 8-bit linear layer of either backend."""
    return eight_bit_backend(module) is not None


def quantize_model(model: nn.Module, backend: str = "lacos", skip: Iterable[str] = ("lm_head",),
                   threshold: float = DEFAULT_THRESHOLD, compute: str = "int8") -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (but ``skip``: full dotted names or their
    endings, :func:`lacos_helpers.modules.name_matches`) in place by an 8-bit LLM.int8() layer
    of ``backend`` (``"lacos"``: :class:`Int8Linear`, ``"bitsandbytes"``: ``Linear8bitLt``).
    ``threshold``: the activations' outlier threshold (0: none); ``compute``: ``"int8"`` or
    ``"dequantize"`` (weight-only, ``lacos`` only). Returns the same model, the replaced names
    in ``model.lacos_quantization["replaced"]``."""
    check_choice(backend, QUANT_BACKENDS, "quantization backend")
    check_choice(compute, INT8_COMPUTE, "compute")
    if compute != "int8" and backend != "lacos":
        raise ValueError(f"compute={compute!r} needs backend='lacos'")
    skip = tuple(skip)
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Linear and not matches_any(name, skip)]
    for name, linear in targets:
        if backend == "lacos":
            replacement = Int8Linear.from_linear(linear, threshold=threshold, compute=compute)
        else:
            replacement = bnb.to_linear8bit(linear, threshold)
        replacement.train(linear.training)
        replace_submodule(model, name, replacement)
    model.lacos_quantization = {"backend": backend, "threshold": threshold, "compute": compute,
                                "replaced": [name for name, _ in targets]}
    return model


def has_8bit_layers(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is already 8-bit (:func:`is_8bit_linear`)."""
    return any(is_8bit_linear(m) for m in model.modules())
