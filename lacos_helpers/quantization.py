"""8-bit quantization in plain PyTorch: the two schemes LACoS-BLOOM relies on.

* **Blockwise dynamic quantization** (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
  Quantization"): a flat tensor is cut into blocks of ``block_size`` values; each block is
  divided by its absolute maximum and every value is replaced by the index (``uint8``) of the
  nearest entry of a fixed 256-value map (the "dynamic" tree map, or a linear map).
  :func:`quantize_blockwise` / :func:`dequantize_blockwise` reproduce
  ``bitsandbytes.functional.quantize_blockwise`` / ``dequantize_blockwise``.
* **LLM.int8()** (Dettmers et al. 2022, arXiv:2208.07339): :class:`Int8Linear` keeps ``int8``
  weights with one scale per output row, quantizes activations per token and computes the
  few *outlier feature columns* (any ``|x| >= threshold``) in higher precision. It is the
  pure-PyTorch counterpart of ``bitsandbytes.nn.Linear8bitLt(has_fp16_weights=False)``.

:func:`quantize_model` swaps a model's ``nn.Linear`` layers for either implementation,
:func:`footprint` measures the result and :func:`bloom_memory_table` predicts the memory of the
public BLOOM checkpoints from their configurations alone.

Units: sizes in bytes unless the name says ``gb`` (1 GB = 1e9 bytes).
"""

from __future__ import annotations

import itertools
import math
import numbers
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOOM_CONFIGS",
    "QUANT_BACKENDS",
    "BlockwiseQuantState",
    "Int8Linear",
    "bloom_memory_table",
    "bloom_param_count",
    "create_dynamic_map",
    "create_linear_map",
    "dequantize_blockwise",
    "footprint",
    "format_footprint",
    "format_memory_table",
    "quantize_blockwise",
    "quantize_model",
]

DEFAULT_BLOCK_SIZE = 4096
DEFAULT_THRESHOLD = 6.0
# Elements processed per step on CPU: the temporaries of one chunk stay in cache (L2/L3),
# which is what makes several PyTorch passes competitive with one pass of bitsandbytes' C
# loop (sizes measured by benchmarks/bench_quantization.py). On GPUs one chunk covers
# (almost) everything.
_CPU_QUANT_CHUNK_NUMEL = 1 << 18
_CPU_DEQUANT_CHUNK_NUMEL = 1 << 20
_GPU_CHUNK_NUMEL = 1 << 24
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Quantization maps
# --------------------------------------------------------------------------------------------
def create_dynamic_map(signed: bool = True) -> torch.Tensor:
    """The 256-value dynamic (tree) quantization map of bitsandbytes, sorted ascending.

    Re-implements ``bitsandbytes.functional.create_dynamic_map(signed, max_exponent_bits=7,
    total_bits=8)`` (bitsandbytes 0.50, ``functional.py``), the data type of Dettmers 2015,
    "8-Bit Approximations for Parallelism in Deep Learning" (arXiv:1511.04561): decade
    ``i = 0..6`` spans ``[0.1, 1] * 10**(i - 6)`` and holds ``2**i`` (signed) or ``2**(i+1)``
    (unsigned) evenly spaced bin centres, so precision is relative rather than absolute;
    ``0`` and ``1`` are added, and the signed map mirrors every centre to negative values.
    The arithmetic (float32 ``linspace`` and centres, float32 scaling) follows bitsandbytes
    step by step, so the two maps are bit-identical.

    Returns: float32 tensor of shape (256,); signed range [-0.993, 1], unsigned [0, 1].
    """
    values: list[float] = [0.0, 1.0]
    for decade in range(7):
        n_edges = (2**decade if signed else 2 ** (decade + 1)) + 1
        edges = torch.linspace(0.1, 1.0, n_edges, dtype=torch.float32)
        centres = (edges[:-1] + edges[1:]) / 2.0
        scaled = (10 ** (decade - 6)) * centres  # float32 multiply, as bitsandbytes does
        values += scaled.tolist()
        if signed:
            values += (-(10 ** (decade - 6)) * centres).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


def create_linear_map(signed: bool = True) -> torch.Tensor:
    """Evenly spaced map (plain absmax quantization), for comparison with the dynamic map.

    Signed: the 255 values ``k / 127`` for ``k = -127..127`` (symmetric, exact 0; the int8
    grid of LLM.int8), so codes use 0..254. Unsigned: the 256 values ``k / 255``.
    bitsandbytes' ``create_linear_map(signed=True)`` instead pads ``linspace(-1, 1, 255)``
    with a second (near-)zero to reach 256 entries; the unsigned maps agree within 6e-8
    (bitsandbytes uses a float32 ``linspace``).

    Returns a float32 tensor of shape (255,) (signed) or (256,) (unsigned).
    """
    if signed:
        return torch.arange(-127, 128, dtype=torch.float64).div(127).float()
    return torch.arange(0, 256, dtype=torch.float64).div(255).float()


# --------------------------------------------------------------------------------------------
# Exact nearest-code rounding
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _RoundingTables:
    """Exact nearest-code rounding for one sorted code map (see :func:`_build_rounding_tables`).

    ``thresholds[i]`` (float32, len(code) - 1) is the smallest float32 whose nearest code is
    ``i + 1``; ``code_index(v) = #{i: thresholds[i] <= v}``. ``cell_base`` (uint8, 65536) and
    ``cell_threshold`` (float32, 65536) give the same count through a lookup on the top 16 bits
    of ``v``: ``cell_base[cell] + (v >= cell_threshold[cell])``. ``None`` when some cell holds
    two thresholds (only for unusual custom maps); the bucketize path is used then.
    """

    thresholds: torch.Tensor
    cell_base: torch.Tensor | None
    cell_threshold: torch.Tensor | None


_TABLE_CACHE: dict[tuple[str, bytes], _RoundingTables] = {}
_DYNAMIC_MAP_CACHE: dict[str, torch.Tensor] = {}


def _decision_thresholds(code: torch.Tensor) -> torch.Tensor:
    """Smallest float32 ``t_i`` that is strictly closer to ``code[i+1]`` than to ``code[i]``.

    Computed with exact rational midpoints, so rounding with these thresholds is exactly
    "nearest code in real arithmetic, ties to the lower code". Shape (len(code) - 1,).
    """
    values = code.double().tolist()  # float32 -> float64 is exact
    thresholds = []
    for low, high in itertools.pairwise(values):
        midpoint = (Fraction(low) + Fraction(high)) / 2
        t = torch.tensor(float(midpoint), dtype=torch.float32)
        up, down = torch.tensor(math.inf), torch.tensor(-math.inf)
        while Fraction(t.item()) <= midpoint:  # a tie (v == midpoint) stays with the lower code
            t = torch.nextafter(t, up)
        while Fraction(torch.nextafter(t, down).item()) > midpoint:
            t = torch.nextafter(t, down)
        thresholds.append(t.item())
    return torch.tensor(thresholds, dtype=torch.float32)


def _float32_cell_bounds() -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest float32 in each of the 65536 cells sharing their top 16 bits.

    Cells of NaN/inf bit patterns get bounds 0 (normalized values never land there).
    """
    cells = torch.arange(65536, dtype=torch.int64)
    low_bits = cells << 16
    high_bits = low_bits | 0xFFFF
    negative = cells >= 0x8000  # sign bit set: the magnitude grows with the bit pattern
    smallest = torch.where(negative, high_bits, low_bits)
    largest = torch.where(negative, low_bits, high_bits)

    def as_float32(bits: torch.Tensor) -> torch.Tensor:
        signed_bits = ((bits + 2**31) % 2**32 - 2**31).to(torch.int32)
        return signed_bits.view(torch.float32).clone()

    smallest, largest = as_float32(smallest), as_float32(largest)
    invalid = ~(torch.isfinite(smallest) & torch.isfinite(largest))
    smallest[invalid] = 0.0
    largest[invalid] = 0.0
    return smallest, largest


def _build_rounding_tables(code: torch.Tensor) -> _RoundingTables:
    """Two-level lookup for exact nearest-code rounding of float32 values.

    Level 1: the top 16 bits of a float32 (sign, exponent, 7 mantissa bits) select one of
    65536 cells, each a contiguous interval of relative width 2**-7; the logarithmic cells suit
    the logarithmic dynamic map. If a cell contains at most one decision threshold, then
    level 2 is one comparison: ``base + (v >= threshold)``. Both levels are gathers, which is
    what makes this faster than a binary search (``torch.bucketize``).
    """
    code = code.detach().to("cpu", torch.float32)
    thresholds = _decision_thresholds(code)
    smallest, largest = _float32_cell_bounds()
    count_at_smallest = torch.searchsorted(thresholds, smallest, right=True)
    count_at_largest = torch.searchsorted(thresholds, largest, right=True)
    thresholds_inside = count_at_largest - count_at_smallest
    if int(thresholds_inside.max()) > 1:
        return _RoundingTables(thresholds, None, None)
    inside_index = count_at_smallest.clamp(max=len(thresholds) - 1)
    cell_threshold = torch.where(
        thresholds_inside > 0, thresholds[inside_index], torch.tensor(math.inf)
    )
    return _RoundingTables(thresholds, count_at_smallest.to(torch.uint8), cell_threshold)


def _rounding_tables(code: torch.Tensor) -> _RoundingTables:
    """Cached :func:`_build_rounding_tables`, moved to ``code``'s device."""
    key = (str(code.device), code.detach().cpu().numpy().tobytes())
    if key not in _TABLE_CACHE:
        tables = _build_rounding_tables(code)
        _TABLE_CACHE[key] = _RoundingTables(
            *(None if t is None else t.to(code.device) for t in
              (tables.thresholds, tables.cell_base, tables.cell_threshold))
        )
    return _TABLE_CACHE[key]


def _default_code(device: torch.device) -> torch.Tensor:
    key = str(device)
    if key not in _DYNAMIC_MAP_CACHE:
        _DYNAMIC_MAP_CACHE[key] = create_dynamic_map(signed=True).to(device)
    return _DYNAMIC_MAP_CACHE[key]


# --------------------------------------------------------------------------------------------
# Blockwise quantization
# --------------------------------------------------------------------------------------------
@dataclass
class BlockwiseQuantState:
    """Result of :func:`quantize_blockwise`.

    Attributes:
        codes: uint8, shape (numel,): index into ``code`` of every element (flat, row-major).
        absmax: float32, shape (ceil(numel / block_size),): max |x| of each block.
        shape: original shape; dtype: original dtype.
        block_size: elements per block (the last block may be shorter).
        code: float32, shape (n_codes,), n_codes <= 256: the sorted quantization map.
    """

    codes: torch.Tensor
    absmax: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype
    block_size: int
    code: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized data: codes plus absmax (the shared map not counted)."""
        return self.codes.numel() * self.codes.element_size() + self.absmax.numel() * 4


def _check_block_size(block_size) -> int:
    """Any positive Python/NumPy integer; powers of two are *not* required (bitsandbytes'
    CUDA kernels only take 64..4096 powers of two, this implementation takes any size)."""
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size must be an int, got {type(block_size).__name__}")
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    return int(block_size)


def _check_float_input(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"quantize_blockwise supports float32, float16 and bfloat16 tensors, "
                         f"got {x.dtype}")


def _check_code(code: torch.Tensor, device: torch.device) -> torch.Tensor:
    if not isinstance(code, torch.Tensor) or code.dim() != 1 or not 2 <= code.numel() <= 256:
        raise ValueError("code must be a 1-D tensor of 2..256 values")
    if not code.is_floating_point():
        raise ValueError(f"code must be a float tensor, got {code.dtype}")
    code = code.detach().to(device=device, dtype=torch.float32).contiguous()
    if not torch.isfinite(code).all() or not bool((code[1:] > code[:-1]).all()):
        raise ValueError("code must hold finite float32 values in strictly increasing order")
    return code


def _block_chunks(numel: int, block_size: int, chunk_numel: int):
    """Yield ``(start, stop, first_block, n_blocks, block_len)`` covering ``numel`` elements:
    chunks of whole blocks, then the last partial block (if any) on its own."""
    full = numel - numel % block_size
    step = max(1, chunk_numel // block_size) * block_size
    for start in range(0, full, step):
        stop = min(start + step, full)
        yield start, stop, start // block_size, (stop - start) // block_size, block_size
    if full < numel:
        yield full, numel, full // block_size, 1, numel - full


def _chunk_numel(device: torch.device, block_size: int, cpu_numel: int) -> int:
    base = _GPU_CHUNK_NUMEL if device.type != "cpu" else cpu_numel
    return max(base, block_size)


def quantize_blockwise(
    x: torch.Tensor, block_size: int = DEFAULT_BLOCK_SIZE, code: torch.Tensor | None = None
) -> BlockwiseQuantState:
    """Blockwise 8-bit quantization of ``x`` (any shape; float32, float16 or bfloat16).

    For each block ``b`` of ``block_size`` consecutive elements of ``x.reshape(-1)`` (the last
    block may be shorter): ``absmax[b] = max |x|`` (float32) and every element ``v`` becomes
    the index of the code nearest to its normalized value ``u = float32(v) / absmax[b]``
    (float32 division, so ``|u| <= 1``).

    Rounding rule: the nearest code in exact real arithmetic; an exact tie (``u`` on the
    midpoint of two codes) goes to the lower code. An all-zero block has ``absmax = 0`` and
    codes of the value nearest 0 (no NaN; bitsandbytes stores code 0 there, both dequantize
    to 0). Elements match bitsandbytes' CPU kernel for ~99.8% of elements (it rounds through
    a coarse lookup table and sometimes misses the nearest code) with identical ``absmax``.

    Args:
        x: tensor to quantize; must be finite.
        block_size: positive int, any value (powers of two are not required).
        code: sorted map of 2..256 values (default :func:`create_dynamic_map`).

    Raises:
        ValueError: non-float dtype, NaN/inf values, bad ``code`` or non-positive block size.
        TypeError: ``block_size`` not an int.
    """
    block_size = _check_block_size(block_size)
    _check_float_input(x)
    code = _default_code(x.device) if code is None else _check_code(code, x.device)
    tables = _rounding_tables(code)

    flat = x.detach().reshape(-1)
    numel = flat.numel()
    codes = torch.empty(numel, dtype=torch.uint8, device=x.device)
    absmax = torch.empty(-(-numel // block_size), dtype=torch.float32, device=x.device)
    chunk_numel = _chunk_numel(x.device, block_size, _CPU_QUANT_CHUNK_NUMEL)
    scratch = _QuantizeScratch(min(chunk_numel, numel), x.device)
    for start, stop, first_block, n_blocks, block_len in _block_chunks(
        numel, block_size, chunk_numel
    ):
        _quantize_chunk(
            flat[start:stop].view(n_blocks, block_len),
            codes[start:stop],
            absmax[first_block:first_block + n_blocks],
            tables,
            scratch,
        )
    if not bool(torch.isfinite(absmax).all()):
        bad_block = int((~torch.isfinite(absmax)).nonzero()[0])
        raise ValueError(f"cannot quantize NaN or inf values (first in block {bad_block})")
    return BlockwiseQuantState(codes, absmax, x.shape, x.dtype, block_size, code)


class _QuantizeScratch:
    """Reusable per-call buffers for one chunk (avoids an allocation per chunk)."""

    def __init__(self, numel: int, device: torch.device):
        self.normalized = torch.empty(numel, dtype=torch.float32, device=device)
        self.cell = torch.empty(numel, dtype=torch.int32, device=device)
        self.threshold = torch.empty(numel, dtype=torch.float32, device=device)
        self.above = torch.empty(numel, dtype=torch.bool, device=device)


# Index of the 16-bit half of a float32 that holds sign, exponent and top mantissa bits.
_HIGH_HALF = 1 if sys.byteorder == "little" else 0


def _top16_bits(values: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Top 16 bits of float32 ``values`` as int32 in [0, 65535] (the lookup cell)."""
    if values.device.type == "cpu":  # one strided copy of the high uint16 halves
        return out.copy_(values.view(torch.uint16)[_HIGH_HALF::2])
    torch.bitwise_right_shift(values.view(torch.int32), 16, out=out)  # portable path
    return out.bitwise_and_(0xFFFF)


def _uint16_pairs(codes: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Consecutive uint8 pairs of ``codes`` (even length) read as uint16, into int32 ``out``."""
    if codes.device.type == "cpu":
        return out.copy_(codes.view(torch.uint16))
    out.copy_(codes.view(torch.int16))
    return out.bitwise_and_(0xFFFF)


def _quantize_chunk(
    blocks: torch.Tensor,
    codes_out: torch.Tensor,
    absmax_out: torch.Tensor,
    tables: _RoundingTables,
    scratch: _QuantizeScratch,
) -> None:
    """Quantize ``blocks`` (n_blocks, block_len) into ``codes_out`` (flat uint8) and
    ``absmax_out`` (n_blocks,) in place."""
    numel = blocks.numel()
    normalized = scratch.normalized[:numel].view_as(blocks)
    threshold = scratch.threshold[:numel]
    if blocks.dtype == torch.float32:
        values = blocks
    else:
        normalized.copy_(blocks)  # exact upcast; normalized in place below
        values = normalized
    torch.abs(values, out=threshold.view_as(blocks))  # scratch use of the threshold buffer
    torch.amax(threshold.view_as(blocks), dim=1, out=absmax_out)
    divisor = torch.where(absmax_out > 0, absmax_out, torch.ones_like(absmax_out))
    torch.div(values, divisor[:, None], out=normalized)
    normalized = normalized.view(-1)

    if tables.cell_base is None:  # custom map with close codes: binary search
        codes_out.copy_(torch.bucketize(normalized, tables.thresholds, right=True))
        return
    cell = scratch.cell[:numel]
    _top16_bits(normalized, out=cell)
    torch.index_select(tables.cell_base, 0, cell, out=codes_out)
    torch.index_select(tables.cell_threshold, 0, cell, out=threshold)
    torch.ge(normalized, threshold, out=scratch.above[:numel])
    codes_out.add_(scratch.above[:numel])


def _code_pair_table(code: torch.Tensor) -> torch.Tensor:
    """(65536,) int64 table whose entry ``i`` holds the float32 pair ``(code[a], code[b])``
    for the two uint8 codes ``a, b`` that read as the uint16 ``i`` in memory order."""
    key = (str(code.device), code.detach().cpu().numpy().tobytes())
    if key not in _PAIR_CACHE:
        full = torch.zeros(256, dtype=torch.float32, device=code.device)
        full[: code.numel()] = code
        order = "xy" if sys.byteorder == "little" else "ij"  # which byte is the low one
        first, second = torch.meshgrid(full, full, indexing=order)
        pairs = torch.stack([first, second], dim=-1).reshape(65536, 2).contiguous()
        _PAIR_CACHE[key] = pairs.view(torch.int64).view(-1)
    return _PAIR_CACHE[key]


_PAIR_CACHE: dict[tuple[str, bytes], torch.Tensor] = {}


def dequantize_blockwise(state: BlockwiseQuantState) -> torch.Tensor:
    """Inverse of :func:`quantize_blockwise`: ``code[codes] * absmax`` per block.

    Computed in float32 and cast to ``state.dtype`` (bit-identical to bitsandbytes for the
    same codes). The gather reads two codes at a time (a uint16) from a 65536-entry table of
    value pairs, which halves the number of gathered elements. Returns a tensor of
    ``state.shape`` and ``state.dtype``.
    """
    if not isinstance(state, BlockwiseQuantState):
        raise TypeError(f"expected a BlockwiseQuantState, got {type(state).__name__}")
    codes, absmax = state.codes.reshape(-1), state.absmax
    code = state.code.to(device=codes.device, dtype=torch.float32)
    numel = codes.numel()
    if codes.dtype != torch.uint8 or absmax.numel() != -(-numel // state.block_size):
        raise ValueError("inconsistent BlockwiseQuantState (codes must be uint8 and absmax hold "
                         "one value per block)")
    out = torch.empty(numel, dtype=state.dtype, device=codes.device)
    chunk_numel = _chunk_numel(codes.device, state.block_size, _CPU_DEQUANT_CHUNK_NUMEL)
    buffer_numel = min(chunk_numel, numel)
    index = torch.empty(buffer_numel, dtype=torch.int32, device=codes.device)
    values = torch.empty(buffer_numel, dtype=torch.float32, device=codes.device)
    pairs = _code_pair_table(code)
    for start, stop, first_block, n_blocks, block_len in _block_chunks(
        numel, state.block_size, chunk_numel
    ):
        n = stop - start
        if (codes.storage_offset() + start) % 2 == 0 and n % 2 == 0:  # two codes per gather
            _uint16_pairs(codes[start:stop], out=index[: n // 2])
            torch.index_select(pairs, 0, index[: n // 2], out=values[:n].view(torch.int64))
        else:
            index[:n].copy_(codes[start:stop])
            torch.index_select(code, 0, index[:n], out=values[:n])
        scale = absmax[first_block:first_block + n_blocks, None]
        torch.mul(values[:n].view(n_blocks, block_len), scale,
                  out=out[start:stop].view(n_blocks, block_len))
    return out.view(state.shape)


# --------------------------------------------------------------------------------------------
# LLM.int8() linear layer
# --------------------------------------------------------------------------------------------
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

    Uses ``torch._int_mm`` (VNNI on CPU, IMMA on GPU); otherwise float32 matmuls over slices
    of k <= 1024, each exact since |partial sum| <= 1024 * 127**2 < 2**24.
    """
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is not None:
        try:
            return int_mm(a, b)
        except (RuntimeError, NotImplementedError):
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
    """LLM.int8() product ``x @ W.T + bias`` for ``x`` (tokens, in); float32 result.

    1. outlier columns (any |x| >= threshold) are taken out of the int8 product;
    2. remaining activations: int8 per token (row), ``scale = absmax_row / 127``;
    3. int32 product rescaled by ``scale_x[:, None] * scale_w[None, :]``;
    4. outlier columns: float32 product with the dequantized weight columns.
    """
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


class _DequantLinearFunction(torch.autograd.Function):
    """Weight-only 8-bit: ``y = x @ (weight * scale).T + bias`` with the int8 rows dequantized
    to the input dtype for this call only; backward re-dequantizes instead of keeping the
    float weight alive."""

    @staticmethod
    def forward(ctx, x, weight_int8, weight_scale, bias):
        ctx.save_for_backward(weight_int8, weight_scale)
        ctx.has_bias = bias is not None
        weight = weight_int8.to(x.dtype) * weight_scale[:, None].to(x.dtype)
        return F.linear(x, weight, None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad_y):
        weight_int8, weight_scale = ctx.saved_tensors
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            weight = weight_int8.to(grad_y.dtype) * weight_scale[:, None].to(grad_y.dtype)
            grad_x = grad_y @ weight
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_y.sum(dim=0)
        return grad_x, None, None, grad_bias


INT8_COMPUTE = ("int8", "dequantize")


class Int8Linear(nn.Module):
    """Drop-in ``nn.Linear`` replacement with LLM.int8() inference (arXiv:2208.07339).

    Stored (frozen buffers): ``weight`` int8 (out, in) and ``weight_scale`` float32 (out,),
    ``W ~= weight * weight_scale[:, None]`` with ``weight_scale = absmax_row / 127``. ``bias``
    stays a frozen parameter in the original dtype.

    Forward (any leading dims, output in the input's dtype): feature columns where any token
    has ``|x| >= threshold`` are multiplied in float32 with the *dequantized* weight columns
    (like bitsandbytes, only int8 weights are kept), the rest as int8 x int8 -> int32 with
    per-token activation scales. ``threshold = 0`` disables the outlier path.

    Differences from ``bitsandbytes.nn.Linear8bitLt(has_fp16_weights=False)``: bitsandbytes
    rounds weights and activations to float16 before quantizing and lets the below-threshold
    values of outlier columns enter the per-token absmax; here quantization is from float32
    and outlier columns are excluded entirely. Outputs differ by rounding only (see tests).

    ``compute="dequantize"`` keeps the same int8 storage but computes weight-only: each call
    dequantizes the rows to the input's dtype and runs one float matmul (no activation
    quantization). On CPUs, which have no fast int8 GEMM path for the outlier decomposition,
    this runs at float speed; it is what the ``cpu`` profile uses.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 threshold: float = DEFAULT_THRESHOLD, device=None, bias_dtype=torch.float32,
                 compute: str = "int8"):
        super().__init__()
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 (0 disables outliers), got {threshold}")
        if compute not in INT8_COMPUTE:
            raise ValueError(f"unknown compute {compute!r}; choose one of {INT8_COMPUTE}")
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
        weight_int8, weight_scale = _rowwise_int8(weight)
        layer.weight.copy_(weight_int8)
        layer.weight_scale.copy_(weight_scale)
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


# --------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------
QUANT_BACKENDS = ("lacos", "bitsandbytes")


def _bitsandbytes_linear(linear: nn.Linear, threshold: float) -> nn.Module:
    """``bnb.nn.Linear8bitLt(has_fp16_weights=False)`` holding ``linear``'s weights.

    Int8Params quantize when moved from the CPU to a device, so the weights are placed on the
    CPU first and then moved (``.to("cpu")`` quantizes too).
    """
    import bitsandbytes as bnb

    device = linear.weight.device
    layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                                bias=linear.bias is not None, has_fp16_weights=False,
                                threshold=threshold)
    layer.weight = bnb.nn.Int8Params(linear.weight.detach().to("cpu", copy=True),
                                     requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.detach().to("cpu", copy=True), requires_grad=False)
    return layer.to(device)


def _is_skipped(name: str, skip: Iterable[str]) -> bool:
    """True if a pattern equals the full module name or one of its dotted components."""
    parts = set(name.split("."))
    return any(pattern == name or pattern in parts for pattern in skip)


def quantize_model(model: nn.Module, backend: str = "lacos", skip: Iterable[str] = ("lm_head",),
                   threshold: float = DEFAULT_THRESHOLD, compute: str = "int8") -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` in place by an 8-bit LLM.int8() layer.

    Args:
        backend: ``"lacos"`` (:class:`Int8Linear`) or ``"bitsandbytes"`` (``Linear8bitLt``).
        skip: module names (full dotted name or one component, e.g. ``"lm_head"``) kept as is.
        threshold: outlier threshold for activations (0 disables the outlier path).
        compute: ``"int8"`` (LLM.int8 matmul) or ``"dequantize"`` (weight-only: same int8
            storage, float matmul; ``lacos`` backend only).

    Returns the same model; the replaced names are listed in
    ``model.lacos_quantization["replaced"]`` (BLOOM: query_key_value, dense, dense_h_to_4h,
    dense_4h_to_h of every block).
    """
    if backend not in QUANT_BACKENDS:
        raise ValueError(f"unknown quantization backend {backend!r}; choose one of "
                         f"{QUANT_BACKENDS}")
    if compute not in INT8_COMPUTE:
        raise ValueError(f"unknown compute {compute!r}; choose one of {INT8_COMPUTE}")
    if compute != "int8" and backend != "lacos":
        raise ValueError(f"compute={compute!r} needs backend='lacos'")
    skip = tuple(skip)
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Linear and not _is_skipped(name, skip)]
    for name, linear in targets:
        if backend == "lacos":
            replacement = Int8Linear.from_linear(linear, threshold=threshold, compute=compute)
        else:
            replacement = _bitsandbytes_linear(linear, threshold)
        replacement.train(linear.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
    model.lacos_quantization = {"backend": backend, "threshold": threshold, "compute": compute,
                                "replaced": [name for name, _ in targets]}
    return model


def _stored_tensors(model: nn.Module) -> Iterable[torch.Tensor]:
    """Parameters, buffers and bitsandbytes' row scales (``SCB``, kept outside both)."""
    yield from model.parameters()
    yield from model.buffers()
    for module in model.modules():
        for holder in (getattr(module, "weight", None), getattr(module, "state", None)):
            scb = getattr(holder, "SCB", None)
            if isinstance(scb, torch.Tensor):
                yield scb


def footprint(model: nn.Module) -> dict[str, int]:
    """Bytes held by ``model`` per dtype (parameters + buffers, shared tensors counted once).

    Returns e.g. ``{"torch.float32": 1234, "torch.int8": 567, "total": 1801}``.
    """
    seen: set[tuple] = set()
    sizes: dict[str, int] = {}
    for tensor in _stored_tensors(model):
        key = (tensor.data_ptr(), tensor.numel(), tensor.dtype) if tensor.data_ptr() else id(tensor)
        if key in seen:
            continue
        seen.add(key)
        sizes[str(tensor.dtype)] = sizes.get(str(tensor.dtype), 0) + (
            tensor.numel() * tensor.element_size())
    sizes = dict(sorted(sizes.items()))
    sizes["total"] = sum(sizes.values())
    return sizes


def _format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_footprint(sizes: dict[str, int]) -> str:
    """One line per dtype, e.g. ``torch.int8   1.05 MB  (62.1%)``, then the total."""
    total = sizes["total"] or 1
    lines = [f"{dtype:<16}{_format_bytes(n):>12}  ({100 * n / total:5.1f}%)"
             for dtype, n in sizes.items() if dtype != "total"]
    lines.append(f"{'total':<16}{_format_bytes(sizes['total']):>12}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# BLOOM memory from configurations
# --------------------------------------------------------------------------------------------
BLOOM_VOCAB_SIZE = 250880
# Public BloomConfig values of bigscience/bloom-*: (hidden_size, n_layer, n_head).
BLOOM_CONFIGS = {
    "560m": (1024, 24, 16),
    "1b1": (1536, 24, 16),
    "1b7": (2048, 24, 16),
    "3b": (2560, 30, 32),
    "7b1": (4096, 30, 32),
    "176b": (14336, 70, 112),
}
_GB = 1e9


def bloom_param_count(hidden_size: int, n_layer: int,
                      vocab_size: int = BLOOM_VOCAB_SIZE) -> dict[str, int]:
    """Exact parameter counts of BLOOM (``BloomForCausalLM``, lm_head tied to embeddings).

    Embeddings ``V*h`` + embedding LayerNorm ``2h``; per block: 2 LayerNorms (``4h``),
    query_key_value ``3h*h + 3h``, dense ``h*h + h``, dense_h_to_4h ``4h*h + 4h``,
    dense_4h_to_h ``h*4h + h``; final LayerNorm ``2h``.

    Returns ``total``, ``linear_weights`` (the matrices LLM.int8 quantizes, ``12 h^2`` per
    block), ``linear_rows`` (their output rows = fp32 scales, ``9h`` per block) and ``other``
    (embeddings, LayerNorms, biases).
    """
    h = hidden_size
    linear_weights = n_layer * 12 * h * h
    per_block_other = 4 * h + (3 * h + h + 4 * h + h)  # LayerNorms + biases
    other = vocab_size * h + 2 * h + n_layer * per_block_other + 2 * h
    return {"total": linear_weights + other, "linear_weights": linear_weights,
            "linear_rows": n_layer * 9 * h, "other": other}


def _blockwise_absmax_count(hidden_size: int, n_layer: int, block_size: int) -> int:
    """Number of absmax values when each block's 4 weight matrices are quantized blockwise."""
    h = hidden_size
    per_block = sum(-(-numel // block_size) for numel in (3 * h * h, h * h, 4 * h * h,
                                                          4 * h * h))
    return n_layer * per_block


def bloom_memory_table(sizes: Iterable[str] = tuple(BLOOM_CONFIGS),
                       block_size: int = DEFAULT_BLOCK_SIZE) -> list[dict]:
    """Weight memory of the public BLOOM checkpoints, from their configs (no download).

    int8 rule (LLM.int8 / ``load_in_8bit``): Linear weights int8 + one float32 scale per output
    row; embeddings (= tied lm_head), LayerNorms and biases stay float16. For comparison,
    ``int8_blockwise_gb`` stores the same weights blockwise (one float32 absmax per
    ``block_size`` values). Weights only: no activations, KV cache or optimizer state.

    Returns one dict per size: model, hidden_size, n_layer, n_head, params,
    params_int8 (quantized weights), fp32_gb, fp16_gb, int8_gb, int8_blockwise_gb,
    int8_bytes_per_param (GB = 1e9 bytes).
    """
    rows = []
    for size in sizes:
        if size not in BLOOM_CONFIGS:
            raise ValueError(f"unknown BLOOM size {size!r}; known: {tuple(BLOOM_CONFIGS)}")
        hidden, n_layer, n_head = BLOOM_CONFIGS[size]
        counts = bloom_param_count(hidden, n_layer)
        fp16_rest = 2 * counts["other"]
        int8_bytes = counts["linear_weights"] + 4 * counts["linear_rows"] + fp16_rest
        blockwise_bytes = (counts["linear_weights"]
                           + 4 * _blockwise_absmax_count(hidden, n_layer, block_size) + fp16_rest)
        rows.append({
            "model": f"bloom-{size}",
            "hidden_size": hidden,
            "n_layer": n_layer,
            "n_head": n_head,
            "params": counts["total"],
            "params_int8": counts["linear_weights"],
            "fp32_gb": 4 * counts["total"] / _GB,
            "fp16_gb": 2 * counts["total"] / _GB,
            "int8_gb": int8_bytes / _GB,
            "int8_blockwise_gb": blockwise_bytes / _GB,
            "int8_bytes_per_param": int8_bytes / counts["total"],
        })
    return rows


def format_memory_table(rows: list[dict]) -> str:
    """Markdown table of :func:`bloom_memory_table` rows."""
    header = ("| model | params | fp32 GB | fp16 GB | int8 GB | int8 blockwise GB | "
              "int8 bytes/param |\n|---|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r['model']} | {r['params'] / 1e9:.3f} B | {r['fp32_gb']:.2f} | "
             f"{r['fp16_gb']:.2f} | {r['int8_gb']:.2f} | {r['int8_blockwise_gb']:.2f} | "
             f"{r['int8_bytes_per_param']:.3f} |" for r in rows]
    return "\n".join([header, *lines])
