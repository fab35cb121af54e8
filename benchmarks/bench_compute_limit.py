"""The training step against this CPU's compute limit (issue 28, lever 2).

1. The **limit**: the rate of one large float32 (and, where the CPU has it natively, bfloat16)
   matrix product, in TFLOP/s, the best of several shapes of the recipe's kind
   (``[tokens, h] x [h, h']``).
2. The weight-only 8-bit product of the recipe's shapes, dequantize + GEMM against PyTorch's
   CPU int8 weight-only kernel (``torch._weight_int8pack_mm``).
3. The **achieved** rate of the ``cpu`` profile's training step: FLOPs of one step counted by
   ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward of the real batch), divided
   by the measured seconds of every step; first-20 median, last-20 median (sustained speed),
   the number of distinct ``[rows, tokens]`` shapes the backbone saw, and the process's peak
   anonymous memory (``RssAnon``: the memory-mapped checkpoint is not counted).

    python benchmarks/bench_compute_limit.py --steps 60                    # the recipe
    python benchmarks/bench_compute_limit.py --steps 60 --pad-multiple 1  # unbucketed widths
    python benchmarks/bench_compute_limit.py --steps 60 --trim             # heap trimmed per step
    python benchmarks/bench_compute_limit.py --steps 60 --checkpointing    # activations recomputed
    python benchmarks/bench_compute_limit.py --steps 60 --cache-chunk 8    # GradCache chunks

Run it alone: two CPU-heavy processes at once slow each other several times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, after one untimed call (the kernel is
    built)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def gemm_limit(dtype_name: str, repeats: int = 5) -> dict:
    """Best TFLOP/s of ``[m, k] @ [k, n]`` over shapes of the recipe's kind."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = {"tflops": 0.0}
    for m, k, n in ((4096, 640, 2048), (4096, 2048, 640), (4096, 2048, 2048), (2048, 4096, 4096)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        tflops = 2 * m * k * n / best_seconds(lambda a=a, b=b: a @ b, repeats) / 1e12
        if tflops > best["tflops"]:
            best = {"tflops": round(tflops, 3), "shape": [m, k, n]}
    return best


def weight_only_int8(dtype_name: str, tokens: int = 3072, repeats: int = 7) -> list[dict]:
    """The recipe's weight-only 8-bit product two ways, per Gemma-3-270M matrix shape ``[n, k]``:
    ``dequantize`` (int8 rows -> ``dtype`` x scale, then one oneDNN GEMM: what
    ``Int8Linear(compute="dequantize")`` does) and ``int8pack`` (PyTorch's CPU weight-only int8
    kernel ``torch._weight_int8pack_mm``, no dequantized copy); ms and TFLOP/s of each."""
    import torch
    import torch.nn.functional as F

    dtype, rows = getattr(torch, dtype_name), []
    for n, k in ((1024, 640), (2048, 640), (640, 2048), (640, 1024)):
        x = torch.randn(tokens, k, dtype=dtype)
        w = torch.randint(-127, 128, (n, k), dtype=torch.int8)
        scale = (torch.rand(n) / 127).to(dtype)
        dequantize = lambda x=x, w=w, s=scale: F.linear(x, w.to(dtype) * s[:, None])  # noqa: E731
        int8pack = lambda x=x, w=w, s=scale: torch._weight_int8pack_mm(x, w, s)  # noqa: E731
        seconds = {"dequantize": best_seconds(dequantize, repeats),
                   "int8pack": best_seconds(int8pack, repeats)}
        rows.append({"shape": [tokens, k, n], **{
            name: {"ms": round(1e3 * sec, 2), "tflops": round(2 * tokens * k * n / sec / 1e12, 3)}
            for name, sec in seconds.items()}})
    return rows


def step_flops(encoder, batch, train, objective) -> int:
    """FLOPs of one training step (forward + backward of ``objective``) on ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        objective(encoder, batch, train).backward()
    encoder.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pad-multiple", type=int, default=None, help="default: the profile's")
    parser.add_argument("--trim", action="store_true",
                        help="hand the C heap's freed pages back after every step (malloc_trim)")
    parser.add_argument("--checkpointing", action="store_true",
                        help="gradient checkpointing (the same model, activations recomputed)")
    parser.add_argument("--cache-chunk", type=int, default=None,
                        help="GradCache: embed the batch in chunks of this many triplets")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    import torch
    from tqdm.auto import tqdm

    from lacos_helpers import config, data, runtime, training
    from lacos_helpers.encoder import SiameseEncoder
    from lacos_helpers.memory import PeakMemory
    from lacos_helpers.optim import make_optimizer

    # bfloat16 only where the CPU multiplies it natively (emulated, it is ~100x slower)
    dtypes = ["float32"] + (["bfloat16"] if runtime.cpu_native_bf16() else [])
    limit = {name: gemm_limit(name) for name in dtypes}
    int8_kernels = weight_only_int8(dtypes[-1])
    cfg = config.load_profile("cpu", train={"gradient_checkpointing": args.checkpointing})
    if args.pad_multiple is not None:
        cfg = cfg.replace(encoder={"pad_multiple": args.pad_multiple})
    runtime.seed_everything(cfg.seed)
    triplets = data.run_triplets(cfg.data, cfg.seed)
    if cfg.train.hard_negatives:  # as the trainer: triplets with a hard negative only
        triplets = [t for t in triplets if t.hard_negative]
    encoder = training.build_encoder(cfg, texts=data.training_texts(triplets)).train()
    plan = training.BatchPlan(triplets, cfg.train.batch_size, seed=cfg.seed)
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.train.optimizer, params, lr=cfg.train.learning_rate)
    objective = training.MNRLoss(args.cache_chunk)  # the same gradients in every setting
    shapes = set()
    forward = SiameseEncoder.forward

    def counting(self, input_ids, attention_mask):
        shapes.add(tuple(input_ids.shape))
        return forward(self, input_ids, attention_mask)

    SiameseEncoder.forward = counting
    flops = [step_flops(encoder, plan[i], cfg.train, objective) for i in range(3)]
    shapes.clear()
    seconds = []
    with PeakMemory(interval=0.05) as peak:  # the whole process's anonymous peak
        for step in tqdm(range(args.steps), desc="steps"):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            objective(encoder, plan[step], cfg.train).backward()
            opt.step()
            if args.trim:
                runtime.release_free_memory()
            seconds.append(time.perf_counter() - t0)
    first, last = statistics.median(seconds[:20]), statistics.median(seconds[-20:])
    mean_flops = statistics.mean(flops)
    result = {
        "pad_multiple": cfg.encoder.pad_multiple, "steps": args.steps, "trim": args.trim,
        "checkpointing": args.checkpointing, "cache_chunk": args.cache_chunk,
        "compute": str(encoder.compute_dtype or "float32"), "limit": limit,
        "step_tflop": round(mean_flops / 1e12, 3),
        "first20_median_s": round(first, 3), "last20_median_s": round(last, 3),
        "sustained_over_first": round(last / first, 3),
        "achieved_tflops_first20": round(mean_flops / first / 1e12, 3),
        "achieved_tflops_last20": round(mean_flops / last / 1e12, 3),
        "distinct_shapes": len(shapes), "peak_anon_gb": round(peak.peak_anon / 1e9, 2),
        "threads": torch.get_num_threads(), "weight_only_int8": int8_kernels,
    }
    limit_rate = limit["bfloat16" if encoder.compute_dtype else "float32"]["tflops"]
    result["achieved_over_limit_first20"] = round(result["achieved_tflops_first20"] / limit_rate, 3)
    result["achieved_over_limit_last20"] = round(result["achieved_tflops_last20"] / limit_rate, 3)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
