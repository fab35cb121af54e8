"""DeepSpeed ZeRO stage 3 with CPU offload: training LACoS on a model that does not fit one GPU
(the paper's future work: BLOOM-176B; the memory per GPU is :mod:`lacos_helpers.memory.zero3`).

Unlike data parallelism (:mod:`lacos_helpers.training.distributed`: a whole model per GPU),
ZeRO-3 **partitions** every parameter across the processes and gathers a module's weights only
while it runs; with ``offload_param`` / ``offload_optimizer`` the shards and the optimizer live
in CPU RAM. The negatives are gathered as in data parallelism. What trains is
:func:`~lacos_helpers.training.zero_recipe.zero3_recipe`, through the one
:class:`~lacos_helpers.training.loop.Trainer` with :class:`ZeroEngine` doing backward and the
optimizer step.

The configuration is :func:`zero3_template`; the shipped ``configs/deepspeed/zero3_offload.json``
and ``configs/accelerate/deepspeed_zero3_offload.yaml`` are written from it (``python -m
lacos_helpers zero-configs configs``); :func:`fill_config` fills its ``"auto"`` values.

``python -m lacos_helpers train --zero3`` trains; a killed run resumes with the same number of
processes::

    deepspeed --no_local_rank --num_gpus 8 --module lacos_helpers train --zero3 --profile paper \\
        --out runs/z3
    accelerate launch --config_file configs/accelerate/deepspeed_zero3_offload.yaml \\
        -m lacos_helpers train --zero3 --profile ci --steps 10 --out runs/z3
    DS_ACCELERATOR=cpu torchrun --nproc-per-node 2 -m lacos_helpers train --zero3 ...  # CPU
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from lacos_helpers.config import RunConfig
from lacos_helpers.training.zero_recipe import AUTO, zero3_recipe, zero3_template

log = logging.getLogger(__name__)

JSON_NAME = "deepspeed/zero3_offload.json"
ACCELERATE_NAME = "accelerate/deepspeed_zero3_offload.yaml"


# --------------------------------------------------------------------------------------------
# the configuration
# --------------------------------------------------------------------------------------------

def accelerate_config(json_path: str = f"configs/{JSON_NAME}", num_processes: int = 8) -> dict:
    """``accelerate launch --config_file`` settings for the ZeRO-3 configuration: one machine,
    ``num_processes`` GPUs, DeepSpeed with the JSON file at ``json_path``."""
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {"deepspeed_config_file": json_path, "zero3_init_flag": False},
        "machine_rank": 0,
        "num_machines": 1,
        "num_processes": num_processes,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }


def auto_values(cfg: RunConfig, world_size: int, cuda: bool | None = None,
                bf16: bool | None = None) -> dict:
    """What each ``"auto"`` of :func:`zero3_template` becomes for ``cfg`` on ``world_size``
    processes (``train.batch_size`` is the global batch of one micro-step, as in the
    trainer). ``cuda`` / ``bf16``: the target machine (default: this one). A batch that does
    not split evenly is an error."""
    t = cfg.train
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if t.batch_size % world_size:
        raise ValueError(f"train.batch_size {t.batch_size} (the global batch) must be divisible "
                         f"by the {world_size} processes")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if bf16 is None:
        bf16 = bool(cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return {
        "train_batch_size": t.batch_size * t.grad_accum,
        "train_micro_batch_size_per_gpu": t.batch_size // world_size,
        "gradient_accumulation_steps": t.grad_accum,
        "gradient_clipping": t.max_grad_norm or 0.0,
        "lr": t.learning_rate, "weight_decay": t.weight_decay,
        "enabled": bool(bf16),  # bf16 where the GPU has it; fp32 on a CPU
        "pin_memory": cuda,  # page-locked CPU buffers speed up GPU <-> CPU copies
    }


def fill_config(config: Mapping, cfg: RunConfig, world_size: int,
                cuda: bool | None = None, bf16: bool | None = None) -> dict:
    """A copy of a DeepSpeed configuration with every ``"auto"`` replaced from ``cfg``
    (:func:`auto_values`), then checked (:func:`check_config`). An ``"auto"`` under a key
    this function does not know is an error naming it."""
    values = auto_values(cfg, world_size, cuda, bf16)

    def fill(node, path):
        if isinstance(node, Mapping):
            return {k: fill(v, f"{path}.{k}" if path else k) for k, v in node.items()}
        if node == AUTO:
            key = path.rsplit(".", 1)[-1]
            if key not in values:
                raise ValueError(f"no value for {path} = 'auto' (known: {sorted(values)})")
            return values[key]
        return copy.deepcopy(node)

    filled = fill(config, "")
    check_config(filled, world_size)
    return filled


def check_config(config: Mapping, world_size: int) -> None:
    """Raise a ValueError for what DeepSpeed would reject later and less clearly: an
    unresolved ``"auto"``, batch sizes that do not multiply out, a ZeRO stage other than 3
    or an offload device other than cpu / nvme."""
    text = json.dumps(config)
    if f'"{AUTO}"' in text:
        raise ValueError("the configuration still holds 'auto' values: fill_config() first")
    micro = config["train_micro_batch_size_per_gpu"]
    accum = config["gradient_accumulation_steps"]
    if config["train_batch_size"] != micro * accum * world_size:
        raise ValueError(f"train_batch_size {config['train_batch_size']} != micro batch {micro} "
                         f"x accumulation {accum} x {world_size} processes")
    zero = config.get("zero_optimization", {})
    if zero.get("stage") != 3:
        raise ValueError(f"this configuration is for ZeRO stage 3, got {zero.get('stage')!r}")
    for key in ("offload_param", "offload_optimizer"):
        device = zero.get(key, {}).get("device", "cpu")
        if device not in ("cpu", "nvme", "none"):
            raise ValueError(f"zero_optimization.{key}.device must be cpu, nvme or none, got "
                             f"{device!r}")


def load_config(path: str | os.PathLike, cfg: RunConfig, world_size: int) -> dict:
    """Read a DeepSpeed JSON file and fill it for ``cfg`` (:func:`fill_config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no DeepSpeed configuration at {path}")
    return fill_config(json.loads(path.read_text(encoding="utf-8")), cfg, world_size)


def zero_recipe(cfg: RunConfig) -> RunConfig:
    """``cfg`` as ZeRO-3 trains it on its device (``model.device``; ``auto``: this machine):
    the configuration of :func:`~lacos_helpers.training.zero_recipe.zero3_recipe`, the one
    recipe the memory prediction reads too."""
    return zero3_recipe(cfg, cfg.model.device).config


def write_configs(folder: str | os.PathLike) -> list[Path]:
    """Write the shipped files (the JSON and the accelerate YAML) under ``folder``."""
    import yaml

    folder = Path(folder)
    paths = [folder / JSON_NAME, folder / ACCELERATE_NAME]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(json.dumps(zero3_template(), indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(
        "# accelerate launch --config_file configs/accelerate/deepspeed_zero3_offload.yaml \\\n"
        "#     -m lacos_helpers train --zero3 --profile <profile> --out <run>\n"
        "# Written by `python -m lacos_helpers zero-configs configs`.\n"
        + yaml.safe_dump(accelerate_config(), sort_keys=False), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------
# training under the engine: the Trainer's engine for ZeRO-3
# --------------------------------------------------------------------------------------------

ZERO_STATES = "zero"  # checkpoints/zero/step-NNNNNN/: the engine's partitions, one per process


class ZeroEngine:
    """The :class:`~lacos_helpers.training.loop.Trainer`'s engine under DeepSpeed ZeRO-3
    (``ds_config``: a filled configuration, :func:`fill_config`). DeepSpeed partitions the
    parameters, does the backward (dividing by the accumulation steps), clips and steps its
    optimizer and the trainer's schedule at the accumulation boundary.

    ``reduction``: ZeRO *averages* the processes' gradients; the gathered MNR needs their
    *sum* (every process holds one term of the global gradient), so with ``"sum"`` the loss is
    scaled by the number of processes.

    Checkpoints: every process writes its partitions of the optimizer and schedule state with
    DeepSpeed's ``save_checkpoint`` under ``checkpoints/zero/step-NNNNNN`` before rank 0 writes
    the trainer's checkpoint (adapter gathered whole, RNG, history) and moves ``latest``; a
    resume loads both (the same number of processes: the partitions are per process)."""

    sharded = True  # parameters live in partitions: checkpoints and forwards need everyone

    def __init__(self, ds_config: Mapping, reduction: str = "sum"):
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.ds_config, self.reduction = dict(ds_config), reduction
        self.scaler = None

    def setup(self, encoder, params, train, device) -> None:
        """The DeepSpeed engine around ``encoder`` training ``params`` (LoRA), with the
        trainer's learning-rate schedule on DeepSpeed's optimizer."""
        import deepspeed

        from lacos_helpers.training.distributed import rank_and_world
        from lacos_helpers.training.schedule import make_scheduler

        self.params, self.train_cfg = list(params), train
        self.rank, self.world = rank_and_world()
        self.ds, _, _, _ = deepspeed.initialize(
            model=encoder, model_parameters=self.params, config=dict(self.ds_config),
            lr_scheduler=lambda optimizer: make_scheduler(optimizer, train))
        self.optimizer, self.scheduler = self.ds.optimizer, self.ds.lr_scheduler

    def forward_context(self):
        return contextlib.nullcontext()

    def zero_grad(self) -> None:
        """DeepSpeed clears the gradients after its step."""

    def lr(self) -> float:
        return self.ds.get_lr()[0]

    def backward(self, loss: torch.Tensor) -> None:
        self.ds.backward(loss * self.world if self.reduction == "sum" else loss)

    def micro_step(self) -> None:
        self.ds.step()  # DeepSpeed steps the optimizer at the accumulation boundary

    def sync_gradients(self) -> None:
        """DeepSpeed reduces the gradients in its backward."""

    def step(self) -> float | None:
        norm = self.ds.get_global_grad_norm()
        return None if norm is None else float(norm)

    def gathered(self, modify: bool = False):
        """The LoRA weights gathered from their partitions (every process must enter);
        ``modify``: what rank 0 writes into them is partitioned again on exit."""
        import deepspeed

        return deepspeed.zero.GatheredParameters(self.params,
                                                 modifier_rank=0 if modify else None)

    def state(self) -> dict:
        return {"optimizer": {}, "scheduler": {}, "scaler": None}  # in checkpoints/zero/

    def load_state(self, state, checkpoint: Path) -> None:
        folder = checkpoint.parent / ZERO_STATES
        if not (folder / checkpoint.name).is_dir():
            raise FileNotFoundError(f"{folder / checkpoint.name} is missing: the ZeRO-3 "
                                    "optimizer state of this checkpoint; start over with "
                                    "--no-resume")
        path, _ = self.ds.load_checkpoint(str(folder), tag=checkpoint.name,
                                          load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load {folder / checkpoint.name}")

    def save_state(self, out_dir: Path, step: int) -> None:
        from lacos_helpers.training.checkpoints import CHECKPOINT_DIR

        self.ds.save_checkpoint(str(out_dir / CHECKPOINT_DIR / ZERO_STATES),
                                tag=f"step-{step:06d}")

    def prune_states(self, out_dir: Path) -> None:
        """Rank 0 removes the partitions of checkpoints the trainer pruned."""
        import shutil

        from lacos_helpers.training.checkpoints import CHECKPOINT_DIR

        if self.rank != 0:
            return
        root = out_dir / CHECKPOINT_DIR
        for folder in (root / ZERO_STATES).glob("step-*"):
            if not (root / folder.name).is_dir():
                shutil.rmtree(folder, ignore_errors=True)


def join_processes() -> None:
    """Join the launched processes through DeepSpeed (NCCL on GPUs, gloo on CPUs)."""
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def run_config(cfg: RunConfig, world_size: int, path: str | os.PathLike | None = None) -> dict:
    """The filled DeepSpeed configuration of a run: the file at ``path`` (else accelerate's,
    ``ACCELERATE_DEEPSPEED_CONFIG_FILE``), else the built-in template."""
    path = path or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    return load_config(path, cfg, world_size) if path else \
        fill_config(zero3_template(), cfg, world_size)
