"""``python -m lacos_helpers export --run R --out D [--merged | --adapter]``."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command to an ``add_subparsers()`` object; returns its parser."""
    p = sub.add_parser("export", help="save a trained run as a sentence-transformers model "
                                      "folder (with a model card)")
    p.add_argument("--run", required=True, help="run directory (python -m lacos_helpers train)")
    p.add_argument("--out", required=True, help="folder to write (must be new or empty)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--merged", dest="mode", action="store_const", const="merged",
                      help="LoRA folded into float32 weights (default; loads anywhere)")
    mode.add_argument("--adapter", dest="mode", action="store_const", const="adapter",
                      help="float32 base + the peft adapter (needs the peft version that "
                           "transformers' peft integration requires)")
    p.add_argument("--no-normalize", action="store_true",
                   help="no Normalize module (embeddings not unit length)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(mode="merged")
    return p


def run(args) -> int:
    """Run ``export`` with parsed ``args``; prints where the folder is and the parity check.
    Returns the exit code (1 with the reason when the export is refused)."""
    from lacos_helpers.export.folder import UnsupportedPoolingError
    from lacos_helpers.export.st_model import ExportError, export_run

    try:
        result = export_run(args.run, args.out, mode=args.mode,
                            normalize=not args.no_normalize, overwrite=args.overwrite)
    except (ExportError, UnsupportedPoolingError) as exc:
        print(f"export failed: {exc}")
        return 1
    check = ("not checked (sentence-transformers not installed)" if result.max_abs_diff is None
             else f"max |diff| {result.max_abs_diff:.1e} vs the run's encoder "
                  f"({result.checked_with}, {result.probe_count} sentences)")
    print(f"[export] {result.mode} sentence-transformers model in {result.folder}: pooling "
          f"{result.st_pooling}{' + normalize' if result.normalize else ''}, padding "
          f"{result.padding_side}{_left_padding_note(result)}; {check}")
    return 0


def _left_padding_note(result) -> str:
    if result.left_padding_safe is None:
        return ""
    if result.left_padding_safe:
        return " (left padding gives the same embeddings)"
    return (f" (keep it: left padding differs by up to {result.left_padding_diff:.1e} with "
            f"{result.checked_with})")
