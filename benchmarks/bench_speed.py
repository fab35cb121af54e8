"""The cpu recipe's training speed and model load: this checkout against another one (a git
worktree of an older commit), side by side.

Runs alternate A B A B ..., each a fresh process that loads the profile's backbone (timed), then
trains ``--steps`` + 1 steps of the profile's recipe with the real ``training.train`` (the
first step warms up and is not counted). Prints seconds per step, pairs per second and load
seconds per run, their medians, and the median of the per-round ratios (other / this), so the
comparison holds when the machine's speed drifts.

    git worktree add ../lacos-before <commit>
    python benchmarks/bench_speed.py --other ../lacos-before --runs 3 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, tempfile, time
from lacos_helpers import backbones, config, data, training
from lacos_helpers.course import notebook

profile, steps = sys.argv[1], int(sys.argv[2])
overrides = json.loads(sys.argv[3])
cfg = config.load_profile(profile).replace(**overrides).replace(
    train={"steps": steps + 1, "warmup_steps": 1, "eval_every": None,
           "checkpoint_every": None})
triplets = notebook.training_triplets(cfg)
t0 = time.perf_counter()
backbone, tokenizer = notebook.load_backbone(cfg, triplets)
load_s = time.perf_counter() - t0
encoder = training.build_encoder(cfg, backbone, tokenizer)
records = []
with tempfile.TemporaryDirectory() as out:
    training.train(cfg, encoder, triplets, out_dir=out, resume=False, show_progress=False,
                   callbacks=[records.append])
timed = [r["seconds"] for r in records[1:]]
print("RESULT " + json.dumps({"load_s": load_s, "step_s": sorted(timed)[len(timed) // 2],
                              "batch": cfg.train.batch_size,
                              "losses": [r["loss"] for r in records]}))
"""


def run_tree(tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", CHILD, args.profile, str(args.steps),
                           args.overrides], cwd=tree, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"run in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, help="the other checkout (e.g. a worktree)")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--overrides", default="{}",
                        help='JSON of RunConfig.replace overrides, e.g. \'{"train": '
                             '{"batch_size": 16}}\' (applied to both)')
    args = parser.parse_args()
    here, other = Path(__file__).resolve().parents[1], Path(args.other).resolve()
    results: dict[str, list[dict]] = {"other": [], "this": []}
    for i in range(args.runs):
        for name, tree in (("other", other), ("this", here)):
            r = run_tree(tree, args)
            results[name].append(r)
            print(f"run {i + 1} {name:5s}: load {r['load_s']:6.1f} s, step {r['step_s']:6.2f} s "
                  f"({r['batch'] / r['step_s']:.2f} pairs/s), losses "
                  f"{[round(x, 3) for x in r['losses']]}", flush=True)
    print(f"\nprofile {args.profile}, {args.steps} timed steps per run, {args.runs} runs each "
          f"(alternating); other = {other}")
    print("| checkout | load s (median) | s/step (median) | pairs/s |")
    print("|---|---:|---:|---:|")
    for name in ("other", "this"):
        load = statistics.median(r["load_s"] for r in results[name])
        step = statistics.median(r["step_s"] for r in results[name])
        print(f"| {name} | {load:.1f} | {step:.2f} | {results[name][0]['batch'] / step:.2f} |")
    ratios = [a["step_s"] / b["step_s"] for a, b in zip(results["other"], results["this"])]
    loads = [a["load_s"] / b["load_s"] for a, b in zip(results["other"], results["this"])]
    print(f"\nspeed-up of a step (other / this), per round: {[round(x, 2) for x in ratios]}, "
          f"median {statistics.median(ratios):.2f}x; load: median "
          f"{statistics.median(loads):.1f}x")


if __name__ == "__main__":
    main()
