"""Blockwise dynamic quantization (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
Quantization"), what 8-bit Adam does to its *optimizer states*: :func:`quantize_blockwise` /
:func:`dequantize_blockwise` reproduce ``bitsandbytes.functional``'s functions of those names.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from lacos_helpers.checks import check_int
from lacos_helpers.quantization.maps import _rounding_tables, _RoundingTables, dynamic_map_on

DEFAULT_BLOCK_SIZE = 4096
# Elements processed per step on CPU: the temporaries of one chunk stay in cache (L2/L3),
# which is what makes several PyTorch passes competitive with one pass of bitsandbytes' C
# loop (sizes measured by benchmarks/bench_quantization.py). On GPUs one chunk covers
# (almost) everything.
_CPU_QUANT_CHUNK_NUMEL = 1 << 18
_CPU_DEQUANT_CHUNK_NUMEL = 1 << 20
_GPU_CHUNK_NUMEL = 1 << 24
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


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
    return max(_GPU_CHUNK_NUMEL if device.type != "cpu" else cpu_numel, block_size)


def quantize_blockwise(
    x: torch.Tensor, block_size: int = DEFAULT_BLOCK_SIZE, code: torch.Tensor | None = None
) -> BlockwiseQuantState:
    """Blockwise 8-bit quantization of ``x`` (any shape; float32, float16 or bfloat16; finite).

    For each block ``b`` of ``block_size`` consecutive elements of ``x.reshape(-1)`` (any
    positive size; the last block may be shorter): ``absmax[b] = max |x|`` (float32) and every
    element ``v`` becomes the index of the code nearest to ``u = float32(v) / absmax[b]``
    (``code``: a sorted map of 2..256 values, default :func:`create_dynamic_map`).

    Rounding: the nearest code in exact real arithmetic, an exact tie goes to the lower code.
    An all-zero block has ``absmax = 0`` and the codes of the value nearest 0. bitsandbytes'
    CPU kernel rounds through a coarse lookup table and agrees on ~99.8% of the elements, with
    identical ``absmax``. NaN/inf values, a bad ``code`` or ``block_size`` raise.
    """
    block_size = check_int(block_size, "block_size")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"quantize_blockwise supports float32, float16 and bfloat16 tensors, "
                         f"got {x.dtype}")
    code = dynamic_map_on(str(x.device)) if code is None else _check_code(code, x.device)
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
    # float32 blocks are read as they are, others upcast (exactly) into the normalized buffer
    values = blocks if blocks.dtype == torch.float32 else normalized.copy_(blocks)
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
    """Inverse of :func:`quantize_blockwise`: ``code[codes] * absmax`` per block, computed in
    float32 (bit-identical to bitsandbytes for the same codes), of ``state.shape`` and
    ``state.dtype``. The gather reads two codes at a time (a uint16) from a 65536-entry table
    of value pairs, which halves the number of gathered elements."""
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
