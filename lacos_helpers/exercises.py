"""Checkers for the notebook exercises: each runs a learner's function on several inputs and
compares it with the package's implementation. ``[OK]`` on success, a hint on failure."""

from __future__ import annotations

from collections.abc import Callable

import torch


def _ok(name: str) -> bool:
    print(f"[OK] {name}")
    return True


def _inputs(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spiky = torch.randn(300, generator=g)
    spiky[7] = 40.0
    return [torch.randn(1000, generator=g), torch.randn(17, 33, generator=g) * 3, spiky,
            torch.zeros(64)]


def check_absmax_quantize(fn: Callable) -> bool:
    """Exercise 1.1: ``fn(x) -> (q, scale)`` with ``q`` int8 in [-127, 127] and
    ``x ~= q / scale`` where ``scale = 127 / max|x|``."""
    for x in _inputs():
        q, scale = fn(x)
        assert isinstance(q, torch.Tensor) and q.dtype == torch.int8, "q must be an int8 tensor"
        assert q.shape == x.shape, f"q has shape {tuple(q.shape)}, expected {tuple(x.shape)}"
        absmax = x.abs().max()
        expected_scale = 127.0 / absmax if absmax > 0 else torch.tensor(1.0)
        assert torch.isclose(torch.as_tensor(scale, dtype=torch.float32),
                             expected_scale.float(), rtol=1e-5), "scale should be 127 / max|x|"
        expected = torch.round(x * expected_scale).clamp(-127, 127).to(torch.int8)
        wrong = (q != expected).sum().item()
        assert wrong == 0, f"{wrong} values differ from round(x * scale): round, don't truncate"
    return _ok("Exercise 1.1: absmax quantization")


def check_dequantize_blockwise(fn: Callable) -> bool:
    """Exercise 1.2: ``fn(codes, absmax, code, block_size, shape) -> x`` (fp32) inverts
    :func:`lacos_helpers.quantization.quantize_blockwise`."""
    from lacos_helpers import quantization

    for x in _inputs(1):
        for block_size in (64, 256):
            state = quantization.quantize_blockwise(x.float(), block_size=block_size)
            got = fn(state.codes, state.absmax, state.code, state.block_size, state.shape)
            want = quantization.dequantize_blockwise(state).float()
            assert isinstance(got, torch.Tensor), "return a tensor"
            assert got.shape == want.shape, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            err = (got.float() - want).abs().max().item()
            assert err < 1e-6, (f"max difference {err:.3g} (block {block_size}): look up "
                                "code[codes], then multiply each block by its own absmax")
    return _ok("Exercise 1.2: blockwise dequantization")
