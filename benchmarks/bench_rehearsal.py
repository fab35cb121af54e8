"""BLOOM at the paper's sizes, rehearsed: one `python -m lacos_helpers rehearse` process per
shape x backend x recipe x checkpointing (a clean memory measurement each), then the table:
seconds per step, measured peak (CPU: anonymous RSS; GPU: CUDA), the memory model's prediction
and its error.

    python benchmarks/bench_rehearsal.py                          # 560m and 1b1, both backends
    python benchmarks/bench_rehearsal.py --shapes bloom-7b1 --recipes standard lean
    python benchmarks/bench_rehearsal.py --shapes bloom-560m --batch 32 --max-length 64
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["bloom-560m", "bloom-1b1"])
    parser.add_argument("--backends", nargs="+", default=["bitsandbytes", "lacos"])
    parser.add_argument("--recipes", nargs="+", default=["standard"])
    parser.add_argument("--checkpointing", nargs="+", default=["on"], choices=("on", "off"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--json", help="also append every record to this JSON-lines file")
    args = parser.parse_args()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.jsonl"
        for shape, backend, recipe, ckpt in itertools.product(
                args.shapes, args.backends, args.recipes, args.checkpointing):
            cmd = [sys.executable, "-m", "lacos_helpers", "rehearse", "--shape", shape,
                   "--backend", backend, "--recipe", recipe, "--steps", str(args.steps),
                   "--batch", str(args.batch), "--max-length", str(args.max_length),
                   "--profile", args.profile, "--json", str(out)]
            if ckpt == "off":
                cmd.append("--no-checkpointing")
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(f"{shape} {backend} {recipe} ckpt={ckpt}: failed\n{done.stderr[-2000:]}")
                continue
            records.append(json.loads(out.read_text().splitlines()[-1]))
            print("  " + done.stdout.strip().splitlines()[-1], flush=True)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    print(f"\nbatch {args.batch} triplets x {args.max_length} tokens, {args.steps} steps, "
          f"device {records[0]['device'] if records else '?'}")
    print("| shape | backend | recipe | checkpointing | s/step | measured peak GB | "
          "predicted GB | error % |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for r in records:
        measured = r["peak_cuda_gb"] if r["peak_cuda_gb"] is not None else r["peak_anon_gb"]
        print(f"| {r['size']} | {r['backend']} | {r['recipe']} | "
              f"{'on' if r['checkpointing'] else 'off'} | {r['seconds_per_step']:.1f} | "
              f"{measured:.2f} | {r['predicted_gb']:.2f} | {r['error_percent']:+.1f} |")


if __name__ == "__main__":
    main()
