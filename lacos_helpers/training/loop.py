"""Training the Siamese encoder with the MNR loss: one :class:`Trainer` whose small pieces
(prepare the run directory, restore, one step, evaluate, checkpoint) :meth:`Trainer.run` strings
together.

One optimizer *step* = ``grad_accum`` micro-batches of ``batch_size`` NLI triplets. The
in-batch negatives of the MNR loss come from one micro-batch only: gradient accumulation makes
the update average over more pairs, but it does **not** give each anchor more negatives (that
needs a larger ``batch_size``).

A run that is killed resumes from ``checkpoints/latest`` and ends with the same adapter as an
uninterrupted run (the data order is a function of the step; the RNG state is restored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lacos_helpers.config import RunConfig, TrainConfig
from lacos_helpers.data.sampling import BatchPlan
from lacos_helpers.encoder.losses.triplet_mnr import MNRLoss
from lacos_helpers.optim import make_optimizer
from lacos_helpers.training import checkpoints, runs
from lacos_helpers.training.build import save_run_tokenizer
from lacos_helpers.training.precision import autocast, make_scaler
from lacos_helpers.training.schedule import make_scheduler

log = logging.getLogger(__name__)

# A callback sees every record (``kind`` "train" or "eval"); returning True stops the run
# gracefully (the state is checkpointed, like Ctrl-C).
Callback = Callable[[dict], "bool | None"]


class TrainingDivergedError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What a run did. ``history`` has one dict per step (``kind="train"``) and per evaluation
    (``kind="eval"``)."""

    out_dir: Path
    step: int
    config: RunConfig
    n_triplets: int
    history: list[dict] = field(default_factory=list)
    resumed_from: int | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.history if r["kind"] == "train"]

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.history if r["kind"] == "eval"]


def usable_triplets(triplets: Sequence, hard_negatives: bool) -> list:
    """The triplets a run trains on: with ``hard_negatives`` only those that have one."""
    if not triplets:
        raise ValueError("no training triplets (empty data)")
    if not hard_negatives:
        return list(triplets)
    kept = [t for t in triplets if t.hard_negative]
    if not kept:
        raise ValueError("hard_negatives=True but no triplet has a hard negative")
    return kept


def batch_loss(encoder, batch: Sequence, train: TrainConfig) -> torch.Tensor:
    """MNR loss of one micro-batch of triplets (:class:`MNRLoss`: anchors, positives and
    optionally hard negatives embedded in one forward pass of the shared encoder)."""
    return MNRLoss()(encoder, batch, train)


class LocalEngine:
    """The optimizer side of a run on one process: a torch optimizer (``train.optimizer``),
    the warmup + decay schedule, a gradient scaler on a GPU in float16, gradient clipping.
    The :class:`Trainer` calls :meth:`backward` per micro-batch, :meth:`step` once per step;
    its checkpoints hold :meth:`state`. Other engines (data parallel, ZeRO-3) implement the
    same methods."""

    sharded = False  # ZeRO-3: checkpoints and forward passes need every process

    def setup(self, encoder, params: Sequence[nn.Parameter], train: TrainConfig,
              device: torch.device) -> None:
        self.params, self.train_cfg, self.device = params, train, device
        self.optimizer = make_optimizer(train.optimizer, params, lr=train.learning_rate,
                                        weight_decay=train.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, train)
        self.scaler = make_scaler(device)

    def forward_context(self):
        """Where the forward pass runs (autocast on a GPU)."""
        return autocast(self.device)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate one micro-batch's loss (averaged over the accumulation steps)."""
        scaled = loss / self.train_cfg.grad_accum
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()

    def micro_step(self) -> None:
        """After each micro-batch's backward (nothing to do here)."""

    def sync_gradients(self) -> None:
        """Combine the processes' gradients (one process: nothing)."""

    def step(self) -> float | None:
        """Clip, step the optimizer and the schedule; returns the gradient norm before
        clipping (None without ``max_grad_norm``)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if self.train_cfg.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.params,
                                                  self.train_cfg.max_grad_norm).item()
            if not math.isfinite(norm) and self.scaler is None:
                return norm  # the trainer stops: diverged
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return norm

    def gathered(self, modify: bool = False):
        """A context in which the trainable weights are whole (ZeRO-3 gathers them)."""
        return contextlib.nullcontext()

    def state(self) -> dict:
        """The optimizer, schedule and scaler states a checkpoint holds."""
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state(self, state, checkpoint: Path) -> None:
        """Restore :meth:`state` from a checkpoint's :class:`~.checkpoints.TrainerState`."""
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        if self.scaler is not None and state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)

    def save_state(self, out_dir: Path, step: int) -> None:
        """State kept outside the checkpoint folder (ZeRO-3's partitions; here: none)."""

    def prune_states(self, out_dir: Path) -> None:
        """Remove what :meth:`save_state` wrote for checkpoints that no longer exist."""


@dataclass(frozen=True)
class TrainerOptions:
    """How a :class:`Trainer` runs, besides what it trains (configuration, encoder, triplets,
    run directory); each field can also be given to ``Trainer`` as a keyword argument.
    See :class:`Trainer` for each one."""

    dev_pairs: Sequence | None = None
    resume: bool = True
    show_progress: bool = True
    callbacks: Sequence[Callback] = ()
    objective: MNRLoss | None = None
    rank: int = 0
    world_size: int = 1
    engine: LocalEngine | None = None


class Trainer:
    """Trains the LoRA parameters of ``encoder`` (from :func:`build_encoder`) on NLI
    ``triplets`` with the MNR loss, as ``cfg.train`` says, into ``out_dir``; how it runs is a
    :class:`TrainerOptions` (``options``, or its fields as keyword arguments):

    ``dev_pairs``: STS pairs evaluated every ``train.eval_every`` steps and at the end.
    ``resume``: continue from ``out_dir``'s latest checkpoint if there is one (the run's recipe
    must match, else :class:`~lacos_helpers.training.runs.RunMismatchError`); False starts over.
    ``objective``: the loss of a micro-batch (default: ``MNRLoss(train.cache_chunk)``, the one
    :class:`MNRLoss`, in GradCache chunks when ``train.cache_chunk`` is set).
    ``rank`` / ``world_size``: this process's place among data-parallel processes: every
    process walks the same global batches and takes its share (:meth:`local_batch`); only rank
    0 writes the run directory.
    ``engine``: what does backward, combines the processes' gradients, the optimizer step and
    its state (:class:`LocalEngine` by
    default; :class:`~lacos_helpers.training.distributed.DataParallelEngine` for data
    parallelism, :class:`~lacos_helpers.training.zero.ZeroEngine` under DeepSpeed ZeRO-3).
    """

    def __init__(self, cfg: RunConfig, encoder, triplets: Sequence, out_dir: str | os.PathLike,
                 options: TrainerOptions | None = None, **kwargs):
        options = dataclasses.replace(options or TrainerOptions(), **kwargs)
        self.cfg, self.train_cfg, self.encoder = cfg, cfg.train, encoder
        self.train_set = usable_triplets(triplets, cfg.train.hard_negatives)
        rank, world_size = options.rank, options.world_size
        if cfg.train.eval_every and not options.dev_pairs:
            raise ValueError("train.eval_every is set but no dev_pairs were given")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in range for world_size {world_size}")
        if cfg.train.batch_size % world_size:
            raise ValueError(f"train.batch_size {cfg.train.batch_size} (the global batch) must "
                             f"be divisible by the {world_size} processes")
        self.dev_pairs, self.resume = options.dev_pairs, options.resume
        self.show_progress, self.callbacks = options.show_progress, list(options.callbacks)
        self.objective = options.objective or MNRLoss(cfg.train.cache_chunk)
        self.rank, self.world_size, self.is_main = rank, world_size, rank == 0
        self.out_dir = Path(out_dir)
        self.device = next(encoder.parameters()).device
        self.params = [p for p in encoder.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters: inject LoRA first "
                             "(lacos_helpers.lora.inject_lora or training.build_encoder)")
        # what run.json records, taken before an engine may partition the parameters
        self.record = runs.run_record(cfg, encoder, len(self.train_set), world_size=world_size)
        self.engine = options.engine or LocalEngine()
        self.engine.setup(encoder, self.params, cfg.train, self.device)
        self.plan = BatchPlan(self.train_set, cfg.train.batch_size, cfg.seed)
        self.step, self.history = 0, []
        self.resumed_from: int | None = None
        self.last_good: Path | None = None
        self._rng_at_step: dict | None = None

    # ---- pieces ----------------------------------------------------------------------------

    def prepare_run_dir(self) -> Path | None:
        """Create ``out_dir``, check that a run there has the same recipe, write ``run.json``;
        returns the checkpoint to resume from (None: start fresh), whole or not: :meth:`restore`
        falls back from a damaged one."""
        record = self.record
        checkpoint = checkpoints.resume_checkpoint(self.out_dir) if self.resume else None
        if checkpoint is not None:
            runs.check_resumable(self.out_dir, record)
        if not self.is_main:
            return checkpoint
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is None and not self.resume:
            checkpoints.clear_checkpoints(self.out_dir)
        runs.write_run(self.out_dir, record)
        save_run_tokenizer(self.cfg, self.encoder, self.out_dir)
        return checkpoint

    def restore(self, checkpoint: Path | None) -> None:
        """Load a checkpoint (adapter, optimizer, scheduler, scaler, RNG, history), or seed a
        fresh run. A damaged checkpoint gives way to the newest whole one before it, with a
        warning naming the damaged file (:func:`checkpoints.read_resumable`). The state is read
        on the CPU; the optimizer moves it to the parameters' device as it loads it."""
        if checkpoint is None:
            torch.manual_seed(self.cfg.seed)
            random.seed(self.cfg.seed)
            return
        with self.engine.gathered(modify=True):
            checkpoint, state = checkpoints.read_resumable(checkpoint, self.encoder.backbone)
        self.engine.load_state(state, checkpoint)
        checkpoints.set_rng_state(state.rng)
        self.step, self.history, self.resumed_from = state.step, state.history, state.step
        self.last_good = checkpoint
        log.info("[train] resumed from %s (step %d of %d)", checkpoint, self.step,
                 self.train_cfg.steps)

    def local_batch(self, micro_batch: int) -> list:
        """This process's share of global micro-batch ``micro_batch`` (all of it with one
        process): the same global batches whatever the number of processes."""
        batch = self.plan[micro_batch]
        share = len(batch) // self.world_size
        return batch[self.rank * share:(self.rank + 1) * share]

    def train_step(self) -> dict:
        """One optimizer step (``grad_accum`` micro-batches); returns its log record."""
        t = self.train_cfg
        t0 = time.perf_counter()
        self.engine.zero_grad()
        lr = self.engine.lr()
        total = 0.0
        for k in range(t.grad_accum):
            batch = self.local_batch(self.step * t.grad_accum + k)
            loss_tensor = self.objective(self.encoder, batch, t, self.engine.forward_context)
            loss = loss_tensor.item()
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss is {loss} at step {self.step + 1}; training stopped. Last good "
                    f"checkpoint: {self.last_good or 'none yet'}. Lower the learning rate or "
                    "check the data.")
            self.engine.backward(loss_tensor)
            total += loss / t.grad_accum
            self.engine.micro_step()
        self.engine.sync_gradients()
        grad_norm = self.engine.step()
        if grad_norm is not None and not math.isfinite(grad_norm) and self.engine.scaler is None:
            raise TrainingDivergedError(
                f"gradient norm is {grad_norm} at step {self.step + 1}; training stopped. Last "
                f"good checkpoint: {self.last_good or 'none yet'}.")
        self.step += 1
        self._rng_at_step = checkpoints.rng_state()  # what a checkpoint of this step restores
        seconds = time.perf_counter() - t0
        return {"kind": "train", "step": self.step, "loss": total, "lr": lr,
                "grad_norm": grad_norm, "seconds": round(seconds, 4),
                "pairs_per_s": round(t.batch_size * t.grad_accum / seconds, 2)}

    def evaluate(self) -> dict:
        """STS Spearman/Pearson on the dev pairs; returns its log record."""
        from lacos_helpers.evaluation import evaluate_sts

        metrics = evaluate_sts(self.encoder, self.dev_pairs, batch_size=self.cfg.eval.batch_size)
        return {"kind": "eval", "step": self.step, **metrics}

    def checkpoint(self) -> Path | None:
        """Checkpoint the state after the current step (rank 0 writes; others return None)."""
        self.engine.save_state(self.out_dir, self.step)  # collective under ZeRO-3
        with self.engine.gathered():
            if not self.is_main:
                return None
            state = checkpoints.TrainerState(
                step=self.step, rng=self._rng_at_step or checkpoints.rng_state(),
                history=self.history, **self.engine.state())
            self.last_good = checkpoints.write_checkpoint(
                self.out_dir, self.encoder.backbone, state, self.train_cfg.keep_checkpoints)
        self.engine.prune_states(self.out_dir)
        return self.last_good

    # ---- the run ---------------------------------------------------------------------------

    def _record(self, record: dict) -> bool:
        """Keep and log a record; True when a callback asks to stop."""
        self.history.append(record)
        if self.is_main:
            runs.append_log(self.out_dir, record)
        stop = False
        for callback in self.callbacks:
            stop = bool(callback(record)) or stop
        return stop

    def _due(self, every: int | None) -> bool:
        return self.step == self.train_cfg.steps or bool(every and self.step % every == 0)

    def _checkpointed_now(self) -> bool:
        return self.last_good is not None and self.last_good.name == f"step-{self.step:06d}"

    def run(self) -> TrainResult:
        """Prepare, restore, then step until ``train.steps`` (evaluating and checkpointing on
        their cadence); writes the final adapter. Ctrl-C checkpoints the finished steps."""
        from tqdm.auto import tqdm

        self.restore(self.prepare_run_dir())
        if self.is_main:
            runs.write_logs(self.out_dir, self.history)
        result = TrainResult(self.out_dir, self.step, self.cfg, len(self.train_set),
                             self.history, self.resumed_from)
        t_start = time.perf_counter()
        bar = tqdm(total=self.train_cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.show_progress and self.is_main), dynamic_ncols=True)
        self.encoder.train()
        try:
            while self.step < self.train_cfg.steps and not result.interrupted:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
                stop = self._record(record)
                if self.dev_pairs and self._due(self.train_cfg.eval_every):
                    evaluation = self.evaluate()
                    bar.write(f"[eval] step {self.step}: STS dev Spearman "
                              f"{evaluation['spearman']:.4f}")
                    stop = self._record(evaluation) or stop
                if stop or self._due(self.train_cfg.checkpoint_every):
                    self.checkpoint()
                result.interrupted = stop and self.step < self.train_cfg.steps
        except KeyboardInterrupt:
            if self.step > 0 and self.is_main and not self._checkpointed_now() \
                    and not self.engine.sharded:
                self.engine.zero_grad()
                path = self.checkpoint()
                log.warning("[train] interrupted: state after step %d saved to %s; run again "
                            "with resume=True to continue", self.step, path)
            raise
        finally:
            bar.close()
            self.encoder.eval()
            if self.is_main:
                runs.write_logs(self.out_dir, self.history)
        result.step, result.history = self.step, self.history
        result.seconds = time.perf_counter() - t_start
        if self.step >= self.train_cfg.steps:
            from lacos_helpers import lora

            with self.engine.gathered():  # collective under ZeRO-3
                if self.is_main:
                    lora.save_adapter(self.encoder.backbone, self.out_dir / runs.ADAPTER_DIR)
        return result


def train(cfg: RunConfig, encoder, triplets: Sequence, *, out_dir: str | os.PathLike,
          dev_pairs: Sequence | None = None, resume: bool = True, show_progress: bool = True,
          callbacks: Sequence[Callback] = (), objective=None) -> TrainResult:
    """Train ``encoder`` on ``triplets`` as ``cfg`` says (see :class:`Trainer`). A non-finite
    loss raises :class:`TrainingDivergedError`; the last checkpoint is kept. On a GPU the
    ``colab`` / ``paper`` profiles are first fitted to its free memory (:mod:`.fit`)."""
    from lacos_helpers.training.fit import fit_encoder_to_device

    cfg = fit_encoder_to_device(cfg, encoder, allow_gradcache=objective is None)
    options = TrainerOptions(dev_pairs=dev_pairs, resume=resume, show_progress=show_progress,
                             callbacks=callbacks, objective=objective)
    return Trainer(cfg, encoder, triplets, out_dir, options).run()
