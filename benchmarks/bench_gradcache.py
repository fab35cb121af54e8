"""GradCache vs plain MNR: seconds per training step and the memory a step adds, by batch size.

Plain MNR embeds the whole batch (anchors, positives, hard negatives) in one forward pass with
its graph, so its activation memory grows with the batch; GradCache embeds chunks of
``--chunk`` triplets twice (without, then with their graph) and back-propagates cached
embedding gradients: the memory of one chunk, about one more forward pass of time, the same
gradients. Each configuration runs in its own subprocess; the step's memory is the peak
resident memory sampled during the step minus the resident memory before it (CPU), or
``torch.cuda.max_memory_allocated`` (GPU). Plain MNR above ``--plain-max`` triplets is not run
(on the cpu profile it would not fit in RAM): its memory is extrapolated from the largest plain
batch that ran.

    python benchmarks/bench_gradcache.py                     # random BLOOM h=512, 6 layers
    python benchmarks/bench_gradcache.py --model cpu --batches 32,128,512 --chunk 16 \\
        --plain-max 32                                       # the cpu profile's Gemma
    python benchmarks/bench_gradcache.py ... --only gradcache:512 --json r.jsonl  # one at a time
    python benchmarks/bench_gradcache.py --table-from r.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def build(args, batch: int, chunk: int | None):
    from lacos_helpers import config, data, runtime, training
    from lacos_helpers.config import TinyBloomSpec

    if args.model == "cpu":
        cfg = config.load_profile("cpu")
    else:
        cfg = config.load_profile("ci", model={"tiny": TinyBloomSpec(
            hidden_size=args.hidden, n_layer=args.layers, n_head=8)})
    cfg = cfg.replace(train={"batch_size": batch, "cache_chunk": chunk})
    runtime.seed_everything(0)
    triplets = [t for t in data.load_nli_triplets("en", limit=args.limit, seed=0)
                if t.hard_negative]
    encoder = training.build_encoder(cfg, texts=data.training_texts(triplets))
    return cfg, encoder, triplets


def run_one(args) -> dict:
    """One configuration in this process: a warm-up step on 2 triplets, then one timed step
    on a batch of ``batch`` triplets."""
    import torch

    from lacos_helpers import training
    from lacos_helpers.optim import make_optimizer

    spec = json.loads(args.one)
    cfg, encoder, triplets = build(args, spec["batch"], spec["chunk"])
    objective = training.MNRLoss(cfg.train.cache_chunk)
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.train.optimizer, params, lr=1e-5)
    plan = training.BatchPlan(triplets, spec["batch"], seed=0)
    device = next(encoder.parameters()).device
    encoder.train()

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = objective.loss_and_backward(encoder, batch, cfg.train, lambda x: x.backward())
        opt.step()
        return loss

    step(plan[1][:2])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    from lacos_helpers.memory.measure import PeakMemory, process_memory

    with PeakMemory() as peak:  # sampled by a separate process
        before = process_memory()["rss"]
        loss = step(plan[0])
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    added = (torch.cuda.max_memory_allocated() - base if device.type == "cuda"
             else peak.peak_rss - before)
    return {**spec, "seconds": seconds, "step_mb": added / 2**20, "loss": loss,
            "device": str(device)}


def configurations(args) -> list[dict]:
    batches = [int(b) for b in args.batches.split(",")]
    runs = [{"method": "plain", "batch": b, "chunk": None} for b in batches
            if args.plain_max is None or b <= args.plain_max]
    runs += [{"method": "gradcache", "batch": b, "chunk": args.chunk} for b in batches]
    return runs


def table(results: list[dict]) -> str:
    plain = {r["batch"]: r for r in results if r["method"] == "plain"}
    largest = max(plain.values(), key=lambda r: r["batch"]) if plain else None
    rows = ["| method | batch (triplets) | chunk | s / step | triplets / s | step memory MB | "
            "vs plain: time, memory |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ref = plain.get(r["batch"])
        ratio = (f"{r['seconds'] / ref['seconds']:.2f}x, {r['step_mb'] / ref['step_mb']:.2f}x"
                 if ref and r is not ref else "")
        rows.append(f"| {r['method']} | {r['batch']} | {r['chunk'] or ''} | {r['seconds']:.1f} | "
                    f"{r['batch'] / r['seconds']:.1f} | {r['step_mb']:.0f} | {ratio} |")
    missing = sorted({r["batch"] for r in results} - set(plain))
    for b in missing if largest else []:
        est = largest["step_mb"] * b / largest["batch"]
        rows.append(f"| plain (not run) | {b} | | | | ~{est:.0f} (extrapolated) | |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("random", "cpu"), default="random")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--batches", default="32,128,512")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--plain-max", type=int, default=None,
                   help="largest batch plain MNR runs at (default: all)")
    p.add_argument("--limit", type=int, default=4000, help="NLI triplets to draw batches from")
    p.add_argument("--only", default=None, help="run only 'method:batch' (e.g. plain:32)")
    p.add_argument("--json", default=None, help="append each result to this JSONL file")
    p.add_argument("--table-from", default=None, metavar="JSONL",
                   help="only print the table of results saved with --json")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.table_from:
        with open(args.table_from) as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return
    if args.one:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return
    results = []
    for spec in configurations(args):
        if args.only and args.only != f"{spec['method']}:{spec['batch']}":
            continue
        cmd = [sys.executable, __file__, "--one", json.dumps(spec), "--model", args.model,
               "--hidden", str(args.hidden), "--layers", str(args.layers),
               "--limit", str(args.limit)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            print(out.stdout[-2000:], out.stderr[-3000:])
            raise SystemExit(f"{spec} failed")
        result = json.loads(line[-1][7:])
        results.append(result)
        print(f"{spec['method']:>9} batch {spec['batch']:>4}: {result['seconds']:.1f} s, "
              f"+{result['step_mb']:.0f} MB", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    if results:
        print(f"\n{results[0]['device']}, model {args.model}\n" + table(results))


if __name__ == "__main__":
    main()
