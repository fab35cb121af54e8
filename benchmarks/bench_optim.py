"""8-bit Adam: lacos_helpers (pure PyTorch) vs bitsandbytes' Adam8bit vs torch's AdamW.

One run, same parameters and gradients for all three (default 16M float32 parameters in 4
tensors of 2048 x 2048; CPU, or CUDA with ``--device cuda``). Each optimizer takes one
warm-up step (which creates its state), then the steps run interleaved (rotating which goes
first) and the best of ``--repeats`` is kept, so that load from other processes hits all
alike. Prints the step time, the bytes its state holds per parameter and both as ratios to
AdamW, plus the time ratio ours / bitsandbytes.

    python benchmarks/bench_optim.py                        # 16M parameters
    python benchmarks/bench_optim.py --rows 1024 --tensors 2 --repeats 3
"""

from __future__ import annotations

import argparse
import logging

import torch

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

from lacos_helpers.optim import make_optimizer, state_bytes_per_param

from _common import benchmark_devices, timed

NAMES = ("adamw", "bnb-adam8bit", "adam8bit")


def make_runs(n_tensors: int, rows: int, device: torch.device) -> dict:
    """One copy of the same parameters (and gradients) per optimizer, after a warm-up step."""
    torch.manual_seed(0)
    values = [torch.randn(rows, rows, device=device) * 0.02 for _ in range(n_tensors)]
    grads = [torch.randn(rows, rows, device=device) * 1e-3 for _ in range(n_tensors)]
    runs = {}
    for name in NAMES:
        params = [torch.nn.Parameter(v.clone()) for v in values]
        for param, grad in zip(params, grads):
            param.grad = grad.clone()
        optimizer = make_optimizer(name, params, lr=1e-4)
        optimizer.step()  # creates the state (and our rounding tables)
        runs[name] = optimizer
    return runs


def best_of_interleaved(runs: dict, repeats: int, device: torch.device) -> dict[str, float]:
    names = list(runs)
    best = dict.fromkeys(names, float("inf"))
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            best[name] = min(best[name], timed(runs[name].step, device)[0])
    return best


def bench_device(device: torch.device, n_tensors: int, rows: int, repeats: int) -> None:
    runs = make_runs(n_tensors, rows, device)
    times = best_of_interleaved(runs, repeats, device)
    n_params = n_tensors * rows * rows
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"\n== {device.type}{threads}: {n_params:,} parameters ({n_tensors} x {rows} x "
          f"{rows}), best of {repeats} interleaved steps ==")
    print(f"  {'optimizer':<14} {'step ms':>9} {'x AdamW':>8} {'state B/param':>14} "
          f"{'x AdamW':>8}")
    bytes_per_param = {name: state_bytes_per_param(opt) for name, opt in runs.items()}
    for name in NAMES:
        print(f"  {name:<14} {1e3 * times[name]:9.1f} {times[name] / times['adamw']:8.2f} "
              f"{bytes_per_param[name]:14.3f} "
              f"{bytes_per_param[name] / bytes_per_param['adamw']:8.3f}")
    print(f"  ratio ours / bitsandbytes: step time "
          f"{times['adam8bit'] / times['bnb-adam8bit']:.2f}, state bytes "
          f"{bytes_per_param['adam8bit'] / bytes_per_param['bnb-adam8bit']:.3f}")
    ours, theirs = runs["adam8bit"], runs["bnb-adam8bit"]
    gaps = [(a - b).abs().max().item() for a, b in zip(ours.param_groups[0]["params"],
                                                      theirs.param_groups[0]["params"])]
    print(f"  after {repeats + 1} identical steps: max |param ours - bnb| {max(gaps):.2e} "
          f"(lr 1e-4)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=4, help="parameter tensors (default 4)")
    parser.add_argument("--rows", type=int, default=2048,
                        help="each tensor is rows x rows (default 2048: 4M parameters)")
    parser.add_argument("--repeats", type=int, default=5, help="best of N interleaved steps")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    for device in benchmark_devices(args.device):
        bench_device(device, args.tensors, args.rows, args.repeats)


if __name__ == "__main__":
    main()
