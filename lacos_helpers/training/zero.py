"""DeepSpeed ZeRO stage 3 with CPU offload: training LACoS on a model that does not fit one GPU
(the paper's future work: BLOOM-176B; the memory per GPU is :mod:`lacos_helpers.zero_memory`).

Data parallelism (:mod:`lacos_helpers.training.distributed`) keeps a whole copy of the model on
every GPU. ZeRO-3 instead **partitions** every parameter across the N processes and gathers a
module's weights only while it runs; with ``offload_param`` / ``offload_optimizer`` the shards
and the optimizer live in CPU RAM. The negatives are gathered exactly as in data parallelism
(the same :class:`~lacos_helpers.training.distributed.GatheredMNRObjective`).

What changes in the recipe: ZeRO-3 partitions ``nn.Parameter`` tensors, and the 8-bit weights
(our ``Int8Linear`` keeps them as buffers, bitsandbytes as ``Int8Params``) are not partitioned:
under ZeRO-3 the frozen base is kept in 16 bits (``quant.backend="none"``) and **sharding
replaces the 8-bit cast** as the way to fit it. LoRA, MNR, the gathered negatives stay.

The configuration is written here, in Python (:func:`zero3_template`); the files shipped for
the launchers, ``configs/deepspeed/zero3_offload.json`` and
``configs/accelerate/deepspeed_zero3_offload.yaml``, are written from it (``python -m
lacos_helpers.training.zero --write-configs configs``; a test keeps them equal). Values that
come from the run's configuration are ``"auto"`` there and filled by :func:`fill_config`.

One command trains a few steps under ZeRO-3 and saves the adapter (the engine's own
checkpoints and the trainer's resume are not wired in: see the README)::

    deepspeed --num_gpus 8 --module lacos_helpers.training.zero --profile ci --steps 10 \\
        --out runs/z3
    accelerate launch --config_file configs/accelerate/deepspeed_zero3_offload.yaml \\
        -m lacos_helpers.training.zero --profile ci --steps 10 --out runs/z3
    DS_ACCELERATOR=cpu torchrun --nproc-per-node 2 -m lacos_helpers.training.zero ...  # CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from lacos_helpers.config import RunConfig

log = logging.getLogger(__name__)

AUTO = "auto"
JSON_NAME = "deepspeed/zero3_offload.json"
ACCELERATE_NAME = "accelerate/deepspeed_zero3_offload.yaml"


# --------------------------------------------------------------------------------------------
# the configuration
# --------------------------------------------------------------------------------------------

def zero3_template(offload_params: bool = True, offload_optimizer: bool = True) -> dict:
    """The ZeRO-3 (+ CPU offload) DeepSpeed configuration with ``"auto"`` where the run's
    configuration decides (batch, accumulation, clipping, learning rate, 16-bit mode). Bucket
    sizes are in elements (parameters), not bytes. No ``scheduler`` section: the engine gets
    the trainer's warmup + decay (:func:`initialize`; DeepSpeed's ``WarmupLR`` starts from
    learning rate 0)."""
    zero: dict = {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 500_000_000,
        "stage3_prefetch_bucket_size": 500_000_000,
        "stage3_param_persistence_threshold": 1_000_000,
        "stage3_max_live_parameters": 1_000_000_000,
        "stage3_max_reuse_distance": 1_000_000_000,
        "stage3_gather_16bit_weights_on_model_save": False,  # we save only the adapter
    }
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": AUTO}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": AUTO}
    return {
        "train_batch_size": AUTO,
        "train_micro_batch_size_per_gpu": AUTO,
        "gradient_accumulation_steps": AUTO,
        "gradient_clipping": AUTO,
        "zero_optimization": zero,
        # DeepSpeed's CPU Adam when the optimizer is offloaded (fp32 states on the CPU)
        "optimizer": {"type": "AdamW", "params": {"lr": AUTO, "betas": [0.9, 0.999],
                                                  "eps": 1e-8, "weight_decay": AUTO}},
        "bf16": {"enabled": AUTO},
        "steps_per_print": 100,
        "wall_clock_breakdown": False,
    }


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
    """``cfg`` as ZeRO-3 trains it: the frozen base in 16 bits on a GPU (float32 on a CPU),
    not cast to 8 bits (see the module docstring); AdamW (DeepSpeed's optimizer)."""
    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    model = {"dtype": dtype} if cfg.model.kind == "hub" else {}
    return cfg.replace(quant={"backend": "none", "load_in_8bit": False}, model=model,
                       train={"optimizer": "adamw"})


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
        "#     -m lacos_helpers.training.zero --profile <profile> --out <run>\n"
        "# Written by `python -m lacos_helpers.training.zero --write-configs configs`.\n"
        + yaml.safe_dump(accelerate_config(), sort_keys=False), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------
# training under the engine
# --------------------------------------------------------------------------------------------

def sum_over_processes_backward(engine, world_size: int):
    """The ``backward`` callable for a gathered objective under DeepSpeed: ZeRO *averages*
    the processes' gradients, the gathered MNR needs their *sum* (every process holds one term
    of the global gradient), so the loss is scaled by the number of processes. (The engine
    also divides by the accumulation steps.)"""
    return lambda loss: engine.backward(loss * world_size)


def initialize(cfg: RunConfig, encoder, ds_config: Mapping):
    """The DeepSpeed engine around ``encoder`` (its trainable parameters: LoRA), with the
    trainer's learning-rate schedule (:func:`~lacos_helpers.training.schedule.make_scheduler`)
    on DeepSpeed's optimizer."""
    import deepspeed

    from lacos_helpers.training.schedule import make_scheduler

    params = [p for p in encoder.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the encoder has no trainable parameters: inject LoRA first")
    engine, _, _, _ = deepspeed.initialize(
        model=encoder, model_parameters=params, config=dict(ds_config),
        lr_scheduler=lambda optimizer: make_scheduler(optimizer, cfg.train))
    return engine


def train_steps(cfg: RunConfig, encoder, engine, triplets, steps: int) -> list[dict]:
    """``steps`` optimizer steps of the gathered MNR (GradCache when ``train.cache_chunk``)
    under the engine; returns one record per step (loss of the global batch, lr, gradient
    norm before clipping, seconds)."""
    from lacos_helpers.data.sampling import BatchPlan
    from lacos_helpers.training.distributed import distributed_objective, rank_and_world
    from lacos_helpers.training.loop import usable_triplets

    rank, world = rank_and_world()
    t = cfg.train
    plan = BatchPlan(usable_triplets(triplets, t.hard_negatives), t.batch_size, cfg.seed)
    objective = distributed_objective(t)
    backward = sum_over_processes_backward(engine, world)
    share = t.batch_size // world
    encoder.train()
    records = []
    for step in range(steps):
        t0 = time.perf_counter()
        lr = engine.get_lr()[0]
        total = 0.0
        for k in range(t.grad_accum):
            batch = plan[step * t.grad_accum + k][rank * share:(rank + 1) * share]
            total += objective.loss_and_backward(encoder, batch, t, backward) / t.grad_accum
            engine.step()  # DeepSpeed steps the optimizer at the accumulation boundary
        norm = engine.get_global_grad_norm()
        records.append({"kind": "train", "step": step + 1, "loss": total, "lr": lr,
                        "grad_norm": None if norm is None else float(norm),
                        "seconds": round(time.perf_counter() - t0, 4)})
        log.info("[zero] step %d: loss %.4f, grad norm %s", step + 1, total, norm)
    return records


def adapter_state(encoder) -> dict[str, torch.Tensor]:
    """The LoRA weights, gathered from their ZeRO-3 partitions (call on every process)."""
    import deepspeed

    from lacos_helpers import lora

    params = [p for p in encoder.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        return {k: v.clone() for k, v in lora.lora_state_dict(encoder.backbone).items()}


def save_adapter(encoder, folder: str | os.PathLike, is_main: bool) -> None:
    """Gather the LoRA weights and write them in peft's format (rank 0)."""
    import deepspeed

    from lacos_helpers import lora

    params = [p for p in encoder.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        if is_main:
            lora.save_adapter(encoder.backbone, folder)


# --------------------------------------------------------------------------------------------
# python -m lacos_helpers.training.zero
# --------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lacos_helpers.training.zero",
                                description="a few LACoS steps under DeepSpeed ZeRO-3")
    p.add_argument("--profile", default=None)
    p.add_argument("--out", default=None, help="write the adapter and zero_result.json here")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None, help="global batch")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--limit", type=int, default=None, help="at most N NLI triplets")
    p.add_argument("--config", default=None,
                   help="DeepSpeed JSON (default: accelerate's, else the built-in template)")
    p.add_argument("--write-configs", default=None, metavar="FOLDER",
                   help="only write the shipped JSON / YAML files under FOLDER")
    # the `deepspeed` launcher passes --local_rank (LOCAL_RANK is read from the environment)
    p.add_argument("--local_rank", "--local-rank", type=int, default=None,
                   help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.write_configs:
        for path in write_configs(args.write_configs):
            print(path)
        return 0
    import deepspeed

    from lacos_helpers import config, data, runtime
    from lacos_helpers.training import distributed
    from lacos_helpers.training.build import build_encoder

    runtime.show_logs()
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    rank, world = distributed.rank_and_world()
    info = distributed.launch_info()
    if rank != 0:  # one copy of the log lines, from rank 0
        logging.getLogger(runtime.PACKAGE_LOGGER).setLevel(logging.WARNING)
    cfg = config.load_profile(args.profile).replace_paths({
        "train.steps": args.steps, "train.batch_size": args.batch_size,
        "train.learning_rate": args.lr, "data.nli_limit": args.limit,
        "model.device": distributed.process_device(info)})
    cfg = zero_recipe(cfg)
    path = args.config or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    ds_config = (load_config(path, cfg, world) if path
                 else fill_config(zero3_template(), cfg, world))
    runtime.seed_everything(cfg.seed)
    with distributed.main_process_first():
        triplets = data.load_nli_triplets(cfg.data.train_langs, limit=cfg.data.nli_limit,
                                          seed=cfg.seed, source=cfg.data.source,
                                          split=cfg.data.nli_split)
        encoder = build_encoder(cfg, texts=data.training_texts(triplets))
    engine = initialize(cfg, encoder, ds_config)
    records = train_steps(cfg, encoder, engine, triplets, cfg.train.steps)
    if args.out:
        out = Path(args.out)
        save_adapter(encoder, out / "adapter", rank == 0)
        if rank == 0:
            (out / "zero_result.json").write_text(json.dumps(
                {"world_size": world, "config": ds_config, "records": records}, indent=1))
    if rank == 0:
        print(json.dumps(records, indent=1))
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
