"""Command line: ``python -m lacos_helpers {env,profiles,course,train,evaluate} ...``.

    python -m lacos_helpers train --profile cpu --out runs/cpu
    python -m lacos_helpers evaluate --run runs/cpu            # trained encoder
    python -m lacos_helpers evaluate --run runs/cpu --baseline # untrained backbone, same pooling
"""

from __future__ import annotations

import argparse
import sys


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train LoRA adapters with the MNR loss (resumable)")
    p.add_argument("--profile", default=None, help="ci | cpu | colab | paper (default: auto)")
    p.add_argument("--out", required=True, help="run directory (resumes if it has checkpoints)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (profile default)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--schedule", default="linear", choices=("constant", "linear", "cosine"))
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--no-hard-negatives", action="store_true")
    p.add_argument("--pooling", default=None, help="mean | weightedmean | lasttoken")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in backward: far less memory, ~1.5x the time on CPU")
    p.add_argument("--langs", default=None, help="NLI languages, comma separated")
    p.add_argument("--limit", type=int, default=None, help="at most N NLI triplets")
    p.add_argument("--eval-every", type=int, default=None, help="STS-B en dev every N steps")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--no-resume", action="store_true", help="start over in --out")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="STS tables (10 languages + cross-lingual) for a run")
    p.add_argument("--run", required=True, help="run directory written by `train`")
    p.add_argument("--split", default="test", choices=("dev", "test"))
    p.add_argument("--langs", default=None, help="STS languages, comma separated (profile's)")
    p.add_argument("--limit", type=int, default=None, help="at most N pairs per language")
    p.add_argument("--baseline", action="store_true",
                   help="evaluate the untrained backbone (same pooling) instead")
    p.add_argument("--no-crosslingual", action="store_true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lacos_helpers",
                                     description="LACoS-BLOOM course helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="environment check: [OK]/[FAIL] per requirement")
    sub.add_parser("profiles", help="print the profile table")
    course = sub.add_parser("course", help="execute every notebook headless into build/")
    course.add_argument("rest", nargs=argparse.REMAINDER)
    _add_train(sub)
    _add_evaluate(sub)
    args = parser.parse_args(argv)
    if args.command == "env":
        from lacos_helpers import env

        return env.main()
    if args.command == "profiles":
        from lacos_helpers import config

        print(config.profile_table())
        return 0
    if args.command == "train":
        from lacos_helpers import cli

        return cli.train_command(args)
    if args.command == "evaluate":
        from lacos_helpers import cli

        return cli.evaluate_command(args)
    from lacos_helpers import course as course_module

    return course_module.main(args.rest)


if __name__ == "__main__":
    sys.exit(main())
