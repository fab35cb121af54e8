"""Data-parallel training over several processes (GPUs, or CPU processes with gloo), launched by
an existing engine: ``torchrun`` or ``accelerate launch`` start the processes and set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``; this module joins them::

    torchrun --nproc-per-node 4 -m lacos_helpers train --profile colab --out runs/ddp
    accelerate launch --multi_gpu --num_processes 4 -m lacos_helpers train --profile colab ...

Every process holds the whole (8-bit + LoRA) model and walks the same global batches
(:class:`~lacos_helpers.data.sampling.BatchPlan`); process r embeds its shard (``batch_size /
world_size`` triplets, :meth:`Trainer.local_batch`). The MNR loss needs the *global* batch: the
shards' embeddings are all-gathered **with gradients** (:func:`all_gather_with_grad`: the
process's own shard keeps its autograd graph, the others are constants, as sentence-
transformers' ``gather_across_devices`` and LLM2Vec do), so every anchor is scored against the
positives and hard negatives of all processes. Embeddings are gathered *per role*
(``[roles, s, d]`` -> ``[roles, B, d]``), so anchor i's positive is column i and its hard
negative column B + i whatever the process count.

Gradients: every process computes the *same* global loss L and back-propagates into its own
shard only, giving ``dL/de_r * de_r/dθ``; the gradient of L is the **sum** over processes
(:meth:`DataParallelEngine.sync_gradients`), not the mean. Every process then takes the same
optimizer step, so the replicas stay identical (they start from rank 0's weights, broadcast as
DDP does).

Only rank 0 writes the run directory (``run.json``, logs, checkpoints, adapter); a checkpoint
holds the full adapter and optimizer state, so a run resumes with any number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from lacos_helpers.encoder.losses.triplet_mnr import MNRLoss
from lacos_helpers.training.loop import LocalEngine, Trainer, TrainerOptions

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0


# --------------------------------------------------------------------------------------------
# the processes
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands among the launched ones."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def launch_info(environ: Mapping[str, str] | None = None) -> ProcessInfo:
    """This process's rank from the launcher's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``: torchrun, ``accelerate launch``, the ``deepspeed`` launcher); one process
    when they are not set. Inconsistent values are an error naming them."""
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE")
    rank = _env_int(environ, "RANK")
    if world is None and rank is None:
        return ProcessInfo()
    if world is None or rank is None:
        raise ValueError("RANK and WORLD_SIZE must be set together (launch with torchrun or "
                         f"accelerate launch); got RANK={rank}, WORLD_SIZE={world}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in range for WORLD_SIZE={world}")
    local = _env_int(environ, "LOCAL_RANK")
    return ProcessInfo(rank, world, rank if local is None else local)


def process_device(info: ProcessInfo) -> str:
    """The device of this process: ``cuda:<local rank>`` when CUDA is available, else cpu."""
    return f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"


def init_process_group(info: ProcessInfo | None = None, *, backend: str | None = None,
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> ProcessInfo:
    """Join the launched processes (``env://``: ``MASTER_ADDR`` / ``MASTER_PORT`` from the
    launcher): NCCL on GPUs, gloo on CPUs; each process takes GPU ``LOCAL_RANK``. Idempotent;
    one process: nothing to do. A collective that waits longer than ``timeout_s`` fails."""
    info = info or launch_info()
    if not info.is_distributed or dist.is_initialized():
        return info
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    cuda = torch.cuda.is_available()
    if cuda:
        if info.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {info.local_rank} but only "
                               f"{torch.cuda.device_count()} GPU(s) visible")
        torch.cuda.set_device(info.local_rank)
    backend = backend or ("nccl" if cuda else "gloo")
    dist.init_process_group(backend, init_method="env://", rank=info.rank,
                            world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    log.info("[dist] process %d of %d joined (%s, %s)", info.rank, info.world_size, backend,
             process_device(info))
    return info


def shutdown() -> None:
    """Wait for every process, then leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every process (no-op with one)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (it may write caches: generated data, a trained tokenizer),
    the others after it, reading what it wrote."""
    rank, world = rank_and_world()
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def broadcast_object(value=None, src: int = 0):
    """``value`` of process ``src`` on every process (picklable objects)."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0, its result on every process; an exception on rank 0
    is raised on every process (the others do not wait forever for a result that never
    comes)."""
    rank, world = rank_and_world()
    if world == 1:
        return fn(*args, **kwargs)
    outcome = None
    if rank == 0:
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except Exception as error:  # re-raised below, after the others are told
            outcome = ("error", error)
    status, value = broadcast_object(outcome)
    if status == "error":
        if rank == 0:
            raise value
        raise RuntimeError(f"rank 0 failed: {type(value).__name__}: {value}") from value
    return value


# --------------------------------------------------------------------------------------------
# gathering embeddings
# --------------------------------------------------------------------------------------------

def all_gather_with_grad(local: Tensor, dim: int = 1) -> tuple[Tensor, slice]:
    """Concatenate every process's ``local`` along ``dim`` (in rank order) -> ``(global,
    own)``: ``global[..., own, ...]`` is this process's ``local`` **with its autograd graph**;
    the other shards are constants. Every process must pass the same shape. One process: the
    identity."""
    rank, world = rank_and_world()
    n = local.shape[dim]
    own = slice(rank * n, (rank + 1) * n)
    if world == 1:
        return local, own
    shards = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(shards, local.detach().contiguous())
    shards[rank] = local  # the local shard keeps its graph: gradients flow into this process
    return torch.cat(shards, dim=dim), own


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------

class DataParallelEngine(LocalEngine):
    """:class:`~lacos_helpers.training.loop.LocalEngine` on one of several data-parallel
    processes: every process holds the whole model and takes the same optimizer step; the
    gradients are all-reduced in one flat buffer before clipping, **summed** for the gathered
    objectives (``reduction="sum"``: each process holds one term of the global gradient),
    averaged for an objective whose loss is per process (``"mean"``)."""

    replicated = True  # every process holds the whole model: start from rank 0's weights

    def __init__(self, reduction: str = "sum"):
        if reduction not in ("sum", "mean"):
            raise ValueError(f"objective.gradient_reduction must be 'sum' or 'mean', got "
                             f"{reduction!r}")
        self.reduction = reduction

    def sync_gradients(self) -> None:
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in self.params]).float()
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if self.reduction == "mean":
            flat /= dist.get_world_size()
        for p, grad in zip(self.params, flat.split([p.numel() for p in self.params])):
            p.grad = grad.view_as(p).to(p.dtype)


class DistributedTrainer(Trainer):
    """:class:`~lacos_helpers.training.loop.Trainer` for one of several data-parallel processes
    (the process group must be initialized: :func:`init_process_group`). Takes the same
    arguments; ``objective`` defaults to the gathered MNR (:func:`all_gather_with_grad`, in
    GradCache chunks when ``train.cache_chunk`` is set), ``engine`` to
    :class:`DataParallelEngine` (:class:`~lacos_helpers.training.zero.ZeroEngine` for ZeRO-3).
    ``train.batch_size`` is the **global** batch (divisible by the number of processes); each
    process embeds its share.
    Every process must be given the same configuration, data and ``dev_pairs``."""

    def __init__(self, cfg, encoder, triplets, out_dir, options: TrainerOptions | None = None,
                 **kwargs):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("DistributedTrainer needs an initialized process group: launch "
                               "with torchrun / accelerate launch and call "
                               "distributed.init_process_group() first")
        for key in ("rank", "world_size"):
            if key in kwargs:
                raise TypeError(f"DistributedTrainer takes {key} from the process group")
        options = dataclasses.replace(options or TrainerOptions(), **kwargs)
        objective = options.objective or MNRLoss(cfg.train.cache_chunk, gather=all_gather_with_grad)
        engine = options.engine or DataParallelEngine(objective.gradient_reduction)
        super().__init__(cfg, encoder, triplets, out_dir, dataclasses.replace(
            options, objective=objective, engine=engine, rank=dist.get_rank(),
            world_size=dist.get_world_size()))
        if getattr(self.engine, "replicated", False):  # start from rank 0's weights, as DDP
            with torch.no_grad():
                for p in self.params:
                    dist.broadcast(p.data, src=0)

    # ---- run directory: decided by rank 0, told to the others ------------------------------

    def prepare_run_dir(self) -> Path | None:
        """Rank 0 checks the run directory and writes ``run.json``; every process gets the
        checkpoint to resume from (or rank 0's error, e.g. a recipe mismatch)."""
        return run_on_main(super().prepare_run_dir)

    def restore(self, checkpoint: Path | None) -> None:
        """Every process loads the same checkpoint (with any number of processes: it holds the
        full adapter and optimizer state), then waits for the others."""
        super().restore(checkpoint)
        barrier()

    def checkpoint(self) -> Path | None:
        """Rank 0 writes the checkpoint; the others wait until it is complete and learn its
        path (not while handling Ctrl-C: the other processes are stopping too)."""
        path = super().checkpoint()
        if isinstance(sys.exception(), KeyboardInterrupt):
            return path
        path = broadcast_object(path)
        self.last_good = path
        return path

    # ---- the step ------------------------------------------------------------------------

    def evaluate(self) -> dict:
        """Rank 0 evaluates; every process gets its record (the same history everywhere).
        Under ZeRO-3 every process evaluates (its forward passes gather the partitions)."""
        if getattr(self.engine, "sharded", False):
            return super().evaluate()
        return run_on_main(super().evaluate)

    def _record(self, record: dict) -> bool:
        """Keep the record; stop when a callback on *any* process asks to (all processes
        stop at the same step)."""
        stop = super()._record(record)
        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)  # NCCL: on the GPU
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def run(self):
        result = super().run()
        barrier()  # rank 0 has written the final adapter
        return result


__all__ = [
    "DataParallelEngine", "DistributedTrainer", "ProcessInfo",
    "all_gather_with_grad",
    "barrier", "broadcast_object", "init_process_group", "launch_info",
    "main_process_first", "process_device",
    "rank_and_world", "run_on_main", "shutdown",
]
