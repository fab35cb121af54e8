"""Quantization maps: the 256-value dynamic (tree) map of bitsandbytes, a linear map for
comparison, and exact nearest-code rounding tables for any sorted map."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import torch


def create_dynamic_map(signed: bool = True) -> torch.Tensor:
    """The 256-value dynamic (tree) quantization map of bitsandbytes, sorted ascending.

    Re-implements ``bitsandbytes.functional.create_dynamic_map(signed, max_exponent_bits=7,
    total_bits=8)`` (Dettmers 2015, arXiv:1511.04561) bit for bit: decade ``i = 0..6`` spans
    ``[0.1, 1] * 10**(i - 6)`` with ``2**i`` (signed) or ``2**(i+1)`` (unsigned) evenly spaced
    bin centres, so precision is relative; ``0`` and ``1`` are added and the signed map mirrors
    every centre. Returns float32 (256,); signed range [-0.993, 1], unsigned [0, 1].
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
    """Evenly spaced map (plain absmax quantization), for comparison with the dynamic map:
    signed, the 255 values ``k / 127`` for ``k = -127..127`` (the int8 grid of LLM.int8, exact
    0; bitsandbytes pads ``linspace(-1, 1, 255)`` with a second near-zero to 256); unsigned,
    the 256 values ``k / 255``. Float32."""
    if signed:
        return torch.arange(-127, 128, dtype=torch.float64).div(127).float()
    return torch.arange(0, 256, dtype=torch.float64).div(255).float()


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
    bits = torch.arange(65536, dtype=torch.int64) << 16
    ends = torch.stack([bits, bits | 0xFFFF])  # the cell's two end bit patterns
    ends = ((ends + 2**31) % 2**32 - 2**31).to(torch.int32).view(torch.float32)
    ends = torch.where(torch.isfinite(ends).all(dim=0), ends, 0.0)
    return ends.amin(dim=0), ends.amax(dim=0)


def _build_rounding_tables(code: torch.Tensor) -> _RoundingTables:
    """Two-level lookup for exact nearest-code rounding of float32 values, on ``code``'s device:
    the top 16 bits of a float32 (sign, exponent, 7 mantissa bits) select one of 65536 cells of
    relative width 2**-7 (logarithmic, like the dynamic map); a cell holding at most one decision
    threshold then needs one comparison, ``base + (v >= threshold)``. Two gathers are faster
    than a binary search (``torch.bucketize``)."""
    device = code.device
    thresholds = _decision_thresholds(code.detach().to("cpu", torch.float32))
    smallest, largest = _float32_cell_bounds()
    count_at_smallest = torch.searchsorted(thresholds, smallest, right=True)
    count_at_largest = torch.searchsorted(thresholds, largest, right=True)
    thresholds_inside = count_at_largest - count_at_smallest
    if int(thresholds_inside.max()) > 1:
        return _RoundingTables(thresholds.to(device), None, None)
    inside_index = count_at_smallest.clamp(max=len(thresholds) - 1)
    cell_threshold = torch.where(
        thresholds_inside > 0, thresholds[inside_index], torch.tensor(math.inf)
    )
    return _RoundingTables(thresholds.to(device), count_at_smallest.to(device, torch.uint8),
                           cell_threshold.to(device))


def _rounding_tables(code: torch.Tensor) -> _RoundingTables:
    """Cached :func:`_build_rounding_tables`."""
    key = (str(code.device), code.detach().cpu().numpy().tobytes())
    if key not in _TABLE_CACHE:
        _TABLE_CACHE[key] = _build_rounding_tables(code)
    return _TABLE_CACHE[key]


@functools.cache
def dynamic_map_on(device: str, signed: bool = True) -> torch.Tensor:
    """Cached :func:`create_dynamic_map` on ``device`` (blockwise quantization, 8-bit Adam)."""
    return create_dynamic_map(signed).to(device)
