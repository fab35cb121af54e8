"""What a ZeRO-3 run trains with, read by both the training (:mod:`lacos_helpers.training.zero`)
and the memory prediction per GPU: the recipe and the DeepSpeed configuration template.

ZeRO-3 partitions ``nn.Parameter`` tensors; the 8-bit weights (our ``Int8Linear`` keeps them as
buffers, bitsandbytes as ``Int8Params``) are not partitioned, so under ZeRO-3 the frozen base is
kept in 16 bits (``quant.backend="none"``) and **sharding replaces the 8-bit cast** as the way to
fit it: bfloat16 on a GPU, float32 on a CPU (16-bit arithmetic on a CPU is slow and DeepSpeed's
CPU accelerator trains in float32). The optimizer is AdamW (DeepSpeed's, fp32 moments); the
k-bit preparation is the profile's (``quant.preparation``). LoRA, MNR and the gathered negatives
stay.

This module does not import deepspeed (the memory prediction imports it without the extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lacos_helpers.config import RunConfig

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
AUTO = "auto"  # a DeepSpeed value the run's configuration fills (training.zero.fill_config)


@dataclass(frozen=True)
class Zero3Recipe:
    """The ZeRO-3 recipe of one run on one kind of device: ``dtype``, the frozen base's
    (``bfloat16`` on a GPU, ``float32`` on a CPU); ``config``, the run's configuration as ZeRO-3
    trains it (no 8-bit cast, that dtype for a Hub model, AdamW, the profile's preparation)."""

    dtype: str
    config: RunConfig

    @property
    def base_bytes_per_param(self) -> int:
        """Bytes of one frozen base parameter (2 in 16 bits, 4 in float32)."""
        return DTYPE_BYTES[self.dtype]

    @property
    def bf16(self) -> bool:
        """Whether the engine runs in bfloat16 (DeepSpeed's ``bf16.enabled``)."""
        return self.dtype == "bfloat16"


def _device_type(device) -> str:
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(text).type


def zero3_recipe(cfg: RunConfig, device=None) -> Zero3Recipe:
    """``cfg`` as ZeRO-3 trains it on ``device`` (``"cuda"``, ``"cuda:3"``, ``"cpu"``, a
    ``torch.device``; None or ``"auto"``: this machine): the frozen base in bfloat16 on a GPU,
    float32 on a CPU, not cast to 8 bits; AdamW. See the module docstring."""
    dtype = "bfloat16" if _device_type(device) == "cuda" else "float32"
    model = {"dtype": dtype} if cfg.model.kind == "hub" else {}
    trained = cfg.replace(quant={"backend": "none", "load_in_8bit": False}, model=model,
                          train={"optimizer": "adamw"})
    return Zero3Recipe(dtype=dtype, config=trained)


def zero3_template(offload_params: bool = True, offload_optimizer: bool = True) -> dict:
    """The ZeRO-3 (+ CPU offload) DeepSpeed configuration with ``"auto"`` where the run's
    configuration decides (batch, accumulation, clipping, learning rate, 16-bit mode). Bucket
    sizes are in elements (parameters), not bytes. No ``scheduler`` section: the engine gets
    the trainer's warmup + decay (``ZeroEngine.setup``; DeepSpeed's ``WarmupLR`` starts from
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


__all__ = ["AUTO", "DTYPE_BYTES", "Zero3Recipe", "zero3_recipe", "zero3_template"]
