"""Small, comparable training experiments for chapter 5 (the paper's claims and ablations).

Every experiment trains a fresh copy of one pristine backbone with the LACoS recipe, changed in
one setting, for a fixed number of steps, then scores STS dev sets and keeps each pair's
predicted similarity, so that two variants can be compared on the *same pairs* with a paired
bootstrap (:func:`lacos_helpers.evaluation.metrics.paired_bootstrap_difference`).

A :class:`Study` is one question (data size, model size, ablations ...): it runs its variants,
caches every result under a key of what decides the trained model (:func:`training_key`), so
what did not change is reused, and decides each claim from its interval, training another seed
of both variants while one seed's interval does not decide. Results are a :class:`ResultTable`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lacos_helpers import runtime, training
from lacos_helpers.checks import markdown_table
from lacos_helpers.config import RunConfig

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"  # row key: {eval set: [cosine per pair]} (not shown in tables)


# --------------------------------------------------------------------------------------------
# one experiment
# --------------------------------------------------------------------------------------------

def _digest(items) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps(item, ensure_ascii=False, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def training_key(run_cfg: RunConfig, triplets: Sequence,
                 texts: Sequence[str] | None = None) -> str:
    """What decides a trained model, hashed: the whole configuration (steps and seed included),
    the training triplets in order, the texts a tiny BLOOM's tokenizer is trained on, and the
    package's code (:func:`runtime.code_fingerprint`). Two studies that train the same model
    (chapter 5's multilingual study and its ablations both train the recipe) share it."""
    parts = [run_cfg.to_dict(), runtime.code_fingerprint(),
             _digest(tuple(t) for t in triplets), _digest(texts or ())]
    return _digest(parts)[:20]


def eval_set_key(name: str, pairs: Sequence) -> str:
    """One evaluation set, named and hashed (every pair): ``"en dev:<digest>"``."""
    return f"{name}:{_digest(tuple(p) for p in pairs)[:16]}"


def _cached_row(cache_file: Path, eval_sets: Mapping[str, Sequence]) -> dict | None:
    """The cached training's row scored on ``eval_sets``; None when the file is missing or
    lacks one of them."""
    if not cache_file.is_file():
        return None
    entry = json.loads(cache_file.read_text(encoding="utf-8"))
    scored = entry.get("evals", {})
    keys = {name: eval_set_key(name, pairs) for name, pairs in eval_sets.items()}
    if any(k not in scored for k in keys.values()):
        return None
    row = dict(entry["row"])
    row.update({name: scored[k]["spearman"] for name, k in keys.items()})
    row[PREDICTIONS] = {name: scored[k]["predictions"] for name, k in keys.items()}
    return row


def _store_row(cache_file: Path, row: Mapping, eval_sets: Mapping[str, Sequence]) -> None:
    """Write one training's row and its scores per evaluation set (atomically)."""
    evals = {eval_set_key(name, pairs): {"spearman": row[name],
                                         "predictions": row[PREDICTIONS][name]}
             for name, pairs in eval_sets.items()}
    common = {k: v for k, v in row.items()
              if k not in eval_sets and k not in (PREDICTIONS, "experiment", "cached")}
    runtime.write_atomic(cache_file, json.dumps({"row": common, "evals": evals}))


@dataclass(frozen=True)
class ExperimentSetup:
    """What the runs of a study share: the base recipe ``cfg``, the training ``triplets``, the
    ``eval_sets`` (name -> STS pairs), the ``steps``; ``backbone``/``tokenizer``: a pristine
    (no LoRA) base model deep-copied by every run, so many experiments share one load;
    ``texts``: a tiny BLOOM's tokenizer texts; ``cache_dir``: the result cache."""

    cfg: RunConfig
    triplets: Sequence
    eval_sets: Mapping[str, Sequence]
    steps: int
    backbone: object = None
    tokenizer: object = None
    texts: Sequence[str] | None = None
    cache_dir: str | Path | None = None
    show_progress: bool = False

    def run(self, variant: Variant, seed: int) -> dict:
        """:func:`run_experiment` of ``variant`` (its own recipe or training set where it has
        one) at ``seed``."""
        own = dataclasses.replace(
            self, cfg=variant.cfg or self.cfg,
            triplets=variant.triplets if variant.triplets is not None else self.triplets)
        return run_experiment(own, variant.label, seed=seed, **variant.overrides)


def run_experiment(setup: ExperimentSetup, label: str, *, seed: int | None = None,
                   **overrides) -> dict:
    """Train one variant of ``setup.cfg`` for ``setup.steps`` steps (10% warmup) on
    ``setup.triplets`` and score it on ``setup.eval_sets``. Returns
    ``{"experiment": label, "<eval set>": Spearman, ..., "final_loss", "steps", "triplets",
    "seed", "seconds", "cached", "predictions": {"<eval set>": [cosine per pair]}}``.

    ``overrides`` change the recipe as :meth:`RunConfig.replace` does, one section at a time:
    ``quant={"backend": "none"}``, ``lora={"r": 2}``, ``encoder={"pooling": "lasttoken"}``,
    ``train={"hard_negatives": False}``, ``model={"tiny": TinyBloomSpec(...)}``; ``seed`` the
    run's seed (LoRA init, dropout, batch order). The setup's backbone is not used when the
    variant needs another load: another ``model`` or another ``quant.load_in_8bit``. With a
    ``cache_dir`` the result of an identical training (:func:`training_key`) that was scored
    on every set of ``eval_sets`` (whatever else it was scored on) is reused, new ones stored.
    """
    from lacos_helpers.evaluation import cosine_scores
    from lacos_helpers.evaluation.metrics import spearman

    cfg, triplets, eval_sets, steps = setup.cfg, setup.triplets, setup.eval_sets, setup.steps
    texts, backbone = setup.texts, setup.backbone
    run_cfg = cfg.replace(**overrides).replace(
        train={"steps": steps, "warmup_steps": max(1, steps // 10)})
    if seed is not None:
        run_cfg = run_cfg.replace(seed=seed)
    cache_file = None
    if setup.cache_dir is not None:
        cache_file = Path(setup.cache_dir) / f"{training_key(run_cfg, triplets, texts)}.json"
        cached = _cached_row(cache_file, eval_sets)
        if cached is not None:
            row = {"experiment": label, **cached, "cached": True}
            log.info("[experiment] %s (seed %s): cached result %s", label, row["seed"],
                     cache_file.name)
            return row
    if run_cfg.model != cfg.model or run_cfg.quant.load_in_8bit != cfg.quant.load_in_8bit:
        backbone = None
    runtime.seed_everything(run_cfg.seed)
    base = (copy.deepcopy(backbone), setup.tokenizer) if backbone is not None else (None, None)
    encoder = training.build_encoder(run_cfg, *base, texts=texts)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lacos-exp-") as out:
        result = training.train(run_cfg, encoder, triplets, out_dir=out, resume=False,
                                show_progress=setup.show_progress)
    row: dict = {"experiment": label}
    predictions = {}
    for name, pairs in eval_sets.items():
        predicted = cosine_scores(encoder, pairs, batch_size=cfg.eval.batch_size)
        predictions[name] = [round(float(v), 7) for v in predicted]
        row[name] = spearman(predicted, [p.score for p in pairs])
    row.update(final_loss=result.losses[-1], steps=steps, triplets=result.n_triplets,
               seed=run_cfg.seed, seconds=round(time.perf_counter() - t0, 1), cached=False)
    row[PREDICTIONS] = predictions
    log.info("[experiment] %s (seed %s): %s", label, run_cfg.seed,
             {k: v for k, v in row.items() if k not in ("experiment", PREDICTIONS)})
    if cache_file is not None:
        _store_row(cache_file, row, eval_sets)
    return row


# --------------------------------------------------------------------------------------------
# a table of results with intervals
# --------------------------------------------------------------------------------------------

class ResultTable:
    """Rows of experiment results; several rows with the same ``experiment`` label are seeds of
    one variant. ``gold``: {eval set: gold scores}, which gives every score a 95% bootstrap
    interval (:meth:`interval`) and every pair of variants a paired comparison
    (:meth:`compare`). Prints as Markdown (scores x100, one line per variant, seeds averaged)."""

    def __init__(self, name: str, rows: Sequence[Mapping], note: str = "",
                 gold: Mapping[str, Sequence[float]] | None = None):
        if not rows:
            raise ValueError(f"result table {name!r} has no rows")
        self.name, self.rows, self.note = name, [dict(r) for r in rows], note
        self.gold = {k: list(v) for k, v in (gold or {}).items()}

    # ---- reading -------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Variant labels in first-seen order."""
        return list(dict.fromkeys(row["experiment"] for row in self.rows))

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(k for row in self.rows for k in row if k != PREDICTIONS))

    def runs(self, label: str) -> list[dict]:
        """The rows (seeds) of one variant; an unknown label is an error listing them."""
        found = [row for row in self.rows if row["experiment"] == label]
        if not found:
            raise KeyError(f"no experiment {label!r} in table {self.name!r}; have {self.labels}")
        return found

    def score(self, label: str, column: str) -> float:
        """Mean over the variant's seeds of its Spearman on ``column``."""
        values = [row[column] for row in self.runs(label)]
        return sum(values) / len(values)

    def column(self, key: str) -> list:
        """``key`` per variant (seed mean for numbers), in label order."""
        out = []
        for label in self.labels:
            values = [row.get(key) for row in self.runs(label)]
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            out.append(sum(numbers) / len(numbers) if numbers and len(numbers) == len(values)
                       else values[0])
        return out

    def _predictions(self, label: str, column: str, seeds: Sequence[int] | None = None):
        runs = self.runs(label)
        if seeds is not None:
            runs = [r for r in runs if r["seed"] in seeds]
        if column not in self.gold:
            raise ValueError(f"table {self.name!r} has no gold scores for {column!r}: pass "
                             "gold= to compute intervals")
        if any(PREDICTIONS not in r or column not in r[PREDICTIONS] for r in runs):
            raise ValueError(f"{label!r} has no per-pair predictions for {column!r}")
        return torch.tensor([r[PREDICTIONS][column] for r in runs], dtype=torch.float64)

    def interval(self, label: str, column: str) -> tuple[float, float]:
        """95% bootstrap interval of the variant's (seed-mean) Spearman on ``column``."""
        from lacos_helpers.evaluation.metrics import bootstrap_spearman

        return bootstrap_spearman(self._predictions(label, column), self.gold[column])

    def compare(self, candidate: str, reference: str, column: str) -> dict:
        """Paired bootstrap of Spearman(candidate) - Spearman(reference) on ``column`` over the
        seeds both have (:func:`~lacos_helpers.evaluation.metrics.paired_bootstrap_difference`)."""
        from lacos_helpers.evaluation.metrics import paired_bootstrap_difference

        seeds = sorted({r["seed"] for r in self.runs(candidate)}
                       & {r["seed"] for r in self.runs(reference)})
        if not seeds:
            raise ValueError(f"{candidate!r} and {reference!r} share no seed")
        return paired_bootstrap_difference(self._predictions(candidate, column, seeds),
                                           self._predictions(reference, column, seeds),
                                           self.gold[column])

    # ---- writing -------------------------------------------------------------------------

    def _cell(self, label: str, column: str, score_columns: Sequence[str]) -> str:
        value = self.column(column)[self.labels.index(label)]
        if column in score_columns and isinstance(value, float):
            text = f"{100 * value:.1f}"
            if column in self.gold:
                low, high = self.interval(label, column)
                text += f" [{100 * low:.1f}, {100 * high:.1f}]"
            return text
        if column == "seed":
            return ",".join(str(r["seed"]) for r in self.runs(label))
        if isinstance(value, float):   # a seed mean of whole numbers (triplets) stays whole
            return f"{value:.0f}" if value.is_integer() else f"{value:.4g}"
        return str(value)

    def to_markdown(self, score_columns: Sequence[str] = ()) -> str:
        cols = self.columns
        text = markdown_table(([label] + [self._cell(label, c, score_columns) for c in cols[1:]]
                               for label in self.labels), cols)
        if any(c in self.gold for c in score_columns):
            text += ("\n\nScores: Spearman x100 [95% bootstrap interval over the evaluation "
                     "pairs]; several seeds are averaged.")
        return f"{text}\n\n{self.note}" if self.note else text

    def save(self, directory: str | Path, score_columns: Sequence[str] = ()) -> tuple[Path, Path]:
        """Write ``<directory>/<name>.csv`` (raw values, one line per seed) and ``.md``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = directory / f"{self.name}.csv", directory / f"{self.name}.md"
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        md_path.write_text(self.to_markdown(score_columns) + "\n", encoding="utf-8")
        return csv_path, md_path

    def __str__(self) -> str:
        return self.to_markdown()


# --------------------------------------------------------------------------------------------
# a study: variants, cached runs, claims decided by intervals
# --------------------------------------------------------------------------------------------

@dataclass
class Variant:
    """One arm of a study: a label and what differs from the study's recipe (``overrides`` as
    :func:`run_experiment` takes them, another training set, another base configuration)."""

    label: str
    overrides: dict = field(default_factory=dict)
    triplets: Sequence | None = None
    cfg: RunConfig | None = None


def verdict_text(claim: str, decision: dict) -> str:
    """One sentence from a comparison: the difference with its interval, the seeds, and
    whether the data decide it."""
    delta, low, high = (100 * decision[k] for k in ("delta", "low", "high"))
    seeds = decision["seeds"]
    if decision["decided"]:
        verdict = "holds" if delta > 0 else "reversed"
    else:
        verdict = "not shown (the interval contains 0)"
    return (f"{claim}: {delta:+.1f} [{low:+.1f}, {high:+.1f}] Spearman x100 over "
            f"{seeds} seed{'s' if seeds > 1 else ''}: {verdict}")


class Study:
    """Variants of a :class:`ExperimentSetup`'s recipe, trained and scored alike.

    :meth:`run` trains (or reuses) every variant at the first seed; :meth:`decide` compares two
    variants and, while the interval contains 0 and ``extra_seeds`` remain, trains both at the
    next seed and compares again over all their seeds."""

    def __init__(self, name: str, setup: ExperimentSetup, *, seeds: Sequence[int] = (0,),
                 extra_seeds: Sequence[int] = (1,), note: str = ""):
        self.setup, self.name, self.note = setup, name, note
        self.seeds, self.extra_seeds = tuple(seeds), tuple(extra_seeds)
        self.variants: dict[str, Variant] = {}
        self.rows: list[dict] = []
        self.decisions: list[dict] = []

    def _run(self, variant: Variant, seed: int) -> dict:
        for row in self.rows:
            if row["experiment"] == variant.label and row["seed"] == seed:
                return row
        row = self.setup.run(variant, seed)
        self.rows.append(row)
        return row

    def run(self, variants: Sequence[Variant], progress: bool = True) -> ResultTable:
        """Every variant at every seed of ``seeds`` (tqdm progress); the table."""
        from tqdm.auto import tqdm

        for variant in variants:
            if variant.label in self.variants:
                raise ValueError(f"two variants are labelled {variant.label!r}")
            self.variants[variant.label] = variant
        jobs = [(v, s) for v in variants for s in self.seeds]
        for variant, seed in tqdm(jobs, desc=self.name, disable=not progress):
            self._run(variant, seed)
        return self.table

    @property
    def table(self) -> ResultTable:
        gold = {name: [p.score for p in pairs] for name, pairs in self.setup.eval_sets.items()}
        return ResultTable(self.name, self.rows, note=self.note, gold=gold)

    def decide(self, candidate: str, reference: str, column: str, claim: str) -> dict:
        """Compare ``candidate`` with ``reference`` on ``column``; train further seeds of both
        while undecided. Returns the comparison with ``claim``, ``candidate``, ``reference``,
        ``column`` and ``text`` (:func:`verdict_text`)."""
        for label in (candidate, reference):
            if label not in self.variants:
                raise KeyError(f"no variant {label!r} in study {self.name!r}; have "
                               f"{list(self.variants)}")
        decision = self.table.compare(candidate, reference, column)
        for seed in self.extra_seeds:
            if decision["decided"]:
                break
            self._run(self.variants[candidate], seed)
            self._run(self.variants[reference], seed)
            decision = self.table.compare(candidate, reference, column)
        decision.update(claim=claim, candidate=candidate, reference=reference, column=column)
        decision["text"] = verdict_text(claim, decision)
        self.decisions.append(decision)
        return decision

    def save(self, directory: str | Path, score_columns: Sequence[str]) -> tuple[Path, Path]:
        """The table (:meth:`ResultTable.save`) plus ``<name>_decisions.md`` and ``.json``."""
        paths = self.table.save(directory, score_columns)
        directory = Path(directory)
        (directory / f"{self.name}_decisions.json").write_text(
            json.dumps(self.decisions, indent=1), encoding="utf-8")
        (directory / f"{self.name}_decisions.md").write_text(
            "\n".join(f"- {d['text']}" for d in self.decisions) + "\n", encoding="utf-8")
        return paths


__all__ = ["ExperimentSetup", "ResultTable", "Study", "Variant", "eval_set_key",
           "run_experiment", "training_key", "verdict_text"]
