"""The notebooks' schedule: how long the course trains and evaluates in each profile (less than
``python -m lacos_helpers train``), and where the notebooks keep the run chapter 3 trains and
chapters 4 and 6 reuse."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lacos_helpers import config, runtime
from lacos_helpers.checks import check_int
from lacos_helpers.config import RunConfig


@dataclass(frozen=True)
class CourseSchedule:
    """The notebooks' lengths and sizes in one profile; None: the profile's value (or, for
    chapter 6, everything).

    Chapters 3-5: ``steps`` (``train.steps``), STS pairs per language ``sts_limit``
    (``eval.sts_limit``), ``experiment_steps`` (half of ``steps``, >= 5) and
    ``experiment_batch_size`` (``train.batch_size``) of one chapter-5 experiment.
    Chapter 6: ``search_docs`` (the search corpus is cut there, but keeps every STS-B test
    sentence: ~2,500) and ``search_queries``, ``bitext_rows`` per language pair,
    ``genre_sentences`` per genre and language for clustering.
    Chapter 7's batch-size study: ``negative_batches`` (triplets per batch), ``negative_pairs``
    per update (each batch size sees the same pairs), ``negative_updates``, GradCache chunk
    ``negative_chunk``, learning rate ``negative_lr``.
    ``LACOS_OVERRIDES`` paths ``course.<field>`` change a field (tests cut a profile short)."""

    steps: int | None = None
    sts_limit: int | None = None
    experiment_steps: int | None = None
    experiment_batch_size: int | None = None
    search_docs: int | None = None
    search_queries: int | None = None
    bitext_rows: int | None = None
    genre_sentences: int | None = None
    negative_batches: tuple[int, ...] = (8, 32, 128, 512)
    negative_pairs: int = 512
    negative_updates: int = 20
    negative_chunk: int = 64
    negative_lr: float = 2e-4


SCHEDULES = {
    "ci": CourseSchedule(experiment_steps=10, search_docs=3000, search_queries=150,
                         bitext_rows=200, genre_sentences=40, negative_updates=2,
                         negative_lr=3e-3),
    # cpu: chapter 5 trains about 20 experiments (variants x seeds), ~50 s each with its
    # evaluation on 2 cores (8 steps were no faster: more comparisons needed a second seed).
    "cpu": CourseSchedule(steps=30, sts_limit=250, experiment_steps=10, experiment_batch_size=16,
                          search_docs=4000, search_queries=150, bitext_rows=200,
                          genre_sentences=40, negative_batches=(8, 32, 128), negative_pairs=128,
                          negative_updates=3, negative_chunk=16, negative_lr=5e-4),
    "colab": CourseSchedule(steps=300),
    "paper": CourseSchedule(),
}

# A course run of fewer steps (cut by LACOS_OVERRIDES) shows noise, not a trend: chapters 3 and 4
# assert a falling loss and an STS gain only from this many steps on.
TREND_MIN_STEPS = 20


def _checked_field(name: str, value):
    """``value`` for field ``name`` of :class:`CourseSchedule`, checked (a clear error naming
    ``course.<name>`` otherwise)."""
    path = f"{config.OVERRIDES_VAR} {config.COURSE_OVERRIDE_PREFIX}{name}"
    if name == "negative_lr":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{path} must be a positive number, got {value!r}")
        return float(value)
    if name == "negative_batches":
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{path} must be a non-empty list of batch sizes, got {value!r}")
        return tuple(check_int(v, path, minimum=1) for v in value)
    return check_int(value, path, allow_none=not name.startswith("negative_"))


def course_schedule(cfg: RunConfig) -> CourseSchedule:
    """The schedule of ``cfg``'s profile (the default schedule for other names), with the
    ``course.<field>`` paths of ``LACOS_OVERRIDES``; an unknown field is an error."""
    base, prefix = SCHEDULES.get(cfg.name, CourseSchedule()), config.COURSE_OVERRIDE_PREFIX
    changes = {key[len(prefix):]: value for key, value in config.environment_overrides().items()
               if key.startswith(prefix)}
    known = {f.name for f in fields(CourseSchedule)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"{config.OVERRIDES_VAR}: unknown course schedule field(s) "
                         f"{', '.join(prefix + u for u in unknown)}; known: "
                         f"{', '.join(sorted(known))}")
    chosen = replace(base, **{k: _checked_field(k, v) for k, v in changes.items()})
    uneven = [b for b in chosen.negative_batches if chosen.negative_pairs % b]
    if uneven:  # every batch size must see the same pairs per update
        raise ValueError(f"{config.OVERRIDES_VAR}: {prefix}negative_pairs "
                         f"({chosen.negative_pairs}) is not a multiple of the batch size(s) "
                         f"{uneven} of {prefix}negative_batches")
    return chosen


def _smaller(a: int | None, b: int | None) -> int | None:
    """The smaller of two limits, None meaning no limit."""
    return b if a is None else a if b is None else min(a, b)


def course_steps(cfg: RunConfig) -> int:
    """Training steps of the notebooks' run: the schedule's, never more than ``train.steps``
    (a profile made smaller, e.g. by ``LACOS_OVERRIDES``, trains less in the notebooks too)."""
    return _smaller(course_schedule(cfg).steps, cfg.train.steps)


def course_sts_limit(cfg: RunConfig) -> int | None:
    """STS pairs per language the notebooks evaluate (None: all): the schedule's, never more
    than ``eval.sts_limit``."""
    return _smaller(course_schedule(cfg).sts_limit, cfg.eval.sts_limit)


def experiment_steps(cfg: RunConfig) -> int:
    """Optimizer steps of one chapter-5 experiment: the schedule's, never more than
    :func:`course_steps` (a profile made smaller trains less in chapter 5 too)."""
    steps = course_steps(cfg)
    return min(steps, course_schedule(cfg).experiment_steps or max(5, steps // 2))


def experiment_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the batch size of one chapter-5 experiment (its steps are
    :func:`experiment_steps`)."""
    batch = course_schedule(cfg).experiment_batch_size
    return cfg.replace(train={"batch_size": batch}) if batch else cfg


def course_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the notebooks' schedule: :func:`course_steps` steps, 10% warmup, four
    checkpoints, STS dev at the end."""
    steps = course_steps(cfg)
    return cfg.replace(train={"steps": steps, "warmup_steps": max(1, steps // 10),
                              "checkpoint_every": max(1, steps // 4), "eval_every": steps})


COLAB_DRIVE = Path("/content/drive/MyDrive")


def runs_root() -> Path:
    """Where the notebooks keep runs and result tables: ``LACOS_RUN_DIR``; else, on Colab with
    Drive mounted (which outlives the runtime), ``MyDrive/lacos/runs``; else ``<cache>/runs``."""
    value = os.environ.get("LACOS_RUN_DIR", "").strip()
    if value:
        path = Path(value).expanduser()
    elif runtime.in_colab() and COLAB_DRIVE.is_dir():
        path = COLAB_DRIVE / "lacos" / "runs"
    else:
        path = runtime.cache_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def course_run_dir(cfg: RunConfig) -> Path:
    """Where chapter 3 trains the notebooks' shared run: ``<runs_root()>/course-<profile>``."""
    return runs_root() / f"course-{cfg.name}"


def results_dir(cfg: RunConfig) -> Path:
    """Where chapter 5 writes its tables: ``<runs_root()>/results/<profile>``."""
    return runs_root() / "results" / cfg.name


def ensure_course_run(cfg: RunConfig) -> Path:
    """The folder of the run chapters 4 and later evaluate: ``LACOS_RUN`` if set (e.g. a full
    run from ``python -m lacos_helpers train``), else :func:`course_run_dir`. When it holds no
    final adapter yet, chapter 3's schedule trains it now (resuming a half-finished one)."""
    from lacos_helpers import data, training
    from lacos_helpers.course import notebook

    run_dir = Path(os.environ.get("LACOS_RUN", "").strip() or course_run_dir(cfg))
    if (run_dir / "adapter" / "adapter_config.json").is_file():
        return run_dir
    hint = (" (on Colab each notebook has its own runtime: mount Google Drive to keep runs "
            "between notebooks)" if runtime.in_colab() and not COLAB_DRIVE.is_dir() else "")
    print(f"no finished run in {run_dir}: training the notebooks' schedule (chapter 3){hint}")
    triplets = notebook.training_triplets(cfg)
    backbone, tokenizer = notebook.load_backbone(cfg, triplets)
    encoder = training.build_encoder(cfg, backbone, tokenizer)
    dev = data.load_sts("en", "dev", limit=course_sts_limit(cfg))
    training.train(course_config(cfg), encoder, triplets, out_dir=run_dir, dev_pairs=dev)
    return run_dir
