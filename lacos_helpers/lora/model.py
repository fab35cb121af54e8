"""LoRA on a whole model: inject into named linear layers (peft's naming rule), remove, merge,
and prepare an 8-bit model for training (peft's ``prepare_model_for_kbit_training``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lacos_helpers import bloom
from lacos_helpers.lora.layer import LORA_PARAMETER_NAMES, LoRALinear, is_linear
from lacos_helpers.modules import matches_any, name_matches, replace_submodule
from lacos_helpers.quantization import eight_bit_backend


def linear_layer_names(model: nn.Module) -> list[str]:
    """Distinct last name components of the model's linear layers, sorted (``dense``,
    ``query_key_value`` ... for BLOOM): the valid ``target_modules``."""
    return sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                   if name and is_linear(module)})


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{module path: LoRALinear}`` of every injected layer, in model order."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, LoRALinear)}


def normalize_targets(target_modules) -> tuple[str, ...]:
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    targets = tuple(target_modules)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"target_modules must be a non-empty list of layer names, got "
                         f"{target_modules!r}")
    return targets


def _matching_modules(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """Modules whose name ends with a target (``query_key_value``, ``mlp.dense_4h_to_h``)."""
    matches = [(name, module) for name, module in model.named_modules()
               if name and matches_any(name, targets)]
    missing = [t for t in targets if not any(name_matches(name, t) for name, _ in matches)]
    if missing:
        raise ValueError(f"target module(s) {missing} not found in {type(model).__name__}; its "
                         f"linear layers are named {linear_layer_names(model)}")
    wrong = [f"{name} ({type(module).__name__})" for name, module in matches
             if not is_linear(module)]
    if wrong:
        raise TypeError(f"LoRA targets must be linear layers, but these are not: {wrong}; "
                        f"linear layers: {linear_layer_names(model)}")
    return matches


def inject_lora(model: nn.Module, target_modules: Iterable[str] | str = bloom.LORA_TARGETS,
                r: int = 8, alpha: float = 16, dropout: float = 0.0) -> nn.Module:
    """Wrap every linear layer whose name ends with one of ``target_modules`` (its last
    component, or a dotted suffix such as ``self_attention.dense``: peft's rule) in a
    :class:`LoRALinear` (in place) and freeze every other parameter; the settings are
    recorded in ``model.lacos_lora`` (for :func:`save_adapter`). An unknown target is a
    ValueError listing the model's linear layers; a target that is not linear, a TypeError.
    """
    if lora_layers(model) or hasattr(model, "lacos_lora"):
        raise ValueError("model already has LoRA layers: inject once (remove_lora() first to "
                         "start over)")
    targets = normalize_targets(target_modules)
    matches = _matching_modules(model, targets)
    for name, module in matches:  # the first LoRALinear checks r, alpha and dropout
        layer = LoRALinear(module, r=r, alpha=alpha, dropout=dropout)
        layer.train(module.training)  # a model in eval mode gets no active LoRA dropout
        replace_submodule(model, name, layer)
    for name, param in model.named_parameters():
        param.requires_grad_(_is_lora_parameter(name))
    config = getattr(model, "config", None)
    base = getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    model.lacos_lora = {"r": layer.r, "lora_alpha": layer.alpha, "lora_dropout": layer.dropout_p,
                        "target_modules": list(targets),
                        "modules": [name for name, _ in matches],
                        "base_model_name_or_path": str(base) if base else None}
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Put the base layers back (unmerging first): the model computes what it did before
    :func:`inject_lora`. Parameters stay frozen."""
    for name, layer in lora_layers(model).items():
        if layer.merged:
            layer.unmerge()
        replace_submodule(model, name, layer.base_layer)
    if hasattr(model, "lacos_lora"):
        del model.lacos_lora
    return model


def _is_lora_parameter(name: str) -> bool:
    return any(part in LORA_PARAMETER_NAMES for part in name.split("."))


def _require_lora(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers: call inject_lora(model, ...) first")
    return layers


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer (see :meth:`LoRALinear.merge`; exact up to float rounding for
    float bases, re-quantized within half a step per weight for 8-bit bases)."""
    for layer in _require_lora(model).values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (8-bit bases are restored exactly)."""
    for layer in _require_lora(model).values():
        layer.unmerge()
    return model


def prepare_for_kbit_training(model: nn.Module, gradient_checkpointing: bool = False,
                              upcast_frozen: bool = True) -> nn.Module:
    """What matters of peft's ``prepare_model_for_kbit_training``, in place, before or after
    injection:

    1. freeze every parameter except the LoRA weights;
    2. cast float16 / bfloat16 parameters to float32: all with ``upcast_frozen`` (peft's
       recipe), else all but the input embeddings (the lean recipe: +2 GB saved at BLOOM-7b1;
       their *output* is cast instead: the same numbers);
    3. make the input embeddings' output require grad (for re-entrant checkpointing);
    4. with ``gradient_checkpointing``, enable it: re-entrant when the model has bitsandbytes
       layers (their matmul keeps its input out of reach of non-re-entrant checkpointing's
       saved-tensor hooks: 9.6 GB instead of 3.3 GB at BLOOM-560m), else non-re-entrant.
    """
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    kept_16bit = set() if upcast_frozen or embeddings is None else \
        {id(p) for p in embeddings.parameters()}
    for name, param in model.named_parameters():
        param.requires_grad_(_is_lora_parameter(name))
        if param.dtype in (torch.float16, torch.bfloat16) and id(param) not in kept_16bit:
            param.data = param.data.float()
    if kept_16bit:
        embeddings.register_forward_hook(lambda module, inputs, output: output.float())
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    elif embeddings is not None:  # a module that is not a transformers model
        embeddings.register_forward_hook(lambda module, inputs, output: output.requires_grad_())
    else:
        raise TypeError(f"{type(model).__name__} has no input embeddings to hook")
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
        reentrant = any(eight_bit_backend(m) == "bitsandbytes" for m in model.modules())
        kwargs = {"use_reentrant": reentrant}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.25's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:  # Colab's 5.15
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if getattr(model, "config", None) is not None and hasattr(model.config, "use_cache"):
            model.config.use_cache = False
    return model
