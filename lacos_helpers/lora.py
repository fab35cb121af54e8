"""LoRA from scratch (Hu et al. 2021, arXiv:2106.09685), checked against peft.

A frozen linear layer ``y = W x + b`` (``W``: (out, in)) gets a trainable low-rank update:

    y = W x + b + (alpha / r) * B (A dropout(x)),   A: (r, in), B: (out, r), r << min(in, out)

``A`` starts Kaiming-uniform (``a = sqrt(5)``, as ``nn.Linear`` and peft), ``B`` starts at zero,
so an injected model computes exactly what the base model computes until training moves ``B``.
Only ``r * (in + out)`` numbers per layer are trained: for BLOOM's fused ``query_key_value``
(``h -> 3h``) that is ``4 h r``, under 0.1% of BLOOM-7b1 at ``r = 8``.

The base layer may be a float ``nn.Linear``, the package's 8-bit
:class:`~lacos_helpers.quantization.Int8Linear` or bitsandbytes' ``Linear8bitLt``. Module and
state-dict names follow peft (``<path>.base_layer``, ``<path>.lora_A``, ``<path>.lora_B``), and
:func:`save_adapter` / :func:`load_adapter` read and write peft's adapter format
(``adapter_config.json`` + ``adapter_model.safetensors`` with keys
``base_model.model.<path>.lora_A.weight``), so adapters move freely between this module and
``peft.PeftModel``.

Merging into an 8-bit base cannot be exact: :meth:`LoRALinear.merge` adds the update to the
dequantized weights and rounds the sum back onto each row's int8 grid (the step grows only
where a row would overflow), so every merged weight is within half a quantization step of its
row (``absmax_row / 254``) of the exact sum, and update entries below half a step are lost.
The original codes and scales are kept and :meth:`LoRALinear.unmerge` restores them bit for
bit.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from lacos_helpers import quantization

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "BLOOM_LINEAR_SHAPES",
    "PEFT_KEY_PREFIX",
    "LoRALinear",
    "adapter_config",
    "bloom_lora_table",
    "dequantized_linear",
    "format_lora_table",
    "format_trainable_report",
    "inject_lora",
    "is_linear",
    "linear_layer_names",
    "load_adapter",
    "lora_layers",
    "lora_param_count",
    "lora_state_dict",
    "merge_lora",
    "prepare_for_kbit_training",
    "register_int8linear",
    "remove_lora",
    "save_adapter",
    "set_lora_state_dict",
    "trainable_report",
    "unmerge_lora",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."
# (in, out) of BLOOM's linear layers as multiples of hidden_size h.
BLOOM_LINEAR_SHAPES = {
    "query_key_value": (1, 3),
    "dense": (1, 1),
    "dense_h_to_4h": (1, 4),
    "dense_4h_to_h": (4, 1),
}
_LORA_NAMES = ("lora_A", "lora_B")


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------
def _check_rank(r) -> int:
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise TypeError(f"LoRA rank r must be an int, got {type(r).__name__}")
    if r <= 0:
        raise ValueError(f"LoRA rank r must be positive, got {r}")
    return int(r)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"lora alpha must be a number, got {type(alpha).__name__}")
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"lora alpha must be positive and finite, got {alpha}")
    return alpha


def _check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"lora dropout must be a number, got {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lora dropout must be in [0, 1), got {dropout}")
    return float(dropout)


def _bnb_linear8bit_type():
    """``bitsandbytes.nn.Linear8bitLt`` if bitsandbytes imports, else None."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - bitsandbytes is a dependency of the course
        return None
    return bnb.nn.Linear8bitLt


def _is_bnb_int8(module: nn.Module) -> bool:
    bnb_type = _bnb_linear8bit_type()
    return bnb_type is not None and isinstance(module, bnb_type)


def is_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a linear layer LoRA can wrap: ``nn.Linear`` (incl. bitsandbytes'
    ``Linear8bitLt``) or :class:`~lacos_helpers.quantization.Int8Linear`."""
    return isinstance(module, (nn.Linear, quantization.Int8Linear)) and not isinstance(
        module, LoRALinear)


# --------------------------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------------------------
class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * lora_B(lora_A(dropout(x)))`` around a frozen linear layer.

    Args:
        base: ``nn.Linear``, :class:`~lacos_helpers.quantization.Int8Linear` or
            ``bitsandbytes.nn.Linear8bitLt``; its parameters are frozen.
        r: rank (positive int). alpha: scaling numerator (``scaling = alpha / r``).
        dropout: probability in [0, 1) applied to the input of ``lora_A`` only.

    Submodules: ``base_layer``; ``lora_A`` = ``nn.Linear(in, r, bias=False)`` (weight (r, in),
    Kaiming-uniform); ``lora_B`` = ``nn.Linear(r, out, bias=False)`` (weight (out, r), zeros).
    The adapter lives on the base weight's device, in its dtype when that is a float dtype and
    in float32 for 8-bit bases (as peft). Input (..., in) -> output (..., out) in the dtype of
    ``base(x)``.
    """

    def __init__(self, base: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if isinstance(base, LoRALinear):
            raise TypeError("base already is a LoRALinear: LoRA cannot be injected twice")
        if not is_linear(base):
            raise TypeError(f"LoRALinear wraps nn.Linear, Int8Linear or Linear8bitLt, got "
                            f"{type(base).__name__}")
        self.r = _check_rank(r)
        self.alpha = _check_alpha(alpha)
        self.dropout_p = _check_dropout(dropout)
        self.scaling = self.alpha / self.r
        self.in_features, self.out_features = base.in_features, base.out_features
        for param in base.parameters():
            param.requires_grad_(False)
        self.base_layer = base
        weight = base.weight
        dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32
        factory = {"device": weight.device, "dtype": dtype}
        self.lora_dropout = nn.Dropout(self.dropout_p) if self.dropout_p > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, self.r, bias=False, **factory)
        self.lora_B = nn.Linear(self.r, self.out_features, bias=False, **factory)
        self.reset_lora_parameters()
        self.merged = False
        self._saved_int8: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset_lora_parameters(self) -> None:
        """``A`` Kaiming-uniform with ``a = sqrt(5)`` (peft's default), ``B`` zeros."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        lora_x = x.to(self.lora_A.weight.dtype)
        update = self.lora_B(self.lora_A(self.lora_dropout(lora_x))) * self.scaling
        return result + update.to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        """``(alpha / r) * B @ A``: the update of ``W``, float32, shape (out, in)."""
        return (self.lora_B.weight.float() @ self.lora_A.weight.float()) * self.scaling

    def base_weight(self) -> torch.Tensor:
        """The base weight as float32 (dequantized for 8-bit bases), shape (out, in)."""
        return _dequantized_weight(self.base_layer)

    def merge(self) -> None:
        """Fold the update into the base weight (inference: one matmul instead of three).

        Float base: ``W += delta`` in place. 8-bit base: the int8 codes become
        ``round((dequantize(W) + delta) / step)`` on the row's existing grid (the step grows
        only for a row whose new absmax would not fit), so every merged weight is within half a
        step (``absmax_row / 254``) of ``dequantize(W) + delta``, and parts of the update below
        half a step are lost. The original codes and scales are kept for :meth:`unmerge`.
        """
        if self.merged:
            raise RuntimeError("LoRA layer is already merged")
        with torch.no_grad():
            delta = self.delta_weight()
            base = self.base_layer
            if _is_float_linear(base):
                base.weight.add_(delta.to(base.weight.dtype))
            else:
                self._saved_int8 = _merge_into_int8(base, delta)
        self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge`: subtract the update (float base) or restore the original int8
        codes and scales exactly (8-bit base)."""
        if not self.merged:
            raise RuntimeError("LoRA layer is not merged")
        with torch.no_grad():
            if self._saved_int8 is not None:
                _restore_int8(self.base_layer, *self._saved_int8)
                self._saved_int8 = None
            else:
                self.base_layer.weight.sub_(self.delta_weight().to(self.base_layer.weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha}, scaling={self.scaling:g}, dropout={self.dropout_p}, "
                f"merged={self.merged}")


def _is_float_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and not _is_bnb_int8(module)


def _bnb_row_scales(layer: nn.Module) -> torch.Tensor:
    """bitsandbytes' per-row absmax (``SCB``), held by the weight before the first forward and
    by the layer state after it."""
    scb = getattr(layer.weight, "SCB", None)
    if scb is None:
        scb = getattr(layer.state, "SCB", None)
    if scb is None:
        raise RuntimeError("Linear8bitLt holds no row scales (SCB): are its weights quantized?")
    return scb


def _dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """Float32 weight (out, in) of a float, Int8Linear or Linear8bitLt layer."""
    if isinstance(layer, quantization.Int8Linear):
        return layer.dequantized_weight(torch.float32)
    if _is_bnb_int8(layer):
        if layer.weight.dtype != torch.int8:  # has_fp16_weights=True keeps float weights
            return layer.weight.detach().float()
        scb = _bnb_row_scales(layer).float()
        return layer.weight.detach().float() * (scb[:, None] / 127.0)
    return layer.weight.detach().float()


def _float_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out_features, in_features = weight.shape
    linear = nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias is not None,
                                device=weight.device)
    linear.weight.data = weight.detach().to(torch.float32, copy=True)
    if bias is not None:
        linear.bias.data = bias.detach().to(torch.float32, copy=True)
    return linear


def dequantized_linear(layer: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Linear:
    """A float ``nn.Linear`` copy of a float, Int8Linear or Linear8bitLt layer (weights
    dequantized), on the same device: e.g. to fine-tune one layer of an 8-bit model in full."""
    if not is_linear(layer):
        raise TypeError(f"expected a linear layer, got {type(layer).__name__}")
    return _float_linear(_dequantized_weight(layer), layer.bias).to(dtype)


def _int8_storage(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The live int8 codes (out, in), the live per-row scale tensor (out,) and the divisor
    turning that scale into the quantization step (Int8Linear stores the step itself,
    bitsandbytes the row absmax ``SCB = 127 * step``)."""
    if isinstance(layer, quantization.Int8Linear):
        return layer.weight, layer.weight_scale, 1.0
    if layer.weight.dtype != torch.int8:
        raise TypeError("Linear8bitLt with has_fp16_weights=True holds float weights: merging "
                        "into it is not supported")
    return layer.weight.data, _bnb_row_scales(layer), 127.0


def _merge_into_int8(layer: nn.Module, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Add ``delta`` (float32, (out, in)) to an 8-bit layer in place; returns copies of the
    original codes and scales for :func:`_restore_int8`."""
    codes, scales, divisor = _int8_storage(layer)
    saved = (codes.clone(), scales.clone())
    step = scales.float() / divisor
    target = codes.float() * step[:, None] + delta.to(codes.device)
    new_step = torch.maximum(step, target.abs().amax(dim=1) / 127.0)
    safe_step = torch.where(new_step > 0, new_step, torch.ones_like(new_step))
    new_codes = torch.round(target / safe_step[:, None]).clamp_(-127, 127)
    codes.copy_(new_codes.to(torch.int8))
    scales.copy_((new_step * divisor).to(scales.dtype))
    return saved


def _restore_int8(layer: nn.Module, codes: torch.Tensor, scales: torch.Tensor) -> None:
    live_codes, live_scales, _ = _int8_storage(layer)
    live_codes.copy_(codes)
    live_scales.copy_(scales)


# --------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------
def linear_layer_names(model: nn.Module) -> list[str]:
    """Distinct last name components of the model's linear layers, sorted (``dense``,
    ``query_key_value`` ... for BLOOM): the valid ``target_modules``."""
    return sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                   if name and is_linear(module)})


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{module path: LoRALinear}`` of every injected layer, in model order."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, LoRALinear)}


def _normalize_targets(target_modules) -> tuple[str, ...]:
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    targets = tuple(target_modules)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"target_modules must be a non-empty list of layer names, got "
                         f"{target_modules!r}")
    return targets


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _base_model_name(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    return str(name) if name else None


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of names: the full name, or its ending after a dot."""
    return name == target or name.endswith("." + target)


def _matching_modules(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """Modules whose name ends with a target (``query_key_value``, ``mlp.dense_4h_to_h``)."""
    matches = [(name, module) for name, module in model.named_modules()
               if name and any(_matches(name, t) for t in targets)]
    missing = [t for t in targets if not any(_matches(name, t) for name, _ in matches)]
    if missing:
        raise ValueError(f"target module(s) {missing} not found in {type(model).__name__}; its "
                         f"linear layers are named {linear_layer_names(model)}")
    wrong = [f"{name} ({type(module).__name__})" for name, module in matches
             if not is_linear(module)]
    if wrong:
        raise TypeError(f"LoRA targets must be linear layers, but these are not: {wrong}; "
                        f"linear layers: {linear_layer_names(model)}")
    return matches


def inject_lora(model: nn.Module, target_modules: Iterable[str] | str = ("query_key_value",),
                r: int = 8, alpha: float = 16, dropout: float = 0.0) -> nn.Module:
    """Wrap every linear layer whose name ends with one of ``target_modules`` (its last
    component, or a dotted suffix such as ``self_attention.dense``: peft's rule) in a
    :class:`LoRALinear` (in place) and freeze every other parameter.

    ``target_modules``: BLOOM's fused ``query_key_value`` by default; ``dense``,
    ``dense_h_to_4h``, ``dense_4h_to_h``, or other architectures' names (``q_proj`` ...).
    The settings are recorded in ``model.lacos_lora`` (used by :func:`save_adapter`).

    Raises:
        ValueError: unknown target (the message lists the model's linear layer names), bad
            ``r`` / ``alpha`` / ``dropout``, or a model that already has LoRA layers.
        TypeError: a target that is not a linear layer.
    """
    if lora_layers(model) or hasattr(model, "lacos_lora"):
        raise ValueError("model already has LoRA layers: inject once (remove_lora() first to "
                         "start over)")
    targets = _normalize_targets(target_modules)
    r, alpha, dropout = _check_rank(r), _check_alpha(alpha), _check_dropout(dropout)
    matches = _matching_modules(model, targets)
    for name, module in matches:
        _set_submodule(model, name, LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    for name, param in model.named_parameters():
        param.requires_grad_(_is_lora_parameter(name))
    model.lacos_lora = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout,
                        "target_modules": list(targets),
                        "modules": [name for name, _ in matches],
                        "base_model_name_or_path": _base_model_name(model)}
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Put the base layers back (unmerging first): the model computes what it did before
    :func:`inject_lora`. Parameters stay frozen."""
    for name, layer in lora_layers(model).items():
        if layer.merged:
            layer.unmerge()
        _set_submodule(model, name, layer.base_layer)
    if hasattr(model, "lacos_lora"):
        del model.lacos_lora
    return model


def _is_lora_parameter(name: str) -> bool:
    return any(part in _LORA_NAMES for part in name.split("."))


def _require_lora(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers: call inject_lora(model, ...) first")
    return layers


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------
def _stored_weights(model: nn.Module) -> list[torch.Tensor]:
    """Parameters plus Int8Linear's int8 weights (buffers), each tensor once."""
    tensors = {id(p): p for p in model.parameters()}
    for module in model.modules():
        if isinstance(module, quantization.Int8Linear):
            tensors.setdefault(id(module.weight), module.weight)
    return list(tensors.values())


def trainable_report(model: nn.Module) -> dict:
    """Trainable vs total parameters.

    ``total`` counts every parameter plus the int8 weights of Int8Linear layers (stored as
    buffers) so that it is the model's real parameter count whatever the base precision
    (Linear8bitLt keeps its int8 weights as parameters already; row scales are not counted).

    Returns ``{"trainable": int, "total": int, "frozen": int, "percent": float,
    "lora_layers": int}`` with ``percent = 100 * trainable / total``.
    """
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
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
                     targets: Iterable[str] = ("query_key_value",)) -> int:
    """LoRA parameters of a BLOOM (``hidden_size`` h, ``n_layer`` blocks) at rank ``r``:
    ``r * (in + out)`` per targeted layer and block; e.g. ``4 h r`` per block for
    ``query_key_value`` (h -> 3h). Targets: keys of :data:`BLOOM_LINEAR_SHAPES`."""
    r = _check_rank(r)
    if hidden_size <= 0 or n_layer <= 0:
        raise ValueError(f"hidden_size and n_layer must be positive, got {hidden_size}, "
                         f"{n_layer}")
    targets = _normalize_targets(targets)
    unknown = [t for t in targets if t not in BLOOM_LINEAR_SHAPES]
    if unknown:
        raise ValueError(f"unknown BLOOM layer(s) {unknown}; known: {list(BLOOM_LINEAR_SHAPES)}")
    per_block = sum(r * (i + o) * hidden_size for i, o in (BLOOM_LINEAR_SHAPES[t]
                                                           for t in dict.fromkeys(targets)))
    return n_layer * per_block


def bloom_lora_table(sizes: Iterable[str] = tuple(quantization.BLOOM_CONFIGS),
                     ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                     targets: Iterable[str] = ("query_key_value",)) -> list[dict]:
    """LoRA parameters of the public BLOOM sizes versus rank (from their configs, no download).

    Returns one dict per (size, rank): model, r, lora_params, base_params (BloomModel),
    percent (``100 * lora / base``), adapter_mb (float32 file size, 1 MB = 1e6 bytes).
    """
    targets = _normalize_targets(targets)
    rows = []
    for size in sizes:
        if size not in quantization.BLOOM_CONFIGS:
            raise ValueError(f"unknown BLOOM size {size!r}; known: "
                             f"{tuple(quantization.BLOOM_CONFIGS)}")
        hidden, n_layer, _ = quantization.BLOOM_CONFIGS[size]
        base = quantization.bloom_param_count(hidden, n_layer)["total"]
        for r in ranks:
            lora = lora_param_count(hidden, n_layer, r, targets)
            rows.append({"model": f"bloom-{size}", "r": int(r), "lora_params": lora,
                         "base_params": base, "percent": 100.0 * lora / base,
                         "adapter_mb": 4 * lora / 1e6})
    return rows


def format_lora_table(rows: list[dict]) -> str:
    """Markdown table of :func:`bloom_lora_table` rows."""
    header = ("| model | r | LoRA params | % of model | adapter MB (fp32) |\n"
              "|---|---:|---:|---:|---:|")
    lines = [f"| {row['model']} | {row['r']} | {row['lora_params']:,} | "
             f"{row['percent']:.4f} | {row['adapter_mb']:.2f} |" for row in rows]
    return "\n".join([header, *lines])


# --------------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Adapter I/O in peft's format
# --------------------------------------------------------------------------------------------
def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights under peft's saved names:
    ``base_model.model.<module path>.lora_A.weight`` (r, in) and ``...lora_B.weight``
    (out, r); detached, contiguous, on the CPU."""
    state = {}
    for name, layer in _require_lora(model).items():
        for part in _LORA_NAMES:
            weight = getattr(layer, part).weight
            state[f"{PEFT_KEY_PREFIX}{name}.{part}.weight"] = weight.detach().cpu().contiguous()
    return state


def set_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter weights named as by :func:`lora_state_dict` into the model's LoRA layers.
    Every LoRA weight must be given exactly once, with the right shape."""
    layers = _require_lora(model)
    expected = {f"{PEFT_KEY_PREFIX}{name}.{part}.weight": getattr(layer, part).weight
                for name, layer in layers.items() for part in _LORA_NAMES}
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
    unsupported = {"bias": config.get("bias", "none") != "none",
                   "use_dora": bool(config.get("use_dora")),
                   "use_rslora": bool(config.get("use_rslora")),
                   "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
                   "rank_pattern": bool(config.get("rank_pattern")),
                   "alpha_pattern": bool(config.get("alpha_pattern")),
                   "modules_to_save": bool(config.get("modules_to_save")),
                   "target_modules as a regular expression":
                       isinstance(config.get("target_modules"), str)}
    used = sorted(k for k, v in unsupported.items() if v)
    if used:
        raise ValueError(f"{config_path}: LoRA options not supported here: {used} "
                         "(plain LoRA with a list of target_modules only; load this adapter "
                         "with peft)")
    return config


def _check_same_settings(model: nn.Module, config: dict) -> None:
    settings = model.lacos_lora
    ours = (settings["r"], float(settings["lora_alpha"]), sorted(settings["target_modules"]))
    theirs = (config["r"], float(config["lora_alpha"]), sorted(config["target_modules"]))
    if ours != theirs:
        raise ValueError(f"the model's LoRA (r, alpha, targets) = {ours} differs from the "
                         f"adapter's {theirs}")


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a LoRA adapter saved by :func:`save_adapter` or by peft's ``save_pretrained``.

    A model without LoRA layers gets them first (:func:`inject_lora` with the adapter's r,
    lora_alpha, target_modules, lora_dropout); a model with LoRA must have the same settings.
    Raises a clear error for other peft types or options (DoRA, rsLoRA, bias, rank patterns).
    """
    from safetensors.torch import load_file

    folder = Path(path)
    config = _read_adapter_config(folder)
    weights_path = folder / ADAPTER_WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS_NAME} in {folder}")
    if lora_layers(model):
        _check_same_settings(model, config)
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

    config._register_custom_module({quantization.Int8Linear: PeftLoraLinear})
    return config


# --------------------------------------------------------------------------------------------
# Training an 8-bit base
# --------------------------------------------------------------------------------------------
def _enable_input_require_grads(model: nn.Module) -> None:
    """Make the embedding output require grad, so that gradients reach LoRA layers even
    through re-entrant checkpointing of a fully frozen network."""
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
        return
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is None:
        raise TypeError(f"{type(model).__name__} has no input embeddings to hook")
    embeddings.register_forward_hook(lambda module, inputs, output: output.requires_grad_(True))


def prepare_for_kbit_training(model: nn.Module, gradient_checkpointing: bool = False) -> nn.Module:
    """What matters of peft's ``prepare_model_for_kbit_training``, before or after injection:

    1. freeze every parameter except the LoRA weights (``lora_A`` / ``lora_B``);
    2. cast float16 / bfloat16 parameters to float32 (layer norms above all: their statistics
       need the range; 8-bit weights are untouched), as peft does;
    3. make the input embeddings' output require grad (gradients reach the adapters under
       re-entrant checkpointing too);
    4. if ``gradient_checkpointing``: ``gradient_checkpointing_enable(use_reentrant=False)``
       (activations recomputed in the backward pass; takes effect in ``model.train()``).

    Returns the model (changed in place).
    """
    for name, param in model.named_parameters():
        param.requires_grad_(_is_lora_parameter(name))
        if param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
    _enable_input_require_grads(model)
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if getattr(model, "config", None) is not None and hasattr(model.config, "use_cache"):
            model.config.use_cache = False
    return model
