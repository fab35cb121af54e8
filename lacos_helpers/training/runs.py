"""A run directory describes itself::

    run.json                      the whole configuration, the data size and the environment
    log.jsonl, log.csv            one record per step (loss, lr, pairs/s) and per evaluation
    checkpoints/step-000040/      adapter (peft format) + trainer_state.pt
    checkpoints/latest            name of the newest complete checkpoint
    adapter/                      the final adapter (peft format)
    tokenizer/                    the tiny BLOOM's trained tokenizer (tiny-bloom runs only)

:func:`check_resumable` compares every field of the configuration that changes what is trained
(:func:`lacos_helpers.config.recipe_differences`) and the number of training triplets.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import time
from pathlib import Path

from lacos_helpers import runtime
from lacos_helpers.config import RunConfig, recipe_differences
from lacos_helpers.training.checkpoints import latest_checkpoint

RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"
LOG_JSONL = "log.jsonl"
LOG_CSV = "log.csv"


class RunMismatchError(ValueError):
    """A run directory holds a run trained with another recipe."""


def backbone_fingerprint(encoder) -> dict:
    """What identifies the backbone beyond its configuration: class, parameter count and the
    tokenizer's vocabulary (a tiny BLOOM's tokenizer is trained per run, so two runs of the same
    configuration can have different vocabularies)."""
    tokenizer = encoder.tokenizer
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return {"class": type(encoder.backbone).__name__,
            "parameters": sum(p.numel() for p in encoder.backbone.parameters()),
            "vocab_size": len(tokenizer),
            "vocab_sha256": hashlib.sha256(vocab.encode("utf-8")).hexdigest()[:16]}


def run_record(cfg: RunConfig, encoder, n_triplets: int, *, world_size: int = 1) -> dict:
    """What ``run.json`` holds: configuration, data size, backbone fingerprint, encoder,
    environment."""
    from lacos_helpers import __version__

    device = encoder.device
    dtype = next(encoder.backbone.parameters()).dtype
    return {
        "config": cfg.to_dict(),
        "data": {"n_triplets": n_triplets},
        "backbone": backbone_fingerprint(encoder),
        "encoder": encoder.to_config(),
        "environment": {
            "lacos_helpers": __version__, **runtime.versions(),
            "platform": platform.platform(), "device": str(device),
            "device_name": runtime.device_summary(), "dtype": str(dtype),
            "compute_dtype": str(encoder.compute_dtype or dtype),
            "world_size": world_size, "batch_size_per_process": cfg.train.batch_size,
            "global_batch_size": cfg.train.batch_size * world_size,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def read_run(run_dir: str | os.PathLike) -> dict:
    """The parsed ``run.json`` of a run directory (clear error when it is not a run)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: {path} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def write_run(out_dir: Path, record: dict) -> None:
    """Write ``run.json`` atomically."""
    runtime.write_atomic(out_dir / RUN_FILE, json.dumps(record, indent=1))


def run_config(record: dict) -> RunConfig:
    """The :class:`RunConfig` of a ``run.json`` record."""
    if "config" not in record:
        raise ValueError("run.json has no 'config': written by lacos_helpers 0.1, whose run "
                         "format is no longer read; train the run again")
    return RunConfig.from_dict(record["config"])


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The configuration a run was trained with (from its ``run.json``)."""
    return run_config(read_run(run_dir))


def check_resumable(out_dir: Path, record: dict) -> None:
    """Raise :class:`RunMismatchError` naming every difference between the run in ``out_dir``
    and ``record`` that changes what is trained."""
    if not (out_dir / RUN_FILE).is_file():
        return
    old = read_run(out_dir)
    diffs = recipe_differences(run_config(old), run_config(record))
    old_n, new_n = old.get("data", {}).get("n_triplets"), record["data"]["n_triplets"]
    if old_n is not None and old_n != new_n:
        diffs.append(f"data.n_triplets: {old_n!r} -> {new_n!r}")
    old_backbone, new_backbone = old.get("backbone"), record["backbone"]
    if old_backbone is None and run_config(record).model.kind == "tiny-bloom":
        diffs.append("backbone: written by lacos_helpers 0.1, whose tiny BLOOM tokenizer cannot "
                     "be checked")
    for key in new_backbone:
        if old_backbone is not None and old_backbone.get(key) != new_backbone[key]:
            diffs.append(f"backbone.{key}: {old_backbone.get(key)!r} -> {new_backbone[key]!r}")
    if diffs:
        raise RunMismatchError(
            f"{out_dir} holds a run with different settings ({'; '.join(diffs)}); use a new "
            "output directory, or resume=False (CLI: --no-resume) to start over")


def run_adapter_dir(run_dir: str | os.PathLike) -> Path:
    """The final adapter of a run, or its latest checkpoint if training did not finish."""
    final = Path(run_dir) / ADAPTER_DIR
    if (final / "adapter_config.json").is_file():
        return final
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has neither a final adapter nor a checkpoint")
    return checkpoint


# --------------------------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------------------------

def write_logs(out_dir: Path, history: list[dict]) -> None:
    """Rewrite ``log.jsonl`` and ``log.csv`` from the full history."""
    with open(out_dir / LOG_JSONL, "w", encoding="utf-8") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    keys = dict.fromkeys(k for record in history for k in record)
    with open(out_dir / LOG_CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(keys))
        writer.writeheader()
        writer.writerows(history)


def append_log(out_dir: Path, record: dict) -> None:
    """Append one record to ``log.jsonl`` (the CSV is rewritten at the end)."""
    with open(out_dir / LOG_JSONL, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of a run (``log.jsonl``)."""
    path = Path(run_dir) / LOG_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
