"""Training: build the encoder (``build``), run the loop (``loop``: :class:`Trainer`,
:func:`train`), the learning-rate schedule (``schedule``), mixed precision (``precision``),
checkpoints (``checkpoints``) and run directories (``runs``: ``run.json``, logs, resume check);
several processes (``distributed``: gathered negatives, :class:`DistributedTrainer` with its
``DataParallelEngine``) and DeepSpeed ZeRO-3 (``zero``: the ``ZeroEngine`` of the same trainer,
imported on use: it needs the ``deepspeed`` extra; ``zero_recipe``: what ZeRO-3 trains with,
read by the memory prediction too); fitting a run to its GPU's memory before it trains
(``fit``).
"""

from lacos_helpers.data.sampling import BatchPlan
from lacos_helpers.encoder.losses.triplet_mnr import MNRLoss
from lacos_helpers.training.build import build_encoder, load_encoder, quantize_backbone
from lacos_helpers.training.checkpoints import latest_checkpoint
from lacos_helpers.training.distributed import DataParallelEngine, DistributedTrainer
from lacos_helpers.training.fit import DeviceMemoryError, fit_encoder_to_device, fit_to_device
from lacos_helpers.training.loop import (
    LocalEngine,
    Trainer,
    TrainerOptions,
    TrainingDivergedError,
    TrainResult,
    batch_loss,
    train,
    usable_triplets,
)
from lacos_helpers.training.runs import (
    RunMismatchError,
    load_run_config,
    read_log,
    read_run,
    run_adapter_dir,
)
from lacos_helpers.training.schedule import lr_factor, make_scheduler

__all__ = [
    "BatchPlan",
    "DeviceMemoryError",
    "DistributedTrainer",
    "DataParallelEngine",
    "RunMismatchError",
    "TrainResult",
    "LocalEngine",
    "MNRLoss",
    "Trainer",
    "TrainerOptions",
    "TrainingDivergedError",
    "batch_loss",
    "build_encoder",
    "fit_encoder_to_device",
    "fit_to_device",
    "latest_checkpoint",
    "load_encoder",
    "load_run_config",
    "lr_factor",
    "make_scheduler",
    "quantize_backbone",
    "read_log",
    "read_run",
    "run_adapter_dir",
    "train",
    "usable_triplets",
]
