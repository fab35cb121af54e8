"""8-bit Adam from scratch (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
Quantization", arXiv:2110.02861): :class:`Adam8bit` re-implements ``bitsandbytes.optim.Adam8bit``
(bitsandbytes 0.50) on top of :func:`lacos_helpers.quantization.quantize_blockwise`. Both Adam
moments live in 8 bits between steps, about 2 bytes per trainable parameter instead of 8:

* first moment ``m``: signed dynamic map; second moment ``v``: unsigned dynamic map
  (``create_dynamic_map(signed=False)``, twice the resolution on [0, 1]); blocks of 256, one
  float32 ``absmax`` per block; tensors under ``min_8bit_size`` (4096) keep float32 moments;
* each step: dequantize -> Adam update in float32 from the *fresh* moments -> requantize, so
  quantization error only reaches the next step (the first step equals fp32 Adam's);
* weight decay is *decoupled* (AdamW form), as in every bitsandbytes backend for its
  ``"adam"`` kernels: its ``Adam8bit`` and ``AdamW8bit`` differ only in the default.

Rounding is to the nearest code (bitsandbytes' CPU kernel goes through a coarser lookup
table). So a second moment below ``1.6e-7 * block absmax`` is stored as 0 and that element's
next step, resting on ``g**2`` alone, is larger than fp32 Adam's (up to ``1 / sqrt(1 - beta2)``
= 32x after many steps); bitsandbytes' table rounds it up to ``1.6e-5``, which damps this. It
is the main source of the (small) differences between the two.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from itertools import chain

import torch

from lacos_helpers.checks import check_int
from lacos_helpers.quantization import (
    BlockwiseQuantState,
    dequantize_blockwise,
    quantize_blockwise,
)
from lacos_helpers.quantization.maps import dynamic_map_on

DEFAULT_OPTIM_BLOCK_SIZE = 256  # bitsandbytes 0.50, Optimizer2State.init_state: blocksize = 256
DEFAULT_MIN_8BIT_SIZE = 4096  # bitsandbytes' default min_8bit_size

_PARAM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (state key prefix, signed map?): first moment signed, second moment unsigned (v >= 0).
_MOMENTS = (("exp_avg", True), ("exp_avg_sq", False))


def _moment_layout(param: torch.Tensor, block_size: int,
                   eight_bit: bool) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """(shape, dtype) of each moment entry of ``param``'s state: uint8 codes (flat) and float32
    absmax (one per block) of each moment, or float32 moments shaped like ``param``."""
    if not eight_bit:
        return {name: (tuple(param.shape), torch.float32) for name, _ in _MOMENTS}
    parts = {"codes": ((param.numel(),), torch.uint8),
             "absmax": ((-(-param.numel() // block_size),), torch.float32)}
    return {f"{name}_{part}": spec for name, _ in _MOMENTS for part, spec in parts.items()}


def _check_real(name: str, value, low: float, high: float = math.inf,
                high_inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    below_high = value <= high if high_inclusive else value < high
    if not math.isfinite(value) or not (low <= value and below_high):
        bracket = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value}")
    return float(value)


def _check_group(group: dict) -> None:
    """Validate (and normalize in place) the hyperparameters of one param group."""
    missing = [key for key in ("lr", "betas", "eps", "weight_decay", "block_size",
                               "min_8bit_size") if key not in group]
    if missing:
        raise ValueError(f"param group lacks Adam8bit settings {missing}")
    for key in ("lr", "eps", "weight_decay"):
        group[key] = _check_real(key, group[key], 0.0)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    group["betas"] = tuple(_check_real(f"betas[{i}]", b, 0.0, 1.0, high_inclusive=False)
                           for i, b in enumerate(betas))
    group["block_size"] = check_int(group["block_size"], "block_size")
    group["min_8bit_size"] = check_int(group["min_8bit_size"], "min_8bit_size", 0)
    for param in group["params"]:
        if param.dtype not in _PARAM_DTYPES:
            raise TypeError(f"Adam8bit optimizes float32/float16/bfloat16 tensors, got "
                            f"{param.dtype} (shape {tuple(param.shape)})")


def _check_gradient(param: torch.Tensor) -> None:
    grad = param.grad
    where = f"parameter of shape {tuple(param.shape)}"
    if grad.is_sparse:
        raise RuntimeError(f"Adam8bit does not support sparse gradients ({where}); use "
                           f"dense gradients (e.g. nn.Embedding(sparse=False))")
    if grad.shape != param.shape:
        raise ValueError(f"gradient shape {tuple(grad.shape)} does not match the {where}")
    if not bool(torch.isfinite(grad).all()):
        raise ValueError(f"non-finite gradient (NaN or inf) for a {where}: 8-bit moments "
                         f"cannot hold it. Nothing was updated in this step; with mixed "
                         f"precision, torch.amp.GradScaler skips such steps for you")


class Adam8bit(torch.optim.Optimizer):
    """Adam whose two moments are stored blockwise in 8 bits (bitsandbytes' ``Adam8bit``).

    State per parameter ``p`` (any shape; float32, float16 or bfloat16): ``step`` and, when
    ``p.numel() >= min_8bit_size``, ``exp_avg_codes`` / ``exp_avg_sq_codes`` (uint8, in
    ``p.reshape(-1)`` order) with ``exp_avg_absmax`` / ``exp_avg_sq_absmax`` (float32, one per
    block), else float32 ``exp_avg`` and ``exp_avg_sq`` shaped like ``p``. ``state_dict()`` /
    ``load_state_dict()`` resume exactly.

    Update at step ``t`` (float32, from gradient ``g``):
    ``m = beta1 m + (1 - beta1) g``; ``v = beta2 v + (1 - beta2) g**2``;
    ``p *= 1 - lr * weight_decay`` (decoupled); ``p -= lr / (1 - beta1**t) * m /
    (sqrt(v) / sqrt(1 - beta2**t) + eps)``; then ``m`` and ``v`` are requantized.

    Parameters without a gradient are skipped; a sparse (``RuntimeError``) or NaN/inf
    (``ValueError``) gradient raises before any parameter is touched. Settings may differ per
    param group.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        block_size: int = DEFAULT_OPTIM_BLOCK_SIZE,
        min_8bit_size: int = DEFAULT_MIN_8BIT_SIZE,
    ):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "block_size": block_size, "min_8bit_size": min_8bit_size}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        """torch's ``add_param_group`` plus validation of the group's settings (an invalid
        group raises and is not added)."""
        super().add_param_group(param_group)
        try:
            _check_group(self.param_groups[-1])
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One Adam step for every parameter that has a gradient; returns ``closure()``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = [(group, p) for group in self.param_groups for p in group["params"]
                if p.grad is not None]
        for _, param in work:  # all checks first: an error leaves everything untouched
            _check_gradient(param)
        for group, param in work:
            self._update(group, param)
        return loss

    def _update(self, group: dict, param: torch.Tensor) -> None:
        state = self.state[param]
        if not state:
            self._init_state(group, param, state)
        state["step"] += 1
        step, (beta1, beta2) = state["step"], group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]

        exp_avg, exp_avg_sq = self._read_moments(state, group["block_size"])
        grad = param.grad.detach().reshape(-1).float()  # read only; may alias p.grad
        exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)

        correction1 = 1.0 - beta1**step
        correction2 = math.sqrt(1.0 - beta2**step)
        flat, is_view = _float32_flat(param)
        if weight_decay > 0.0:
            flat.mul_(1.0 - lr * weight_decay)
        if "exp_avg_codes" in state:  # bitsandbytes' 8-bit kernel, operation by operation
            denom = (exp_avg_sq.sqrt() / correction2).add_(eps)
            flat.addcdiv_(exp_avg, denom, value=-lr / correction1)
        else:  # its 32-bit kernel (small tensors): same value, eps scaled instead
            update = exp_avg / (exp_avg_sq.sqrt() + eps * correction2)
            flat.add_(update, alpha=-lr * correction2 / correction1)
        if not is_view:
            param.detach().copy_(flat.view(param.shape))
        self._write_moments(state, exp_avg, exp_avg_sq, group["block_size"])

    def _init_state(self, group: dict, param: torch.Tensor, state: dict) -> None:
        state["step"] = 0
        eight_bit = param.numel() >= max(group["min_8bit_size"], 1)
        # zeros everywhere: zero codes with zero absmax dequantize to 0
        for key, (shape, dtype) in _moment_layout(param, group["block_size"], eight_bit).items():
            state[key] = torch.zeros(shape, dtype=dtype, device=param.device)

    def _read_moments(self, state: dict, block_size: int) -> list[torch.Tensor]:
        """Both moments as flat float32 tensors (fresh copies for 8-bit state, views into
        the state for float32 state)."""
        if "exp_avg_codes" not in state:
            return [state[name].view(-1) for name, _ in _MOMENTS]
        moments = []
        for name, signed in _MOMENTS:
            codes = state[f"{name}_codes"]
            quantized = BlockwiseQuantState(
                codes, state[f"{name}_absmax"], codes.shape, torch.float32, block_size,
                dynamic_map_on(str(codes.device), signed))
            moments.append(dequantize_blockwise(quantized))
        return moments

    def _write_moments(self, state: dict, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                       block_size: int) -> None:
        """Requantize 8-bit moments in place (float32 moments were updated in place)."""
        if "exp_avg_codes" not in state:
            return
        for (name, signed), values in zip(_MOMENTS, (exp_avg, exp_avg_sq)):
            quantized = quantize_blockwise(values, block_size,
                                           dynamic_map_on(str(values.device), signed))
            state[f"{name}_codes"].copy_(quantized.codes)
            state[f"{name}_absmax"].copy_(quantized.absmax)

    def moments(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (dequantized) float32 moments ``(m, v)`` of ``param``, shaped like it.

        Raises ``KeyError`` when ``param`` has no state yet (no step taken with a gradient).
        """
        if param not in self.state or not self.state[param]:
            raise KeyError("this parameter has no optimizer state yet")
        block_size = self._group_of(param)["block_size"]
        m, v = self._read_moments(self.state[param], block_size)
        return m.clone().view(param.shape), v.clone().view(param.shape)

    def _group_of(self, param: torch.Tensor) -> dict:
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                return group
        raise KeyError("parameter is not managed by this optimizer")

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a ``state_dict()`` keeping codes uint8 and moments/absmax float32 (torch's
        would cast them to the parameter's dtype); ``ValueError`` when it does not fit."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError("expected an optimizer state_dict with 'state' and 'param_groups'")
        super().load_state_dict({**state_dict, "state": {}})  # groups: checks and settings
        for group in self.param_groups:
            _check_group(group)
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        current = ((p, g) for g in self.param_groups for p in g["params"])
        target_of_id = dict(zip(saved_ids, current))  # saved id -> (param, its group)
        for key, saved in state_dict["state"].items():
            if key not in target_of_id:
                raise ValueError(f"saved state for parameter id {key!r}, which is in no "
                                 f"saved param group")
            param, group = target_of_id[key]
            self.state[param] = _restored_state(saved, param, group["block_size"], key)


def _float32_flat(param: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``param`` as a flat float32 tensor: a view when possible (float32, contiguous),
    else a copy. Returns ``(flat, is_view)``."""
    data = param.detach()
    if data.dtype == torch.float32 and data.is_contiguous():
        return data.view(-1), True
    return data.reshape(-1).to(torch.float32, copy=True), False


def _restored_state(saved: dict, param: torch.Tensor, block_size: int, key) -> dict:
    """Copy of one saved per-parameter state on ``param``'s device, dtypes restored."""
    where = f"saved state of parameter {key!r} (shape {tuple(param.shape)})"
    if not isinstance(saved, dict) or "step" not in saved:
        raise ValueError(f"{where}: no 'step' entry")
    step = saved["step"]
    step = check_int(int(step.item()) if isinstance(step, torch.Tensor) else step,
                     f"{where}: step", 0)
    layouts = [_moment_layout(param, block_size, eight_bit) for eight_bit in (True, False)]
    layout = next((lay for lay in layouts if all(k in saved for k in lay)), None)
    if layout is None:
        raise ValueError(f"{where}: expected the keys {list(layouts[0])} or "
                         f"{list(layouts[1])}, got {sorted(saved)}")
    state: dict = {"step": step}
    for name, (shape, dtype) in layout.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{where}: {name} should have shape {shape} (block_size "
                             f"{block_size}), got {got}")
        if dtype == torch.uint8 and value.dtype != torch.uint8:
            raise ValueError(f"{where}: {name} must be uint8, got {value.dtype}")
        state[name] = value.to(device=param.device, dtype=dtype, copy=True)
    return state
