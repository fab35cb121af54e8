"""Blockwise 8-bit quantization: lacos_helpers (pure PyTorch) vs bitsandbytes, same tensor.

Times quantize and dequantize of one float32 tensor (default 64M elements, block 4096) on the
CPU, and on CUDA when available. The two implementations run interleaved (alternating which
goes first) and the best of ``--repeats`` runs is kept, so that load from other processes hits
both alike. Prints throughput (input bytes / time: the float32 tensor for quantize, codes +
absmax for dequantize), the time ratio ours / bitsandbytes (<= 1: we are at least as fast),
code agreement and reconstruction errors.

    python benchmarks/bench_quantization.py                 # 64M elements
    python benchmarks/bench_quantization.py --numel 4000000 --repeats 5 --naive
"""

from __future__ import annotations

import argparse
import logging

import torch

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

import bitsandbytes.functional as bnbF

from lacos_helpers import quantization as Q

from _common import benchmark_devices, timed


def best_of_interleaved(candidates: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Best time per candidate; each round runs all of them, in rotating order."""
    names = list(candidates)
    best = dict.fromkeys(names, float("inf"))
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, _ = timed(candidates[name], device)
            best[name] = min(best[name], seconds)
    return best


def naive_quantize(x: torch.Tensor, block_size: int, code: torch.Tensor) -> torch.Tensor:
    """Reference baseline: binary search (torch.bucketize) over the 255 code midpoints."""
    midpoints = (code[1:] + code[:-1]) / 2
    blocks = x.reshape(-1)[: x.numel() - x.numel() % block_size].view(-1, block_size)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    return torch.bucketize(blocks / absmax, midpoints).to(torch.uint8)


def accuracy_report(x: torch.Tensor, block_size: int) -> str:
    ours = Q.quantize_blockwise(x, block_size)
    codes, theirs = bnbF.quantize_blockwise(x, blocksize=block_size)
    agreement = (ours.codes == codes.reshape(-1)).float().mean().item()
    sample = slice(0, min(x.numel(), 1 << 20))
    absmax = ours.absmax.repeat_interleave(block_size)[sample]
    u = x.reshape(-1)[sample].float() / torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    nearest = torch.cat([(part.double()[:, None] - ours.code.double()[None, :]).abs().argmin(1)
                         for part in u.split(1 << 15)])
    ours_exact = (nearest == ours.codes[sample].long()).float().mean().item()
    bnb_exact = (nearest == codes.reshape(-1)[sample].long()).float().mean().item()
    ours_err = (Q.dequantize_blockwise(ours) - x).abs()
    bnb_err = (bnbF.dequantize_blockwise(codes, theirs) - x).abs()
    return (f"  absmax identical: {torch.equal(ours.absmax, theirs.absmax)}; codes identical: "
            f"{100 * agreement:.3f}%\n"
            f"  exact nearest code (first {u.numel():,} elements): ours {100 * ours_exact:.3f}%, "
            f"bitsandbytes {100 * bnb_exact:.3f}%\n"
            f"  |dequantized - x|: max ours {ours_err.max():.5f} / bnb {bnb_err.max():.5f}, "
            f"mean ours {ours_err.mean():.6f} / bnb {bnb_err.mean():.6f}")


def bench_device(device: torch.device, numel: int, block_size: int, repeats: int,
                 naive: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(numel, device=device)
    code = bnbF.create_dynamic_map().to(device)
    ours_state = Q.quantize_blockwise(x, block_size)  # also warms caches and lookup tables
    bnb_codes, bnb_state = bnbF.quantize_blockwise(x, code=code, blocksize=block_size)

    quantize = {"ours": lambda: Q.quantize_blockwise(x, block_size),
                "bitsandbytes": lambda: bnbF.quantize_blockwise(x, code=code,
                                                                blocksize=block_size)}
    if naive:
        quantize["naive bucketize"] = lambda: naive_quantize(x, block_size, code)
    dequantize = {"ours": lambda: Q.dequantize_blockwise(ours_state),
                  "bitsandbytes": lambda: bnbF.dequantize_blockwise(bnb_codes, bnb_state)}
    q_times = best_of_interleaved(quantize, repeats, device)
    d_times = best_of_interleaved(dequantize, repeats, device)

    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"\n== {device.type}{threads}: {numel:,} float32 elements, block {block_size}, "
          f"best of {repeats} interleaved ==")
    codes_bytes = numel + 4 * ours_state.absmax.numel()
    for label, times, in_bytes in (("quantize", q_times, 4 * numel),
                                   ("dequantize", d_times, codes_bytes)):
        for name, seconds in times.items():
            ratio = seconds / times["bitsandbytes"]
            print(f"  {label:<10} {name:<16} {1e3 * seconds:9.1f} ms  "
                  f"{in_bytes / seconds / 1e9:6.2f} GB/s  time / bitsandbytes {ratio:5.2f}")
    q_ratio = q_times['ours'] / q_times['bitsandbytes']
    print(f"  ratio ours / bitsandbytes (time): quantize {q_ratio:.2f}"
          f", dequantize {d_times['ours'] / d_times['bitsandbytes']:.2f}")
    print(accuracy_report(x, block_size))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=1 << 26, help="elements (default 64M)")
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7, help="best of N interleaved runs")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    parser.add_argument("--naive", action="store_true",
                        help="also time a torch.bucketize baseline (quantize only)")
    args = parser.parse_args(argv)
    for device in benchmark_devices(args.device):
        bench_device(device, args.numel, args.block_size, args.repeats, args.naive)


if __name__ == "__main__":
    main()
