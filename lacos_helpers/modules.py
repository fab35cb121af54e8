"""Model surgery shared by quantization and LoRA: find and replace submodules by name."""

from __future__ import annotations

from torch import nn


def replace_submodule(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Put ``module`` at the dotted path ``name`` of ``model`` (in place); returns the module
    that was there."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, module)
    return old


def name_matches(name: str, pattern: str) -> bool:
    """peft's rule for a list of module names, the one rule of the package (LoRA targets,
    layers kept out of quantization): the full dotted name, or its ending after a dot
    (``"query_key_value"`` matches ``"h.0.self_attention.query_key_value"``)."""
    return name == pattern or name.endswith("." + pattern)


def matches_any(name: str, patterns) -> bool:
    """Whether ``name`` matches one of ``patterns`` (:func:`name_matches`)."""
    return any(name_matches(name, pattern) for pattern in patterns)
