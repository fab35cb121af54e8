"""Small, comparable training experiments for chapter 5 (the paper's claims and ablations).

Every experiment trains a fresh copy of one pristine backbone with the LACoS recipe, changed in
one setting, for a fixed number of steps, then scores STS dev sets. Results are rows of a
:class:`ResultTable` that is written as CSV and Markdown (``results/<profile>/<name>.*``) so the
README can quote the latest measured numbers.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lacos_helpers import env, training
from lacos_helpers.config import Profile

# Profile fields an experiment may change (the rest of the recipe stays as the profile says).
PROFILE_KNOBS = ("quantization", "lora_r", "lora_alpha", "pooling", "lora_targets", "tiny",
                 "model_id")


def experiment_steps(cfg: Profile) -> int:
    """Optimizer steps of one chapter-5 experiment: ``cfg.experiment_steps``, else half the
    notebooks' schedule (at least 5)."""
    return cfg.experiment_steps or max(5, cfg.course_steps // 2)


def _split(overrides: Mapping) -> tuple[dict, dict]:
    profile = {k: v for k, v in overrides.items() if k in PROFILE_KNOBS}
    settings = {k: v for k, v in overrides.items() if k not in PROFILE_KNOBS}
    return profile, settings


def run_experiment(cfg: Profile, label: str, triplets: Sequence,
                   eval_sets: Mapping[str, Sequence], *, backbone=None, tokenizer=None,
                   steps: int | None = None, show_progress: bool = False,
                   **overrides) -> dict:
    """Train one variant and score it. Returns ``{"experiment": label, "<eval set>": Spearman,
    ..., "final_loss", "steps", "triplets", "seconds"}``.

    ``backbone``/``tokenizer``: a pristine (unquantized, no LoRA) base model that is deep-copied,
    so many experiments share one load; None loads the profile's backbone. ``overrides`` may
    change profile knobs (:data:`PROFILE_KNOBS`, e.g. ``quantization="none"``, ``lora_r=2``,
    ``pooling="lasttoken"``, ``tiny=TinyBloomSpec(...)``) and any
    :class:`~lacos_helpers.training.TrainSettings` field (``hard_negatives=False`` ...).
    """
    from lacos_helpers.evaluation import evaluate_sts

    profile_overrides, settings = _split(overrides)
    run_cfg = dataclasses.replace(cfg, **profile_overrides) if profile_overrides else cfg
    if "tiny" in profile_overrides or "model_id" in profile_overrides:  # another model
        backbone = tokenizer = None
    env.seed_everything(run_cfg.seed)
    base = (copy.deepcopy(backbone), tokenizer) if backbone is not None else (None, None)
    encoder = training.build_encoder(run_cfg, *base, verbose=False)
    steps = steps or experiment_steps(cfg)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lacos-exp-") as out:
        result = training.train(run_cfg, encoder, triplets, out_dir=out, steps=steps,
                                warmup_steps=max(1, steps // 10), resume=False,
                                show_progress=show_progress, **settings)
    row = {"experiment": label}
    for name, pairs in eval_sets.items():
        row[name] = evaluate_sts(encoder, pairs, batch_size=cfg.eval_batch_size)["spearman"]
    row.update(final_loss=result.losses[-1], steps=steps, triplets=result.settings.n_triplets,
               seconds=round(time.perf_counter() - t0, 1))
    return row


class ResultTable:
    """Rows of experiment results with the same keys; prints as Markdown (scores x100)."""

    def __init__(self, name: str, rows: Sequence[Mapping], note: str = ""):
        if not rows:
            raise ValueError(f"result table {name!r} has no rows")
        self.name, self.rows, self.note = name, [dict(r) for r in rows], note

    @property
    def columns(self) -> list[str]:
        cols: list[str] = []
        for row in self.rows:
            cols += [k for k in row if k not in cols]
        return cols

    def column(self, key: str) -> list:
        return [row.get(key) for row in self.rows]

    def to_markdown(self, score_columns: Sequence[str] = ()) -> str:
        cols = self.columns
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.rows:
            cells = []
            for c in cols:
                v = row.get(c)
                if c in score_columns and isinstance(v, float):
                    cells.append(f"{100 * v:.2f}")
                elif isinstance(v, float):
                    cells.append(f"{v:.4g}")
                else:
                    cells.append(str(v))
            lines.append("| " + " | ".join(cells) + " |")
        text = "\n".join(lines)
        return f"{text}\n\n{self.note}" if self.note else text

    def save(self, directory: str | Path, score_columns: Sequence[str] = ()) -> tuple[Path, Path]:
        """Write ``<directory>/<name>.csv`` (raw values) and ``.md`` (scores x100)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = directory / f"{self.name}.csv", directory / f"{self.name}.md"
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        md_path.write_text(self.to_markdown(score_columns) + "\n", encoding="utf-8")
        return csv_path, md_path

    def __str__(self) -> str:
        return self.to_markdown()


def results_dir(cfg: Profile) -> Path:
    """Where chapter 5 writes its tables: ``results/<profile>``."""
    return Path("results") / cfg.name


__all__ = ["PROFILE_KNOBS", "experiment_steps", "run_experiment", "ResultTable", "results_dir"]
