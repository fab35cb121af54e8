"""Small, comparable training experiments for chapter 5 (the paper's claims and ablations).

Every experiment trains a fresh copy of one pristine backbone with the LACoS recipe, changed in
one setting, for a fixed number of steps, then scores STS dev sets. Results are rows of a
:class:`ResultTable` that is written as CSV and Markdown (the notebook puts them under
``course.schedule.results_dir``) so the README can quote the latest measured numbers.
"""

from __future__ import annotations

import copy
import csv
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lacos_helpers import runtime, training
from lacos_helpers.config import RunConfig

log = logging.getLogger(__name__)


def run_experiment(cfg: RunConfig, label: str, triplets: Sequence,
                   eval_sets: Mapping[str, Sequence], *, steps: int, backbone=None,
                   tokenizer=None, texts: Sequence[str] | None = None,
                   show_progress: bool = False, **overrides) -> dict:
    """Train one variant of ``cfg`` for ``steps`` steps (10% warmup) and score it. Returns
    ``{"experiment": label, "<eval set>": Spearman, ..., "final_loss", "steps", "triplets",
    "seconds"}``.

    ``overrides`` change the recipe as :meth:`RunConfig.replace` does, one section at a time:
    ``quant={"backend": "none"}``, ``lora={"r": 2}``, ``encoder={"pooling": "lasttoken"}``,
    ``train={"hard_negatives": False}``, ``model={"tiny": TinyBloomSpec(...)}``.
    ``backbone``/``tokenizer``: a pristine (no LoRA) base model that is deep-copied, so many
    experiments share one load; it is not used when the variant needs another load: another
    ``model`` (``texts`` train a tiny BLOOM's tokenizer), or another ``quant.load_in_8bit``
    (the fp32 ablation of a profile whose backbone is loaded in 8 bits loads a float one).
    """
    from lacos_helpers.evaluation import evaluate_sts

    run_cfg = cfg.replace(**overrides).replace(
        train={"steps": steps, "warmup_steps": max(1, steps // 10)})
    if run_cfg.model != cfg.model or run_cfg.quant.load_in_8bit != cfg.quant.load_in_8bit:
        backbone = None
    runtime.seed_everything(run_cfg.seed)
    base = (copy.deepcopy(backbone), tokenizer) if backbone is not None else (None, None)
    encoder = training.build_encoder(run_cfg, *base, texts=texts)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lacos-exp-") as out:
        result = training.train(run_cfg, encoder, triplets, out_dir=out, resume=False,
                                show_progress=show_progress)
    row = {"experiment": label}
    for name, pairs in eval_sets.items():
        row[name] = evaluate_sts(encoder, pairs, batch_size=cfg.eval.batch_size)["spearman"]
    row.update(final_loss=result.losses[-1], steps=steps, triplets=result.n_triplets,
               seconds=round(time.perf_counter() - t0, 1))
    log.info("[experiment] %s: %s", label, {k: v for k, v in row.items() if k != "experiment"})
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


__all__ = ["ResultTable", "run_experiment"]
