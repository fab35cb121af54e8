"""The LoRA layer (Hu et al. 2021, arXiv:2106.09685), checked against peft.

A frozen linear layer ``y = W x + b`` (``W``: (out, in)) gets a trainable low-rank update:

    y = W x + b + (alpha / r) * B (A dropout(x)),   A: (r, in), B: (out, r), r << min(in, out)

``A`` starts Kaiming-uniform (``a = sqrt(5)``, as ``nn.Linear`` and peft), ``B`` starts at zero,
so an injected model computes exactly what the base model computes until training moves ``B``.
The base layer may be a float ``nn.Linear``, the package's 8-bit
:class:`~lacos_helpers.quantization.Int8Linear` or bitsandbytes' ``Linear8bitLt`` (merging into
an 8-bit base re-quantizes: :meth:`LoRALinear.merge`).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from lacos_helpers.checks import check_int
from lacos_helpers.quantization import Int8Linear, bnb, eight_bit_backend, is_8bit_linear

LORA_PARAMETER_NAMES = ("lora_A", "lora_B")


def _check_number(value, what: str, valid, wanted: str):
    """``value`` if it is a real number (not a bool) for which ``valid(value)``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"lora {what} must be a number, got {type(value).__name__}")
    if not valid(value):
        raise ValueError(f"lora {what} must be {wanted}, got {value}")
    return value


def is_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a linear layer LoRA can wrap: ``nn.Linear`` (incl. bitsandbytes'
    ``Linear8bitLt``) or :class:`~lacos_helpers.quantization.Int8Linear`."""
    return isinstance(module, (nn.Linear, Int8Linear))


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * lora_B(lora_A(dropout(x)))`` around a frozen linear layer
    ``base`` (kept as ``base_layer``; the module docstring lists the types), ``dropout`` on the
    input of ``lora_A`` only. ``lora_A`` and ``lora_B`` (bias-free ``nn.Linear``) live on the
    base weight's device, in its dtype when that is a float dtype, else in float32 (as peft).
    (..., in) -> (..., out) in the dtype of ``base(x)``.
    """

    def __init__(self, base: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if isinstance(base, LoRALinear):
            raise TypeError("base already is a LoRALinear: LoRA cannot be injected twice")
        if not is_linear(base):
            raise TypeError(f"LoRALinear wraps nn.Linear, Int8Linear or Linear8bitLt, got "
                            f"{type(base).__name__}")
        self.r = check_int(r, "LoRA rank r")
        self.alpha = _check_number(alpha, "alpha", lambda a: math.isfinite(a) and a > 0,
                                   "positive and finite")
        self.dropout_p = float(_check_number(dropout, "dropout", lambda p: 0 <= p < 1, "in [0, 1)"))
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
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # peft's default
        nn.init.zeros_(self.lora_B.weight)
        self.merged = False
        self._saved_int8: tuple[torch.Tensor, torch.Tensor] | None = None

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

        Float base: ``W += delta`` in place. 8-bit base: re-quantized on the row's existing
        grid (the step grows only where the new absmax would not fit), so every merged weight is
        within half a step (``absmax_row / 254``) of ``dequantize(W) + delta``; the original
        codes and scales are kept for :meth:`unmerge`.
        """
        if self.merged:
            raise RuntimeError("LoRA layer is already merged")
        with torch.no_grad():
            delta = self.delta_weight()
            base = self.base_layer
            if is_8bit_linear(base):
                self._saved_int8 = _merge_into_int8(base, delta)
            else:
                base.weight.add_(delta.to(base.weight.dtype))
        self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge`: subtract the update (float base) or restore the original int8
        codes and scales exactly (8-bit base)."""
        if not self.merged:
            raise RuntimeError("LoRA layer is not merged")
        with torch.no_grad():
            if self._saved_int8 is not None:
                codes, scales, _ = _int8_storage(self.base_layer)
                codes.copy_(self._saved_int8[0])
                scales.copy_(self._saved_int8[1])
                self._saved_int8 = None
            else:
                self.base_layer.weight.sub_(self.delta_weight().to(self.base_layer.weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha}, scaling={self.scaling:g}, dropout={self.dropout_p}, "
                f"merged={self.merged}")


def _dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """Float32 weight (out, in) of a float, Int8Linear or Linear8bitLt layer."""
    backend = eight_bit_backend(layer)
    if backend == "lacos":
        return layer.dequantized_weight(torch.float32)
    if backend == "bitsandbytes":
        return bnb.dequantized_weight(layer)
    return layer.weight.detach().float()


def dequantized_linear(layer: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Linear:
    """A float ``nn.Linear`` copy of a float, Int8Linear or Linear8bitLt layer (weights
    dequantized), on the same device: e.g. to fine-tune one layer of an 8-bit model in full."""
    if not is_linear(layer):
        raise TypeError(f"expected a linear layer, got {type(layer).__name__}")
    weight, bias = _dequantized_weight(layer), layer.bias
    linear = nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features,
                                bias=bias is not None, device=weight.device)
    linear.weight.data = weight.detach().to(torch.float32, copy=True)
    if bias is not None:
        linear.bias.data = bias.detach().to(torch.float32, copy=True)
    return linear.to(dtype)


def _int8_storage(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The live int8 codes (out, in), the live per-row scale tensor (out,) and the divisor
    turning that scale into the quantization step (Int8Linear stores the step itself,
    bitsandbytes the row absmax ``SCB = 127 * step``)."""
    if eight_bit_backend(layer) == "lacos":
        return layer.weight, layer.weight_scale, 1.0
    if layer.weight.dtype != torch.int8:
        raise TypeError("Linear8bitLt with has_fp16_weights=True holds float weights: merging "
                        "into it is not supported")
    return layer.weight.data, bnb.row_scales(layer), 127.0


def _merge_into_int8(layer: nn.Module, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Add ``delta`` (float32, (out, in)) to an 8-bit layer in place; returns copies of the
    original codes and scales for :meth:`LoRALinear.unmerge`."""
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
