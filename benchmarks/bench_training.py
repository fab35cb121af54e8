"""Training throughput and peak memory: fp32 vs 8-bit base, AdamW vs 8-bit Adam, with and
without gradient checkpointing, side by side on the same model and batches.

Each configuration runs in its own subprocess, so its peak memory (max RSS on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU) is its own. Prints sentence pairs per second
(anchor + positive + hard negative per pair) and the ratio to the fp32 + AdamW baseline.

    python benchmarks/bench_training.py                       # random BLOOM, h=512, 6 layers
    python benchmarks/bench_training.py --model cpu --steps 3 # the cpu profile's Gemma
    python benchmarks/bench_training.py --hidden 1024 --layers 8 --batch 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time

CONFIGS = [dict(base=b, optimizer=o, ckpt=c) for b, o, c in
           itertools.product(("fp32", "8-bit"), ("adamw", "adam8bit"), (False, True))]


def run_one(args) -> dict:
    """One configuration in this process: build, warm up one step, time ``--steps`` steps."""
    import torch

    from lacos_helpers import config, data, runtime, training
    from lacos_helpers.config import TinyBloomSpec
    from lacos_helpers.optim import make_optimizer

    spec = json.loads(args.one)
    if args.model == "cpu":
        cfg = config.load_profile("cpu")
    else:
        cfg = config.load_profile("ci", model={"tiny": TinyBloomSpec(
            hidden_size=args.hidden, n_layer=args.layers, n_head=8)})
    cfg = cfg.replace(quant={"backend": "lacos" if spec["base"] == "8-bit" else "none"},
                      train={"gradient_checkpointing": spec["ckpt"],
                             "optimizer": spec["optimizer"], "batch_size": args.batch,
                             "steps": args.steps + 1})
    runtime.seed_everything(0)
    triplets = [t for t in data.load_nli_triplets("en", limit=2000, seed=0) if t.hard_negative]
    encoder = training.build_encoder(cfg, texts=data.training_texts(triplets))
    plan = training.BatchPlan(triplets, args.batch, seed=0)
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.train.optimizer, params, lr=1e-4)
    device = next(encoder.parameters()).device
    encoder.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        training.batch_loss(encoder, plan[step], cfg.train).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = min(times[1:])  # first step warms up
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {**spec, "pairs_per_s": args.batch / seconds, "peak_mb": peak / 2**20,
            "device": device.type}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "cpu"), default="tiny",
                        help="tiny: random BLOOM of --hidden/--layers; cpu: the cpu profile")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args)))
        return
    rows = []
    for spec in CONFIGS:
        cmd = [sys.executable, __file__, "--one", json.dumps(spec)] + \
              [f"--{k}={v}" for k, v in (("model", args.model), ("hidden", args.hidden),
                                          ("layers", args.layers), ("batch", args.batch),
                                          ("steps", args.steps))]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            print(f"{spec}: failed\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(line[-1][7:]))
        r = rows[-1]
        print(f"  done {r['base']:>5} {r['optimizer']:>8} ckpt={r['ckpt']!s:5}: "
              f"{r['pairs_per_s']:.2f} pairs/s", flush=True)
    base = next(r for r in rows if r["base"] == "fp32" and r["optimizer"] == "adamw"
                and not r["ckpt"])
    what = f"random BLOOM h={args.hidden} L={args.layers}" if args.model == "tiny" \
        else "cpu profile (Gemma-3-270M)"
    print(f"\n{what}, batch {args.batch} triplets, best of {args.steps} steps, "
          f"device {rows[0]['device']}")
    print("| base | optimizer | grad ckpt | pairs/s | x fp32+AdamW | peak MB | x fp32+AdamW |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['base']} | {r['optimizer']} | {'yes' if r['ckpt'] else 'no'} | "
              f"{r['pairs_per_s']:.2f} | {r['pairs_per_s'] / base['pairs_per_s']:.2f} | "
              f"{r['peak_mb']:.0f} | {r['peak_mb'] / base['peak_mb']:.2f} |")


if __name__ == "__main__":
    main()
