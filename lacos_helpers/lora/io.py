"""Adapter files in peft's format: ``adapter_config.json`` + ``adapter_model.safetensors`` with
keys ``base_model.model.<module path>.lora_A.weight``, so adapters move freely between this
package and ``peft.PeftModel``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lacos_helpers.lora.layer import LORA_PARAMETER_NAMES
from lacos_helpers.lora.model import _require_lora, inject_lora, lora_layers
from lacos_helpers.quantization import Int8Linear

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."


def _peft_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The live LoRA weights under peft's saved names:
    ``base_model.model.<module path>.lora_A.weight`` (r, in) and ``...lora_B.weight`` (out, r)."""
    return {f"{PEFT_KEY_PREFIX}{name}.{part}.weight": getattr(layer, part).weight
            for name, layer in _require_lora(model).items() for part in LORA_PARAMETER_NAMES}


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights under peft's saved names, detached, contiguous, on the CPU."""
    return {key: weight.detach().cpu().contiguous() for key, weight in _peft_weights(model).items()}


def set_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter weights named as by :func:`lora_state_dict` into the model's LoRA layers.
    Every LoRA weight must be given exactly once, with the right shape."""
    expected = _peft_weights(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(f"adapter does not fit the model: missing {missing[:4]}"
                       f"{' ...' if len(missing) > 4 else ''} ({len(missing)}), unexpected "
                       f"{unexpected[:4]}{' ...' if len(unexpected) > 4 else ''} "
                       f"({len(unexpected)})")
    for key, target in expected.items():
        value = state[key]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"{key}: shape {tuple(value.shape)} in the adapter, "
                             f"{tuple(target.shape)} in the model (different rank or model?)")
        with torch.no_grad():
            target.copy_(value.to(device=target.device, dtype=target.dtype))


def adapter_config(model: nn.Module) -> dict:
    """peft's ``adapter_config.json`` content for the injected LoRA (``LoraConfig`` fields)."""
    _require_lora(model)
    settings = getattr(model, "lacos_lora", None)
    if settings is None:
        raise ValueError("model has LoRA layers but no lacos_lora settings: use inject_lora()")
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": settings.get("base_model_name_or_path"),
        "r": settings["r"],
        "lora_alpha": settings["lora_alpha"],
        "lora_dropout": settings["lora_dropout"],
        "target_modules": list(settings["target_modules"]),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (peft's format) to the
    folder ``path`` (created if needed); ``peft.PeftModel.from_pretrained`` loads it. Returns
    the folder. Merged layers are saved with their (unchanged) LoRA weights."""
    from safetensors.torch import save_file

    folder = Path(path)
    config = adapter_config(model)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(model), str(folder / ADAPTER_WEIGHTS_NAME),
              metadata={"format": "pt"})
    (folder / ADAPTER_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def _read_adapter_config(folder: Path) -> dict:
    config_path = folder / ADAPTER_CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_CONFIG_NAME} in {folder}")
    config = json.loads(config_path.read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_path}: peft_type {config.get('peft_type')!r}, expected 'LORA'")
    used = [key for key in ("use_dora", "use_rslora", "fan_in_fan_out", "rank_pattern",
                            "alpha_pattern", "modules_to_save") if config.get(key)]
    if config.get("bias", "none") != "none":
        used.append("bias")
    if isinstance(config.get("target_modules"), str):
        used.append("target_modules as a regular expression")
    if used:
        raise ValueError(f"{config_path}: LoRA options not supported here: {sorted(used)} "
                         "(plain LoRA with a list of target_modules only; load this adapter "
                         "with peft)")
    return config


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a LoRA adapter saved by :func:`save_adapter` or by peft's ``save_pretrained``. A
    model without LoRA layers gets them first (:func:`inject_lora` with the adapter's settings);
    a model with LoRA must have the same settings. Other peft types or options are an error."""
    from safetensors.torch import load_file

    folder = Path(path)
    config = _read_adapter_config(folder)
    weights_path = folder / ADAPTER_WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS_NAME} in {folder}")
    if lora_layers(model):
        ours, theirs = ((s["r"], float(s["lora_alpha"]), sorted(s["target_modules"]))
                        for s in (adapter_config(model), config))
        if ours != theirs:
            raise ValueError(f"the model's LoRA (r, alpha, targets) = {ours} differs from the "
                             f"adapter's {theirs}")
        if any(layer.merged for layer in lora_layers(model).values()):
            raise RuntimeError("unmerge_lora(model) before loading new adapter weights")
    else:
        inject_lora(model, config["target_modules"], r=config["r"], alpha=config["lora_alpha"],
                    dropout=config.get("lora_dropout", 0.0))
        if config.get("base_model_name_or_path"):
            model.lacos_lora["base_model_name_or_path"] = config["base_model_name_or_path"]
    set_lora_state_dict(model, load_file(str(weights_path)))
    return model


def register_int8linear(config):
    """Let peft wrap the package's :class:`~lacos_helpers.quantization.Int8Linear` as a linear
    layer: registers ``{Int8Linear: peft.tuners.lora.layer.Linear}`` on a ``peft.LoraConfig``
    (peft's experimental custom-module API, peft >= 0.14) and returns the config. Only the
    forward pass is supported this way (peft cannot merge into an Int8Linear)."""
    from peft.tuners.lora.layer import Linear as PeftLoraLinear

    config._register_custom_module({Int8Linear: PeftLoraLinear})
    return config
