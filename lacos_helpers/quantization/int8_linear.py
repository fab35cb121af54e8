"""LLM.int8() (Dettmers et al. 2022, arXiv:2208.07339) in plain PyTorch: :class:`Int8Linear`,
the counterpart of ``bitsandbytes.nn.Linear8bitLt(has_fp16_weights=False)`` (what
``load_in_8bit`` builds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lacos_helpers.checks import check_choice
from lacos_helpers.config import QUANT_COMPUTES as INT8_COMPUTE

DEFAULT_THRESHOLD = 6.0


def _rowwise_int8(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``q = round(m * 127 / absmax_row)``; returns (q int8 of
    ``matrix``'s shape, scale float32 (rows,) with ``m ~= q * scale``, ``scale = absmax / 127``).
    All-zero rows get scale 0 and codes 0."""
    matrix = matrix.float()
    absmax = matrix.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    q = torch.round(matrix * (127.0 / safe)[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, absmax / 127.0


def _int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ b`` of int8 matrices (m, k) @ (k, n) -> int32 (m, n).

    Uses ``torch._int_mm`` (VNNI on CPU, IMMA on GPU) where it takes the shapes; otherwise
    float32 matmuls over slices of k <= 1024, each exact since |partial sum| <= 1024 * 127**2
    < 2**24.
    """
    try:
        return torch._int_mm(a, b)
    except (RuntimeError, NotImplementedError):  # shapes or a device it does not take
        pass
    out = torch.zeros(a.shape[0], b.shape[1], dtype=torch.int32, device=a.device)
    for start in range(0, a.shape[1], 1024):
        part = a[:, start:start + 1024].float() @ b[start:start + 1024].float()
        out += part.to(torch.int32)
    return out


def _outlier_columns(x: torch.Tensor, threshold: float) -> torch.Tensor | None:
    """Indices (int64) of the columns of ``x`` (tokens, features) that hold any
    ``|x| >= threshold``; None when ``threshold <= 0`` or there are none."""
    if threshold <= 0:
        return None
    columns = (x.abs() >= threshold).any(dim=0).nonzero().view(-1)
    return columns if columns.numel() else None


def _int8_linear_forward(x, weight_int8, weight_scale, bias, threshold):
    """LLM.int8() product ``x @ W.T + bias`` for ``x`` (tokens, in), float32: the outlier
    columns in float32, the others int8 x int8 with per-token (row) scales ``absmax / 127``."""
    x = x.float()
    columns = _outlier_columns(x, threshold)
    regular = x if columns is None else x.index_fill(1, columns, 0.0)
    x_int8, x_scale = _rowwise_int8(regular)
    y = _int8_matmul(x_int8, weight_int8.t()).float()
    y.mul_(x_scale[:, None] * weight_scale[None, :])
    if columns is not None:
        w_columns = weight_int8.index_select(1, columns).float() * weight_scale[:, None]
        y.addmm_(x.index_select(1, columns), w_columns.t())
    if bias is not None:
        y.add_(bias.float())
    return y


class _Int8LinearFunction(torch.autograd.Function):
    """LLM.int8() forward; backward as bitsandbytes: straight through the activation
    quantization, ``grad_x = grad_y @ W_dequantized`` (frozen weights get no gradient)."""

    @staticmethod
    def forward(ctx, x, weight_int8, weight_scale, bias, threshold):
        ctx.save_for_backward(weight_int8, weight_scale)
        ctx.x_dtype = x.dtype
        ctx.has_bias = bias is not None
        return _int8_linear_forward(x, weight_int8, weight_scale, bias, threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        weight_int8, weight_scale = ctx.saved_tensors
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            weight = weight_int8.float() * weight_scale[:, None]
            grad_x = (grad_y.float() @ weight).to(ctx.x_dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_y.sum(dim=0)
        return grad_x, None, None, grad_bias, None


# Weight-only layers dequantize at most this many weights at a time (a BLOOM-7b1 MLP matrix
# would need 268 MB in float32); smaller layers take one chunk, at unchanged speed.
DEQUANT_CHUNK_NUMEL = 1 << 23


def _row_chunks(rows: int, cols: int):
    step = max(1, DEQUANT_CHUNK_NUMEL // max(cols, 1))
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


def _dequantized_rows(weight_int8, weight_scale, start, stop, dtype):
    return weight_int8[start:stop].to(dtype) * weight_scale[start:stop, None].to(dtype)


class _DequantLinearFunction(torch.autograd.Function):
    """Weight-only 8-bit: ``y = x @ (weight * scale).T + bias`` with the int8 rows dequantized
    straight to the compute dtype (the input's or autocast's) for this call only, in chunks of
    output rows; backward re-dequantizes instead of keeping the float weight alive."""

    @staticmethod
    def forward(ctx, x, weight_int8, weight_scale, bias):
        ctx.save_for_backward(weight_int8, weight_scale)
        ctx.has_bias = bias is not None
        kind = x.device.type  # compute in autocast's dtype where it is on, else in x's
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        x = x.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        rows, cols = weight_int8.shape
        chunks = list(_row_chunks(rows, cols))
        if len(chunks) == 1:
            weight = _dequantized_rows(weight_int8, weight_scale, 0, rows, dtype)
            return F.linear(x, weight, bias)
        y = x.new_empty(*x.shape[:-1], rows)
        for start, stop in chunks:
            weight = _dequantized_rows(weight_int8, weight_scale, start, stop, dtype)
            y[..., start:stop] = F.linear(x, weight, None if bias is None else bias[start:stop])
        return y

    @staticmethod
    def backward(ctx, grad_y):
        weight_int8, weight_scale = ctx.saved_tensors
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            rows, cols = weight_int8.shape
            for start, stop in _row_chunks(rows, cols):
                weight = _dequantized_rows(weight_int8, weight_scale, start, stop, grad_y.dtype)
                part = grad_y[..., start:stop] @ weight
                grad_x = part if grad_x is None else grad_x.add_(part)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_y.sum(dim=0)
        return grad_x, None, None, grad_bias


class Int8Linear(nn.Module):
    """Drop-in ``nn.Linear`` replacement with LLM.int8() inference (arXiv:2208.07339).

    Stored (frozen buffers): ``weight`` int8 (out, in) and ``weight_scale`` float32 (out,),
    ``W ~= weight * weight_scale[:, None]``; ``bias`` stays a frozen parameter in the original
    dtype.

    Forward (any leading dims, output in the input's dtype): feature columns where any token
    has ``|x| >= threshold`` are multiplied in float32 with the dequantized weight columns, the
    rest as int8 x int8 -> int32 with per-token activation scales (``threshold = 0``: no
    outlier path). Unlike bitsandbytes, quantization is from float32 (not float16) and outlier
    columns are left out of the per-token absmax: outputs differ by rounding only (see tests).

    ``compute="dequantize"`` keeps the same storage but computes weight-only: the rows are
    dequantized to the compute dtype (bfloat16 under CPU autocast) for one float matmul, at
    float speed on CPUs, which have no fast int8 path for the outlier decomposition.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 threshold: float = DEFAULT_THRESHOLD, device=None, bias_dtype=torch.float32,
                 compute: str = "int8"):
        super().__init__()
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 (0 disables outliers), got {threshold}")
        check_choice(compute, INT8_COMPUTE, "compute")
        self.in_features, self.out_features = in_features, out_features
        self.threshold = float(threshold)
        self.compute = compute
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8,
                                                   device=device))
        self.register_buffer("weight_scale", torch.zeros(out_features, dtype=torch.float32,
                                                         device=device))
        self.bias = (nn.Parameter(torch.zeros(out_features, dtype=bias_dtype, device=device),
                                  requires_grad=False) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold: float = DEFAULT_THRESHOLD,
                    compute: str = "int8") -> Int8Linear:
        """Quantize a float ``nn.Linear`` (any float dtype) row-wise to int8."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected nn.Linear, got {type(linear).__name__}")
        weight = linear.weight.detach()
        bias = linear.bias
        layer = cls(linear.in_features, linear.out_features, bias=bias is not None,
                    threshold=threshold, device=weight.device,
                    bias_dtype=bias.dtype if bias is not None else torch.float32,
                    compute=compute)
        layer.weight, layer.weight_scale = _rowwise_int8(weight)  # replaces the zero buffers
        if bias is not None:
            layer.bias.data.copy_(bias.detach())
        return layer

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``weight * weight_scale[:, None]``, shape (out, in)."""
        return (self.weight.float() * self.weight_scale[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected input with last dim {self.in_features}, got "
                             f"{tuple(x.shape)}")
        leading = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        if self.compute == "dequantize":
            y = _DequantLinearFunction.apply(flat, self.weight, self.weight_scale, self.bias)
        else:
            y = _Int8LinearFunction.apply(flat, self.weight, self.weight_scale, self.bias,
                                          self.threshold)
        return y.reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, threshold={self.threshold}, "
                f"compute={self.compute}")
