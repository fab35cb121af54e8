"""Memory per GPU of LACoS training under DeepSpeed ZeRO stage 3 on N GPUs (BLOOM-176B: the
paper's future work): the single-device memory model (:mod:`lacos_helpers.memory.step`) applied
to the recipe ZeRO-3 trains with (:func:`lacos_helpers.training.zero_recipe.zero3_recipe`), with
the offload and bucket settings of the DeepSpeed configuration. Per GPU (GB = 1e9 bytes):

``weights``
    the frozen base in the recipe's 16 bits, ``/ N`` (ZeRO-3 does not partition 8-bit buffers,
    see :mod:`lacos_helpers.training.zero`); none when parameters are offloaded to CPU RAM;
``trainable``
    LoRA weights, gradients and Adam's two fp32 moments, ``/ N`` (offloaded moments: CPU RAM);
``live``
    what ZeRO-3 gathers to compute: a module is gathered whole, so at least the largest one
    (BLOOM's word embeddings), up to ``stage3_max_live_parameters``, plus the prefetch bucket;
``activations``
    those of the process's own ``batch / N`` triplets, not partitioned.

Temporaries and the CUDA context stay per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from lacos_helpers import bloom
from lacos_helpers.checks import check_int, markdown_table
from lacos_helpers.config import RunConfig, load_profile
from lacos_helpers.memory.step import GB, estimate_training_memory


@dataclass(frozen=True)
class Zero3Memory:
    """One row: bytes per GPU by part, and the CPU RAM per node that offloading needs."""

    n_gpus: int
    local_batch: int
    weights: float
    trainable: float
    live: float
    activations: float
    other: float
    cpu_per_node: float

    @property
    def gpu_total(self) -> float:
        return self.weights + self.trainable + self.live + self.activations + self.other

    def row(self) -> dict:
        """A row of :func:`zero3_table`: GPUs, triplets per GPU, the parts and totals in GB."""
        r = lambda x: round(x / GB, 2)  # noqa: E731
        return {"GPUs": self.n_gpus, "triplets per GPU": self.local_batch,
                "weights GB": r(self.weights), "LoRA + Adam GB": r(self.trainable),
                "gathered GB": r(self.live), "activations GB": r(self.activations),
                "GPU total GB": r(self.gpu_total), "CPU RAM per node GB": r(self.cpu_per_node)}


def zero3_memory(n_gpus: int, *, size: str = "176b", cfg: RunConfig | None = None,
                 ds_config: dict | None = None, global_batch: int | None = None,
                 max_length: int | None = None, gpus_per_node: int = 8) -> Zero3Memory:
    """Memory per GPU of one training step of ``cfg`` (default: the ``paper`` profile) on
    BLOOM-``size`` with ZeRO-3 over ``n_gpus`` GPUs, ``gpus_per_node`` per node, under
    ``ds_config`` (default :func:`~lacos_helpers.training.zero_recipe.zero3_template`:
    parameters and optimizer offloaded). ``global_batch`` (default ``cfg.train.batch_size``)
    must split evenly over the GPUs."""
    from lacos_helpers.training.zero_recipe import zero3_recipe as recipe
    from lacos_helpers.training.zero_recipe import zero3_template

    zero = (ds_config or zero3_template())["zero_optimization"]
    offload_params, offload_optimizer = ((zero.get(part) or {}).get("device") == "cpu"
                                         for part in ("offload_param", "offload_optimizer"))
    check_int(n_gpus, "n_gpus")
    check_int(gpus_per_node, "gpus_per_node")
    trained = recipe(cfg or load_profile("paper"), "cuda")
    cfg = trained.config
    batch = global_batch or cfg.train.batch_size
    if batch % n_gpus:
        raise ValueError(f"the global batch of {batch} triplets does not split over "
                         f"{n_gpus} GPUs")
    local = batch // n_gpus
    est = estimate_training_memory(cfg, size, batch=local, max_length=max_length, device="cuda")
    shape = bloom.shape(size)
    counts = bloom.param_count(shape.hidden_size, shape.n_layer)
    weights = est.weights_int8 + est.weights_scales + est.weights_float
    largest_module = max(counts["embeddings"], *bloom.linear_sizes(shape.hidden_size))
    live = (max(largest_module, zero["stage3_max_live_parameters"])
            + zero["stage3_prefetch_bucket_size"]) * trained.base_bytes_per_param
    other = est.matmul_transient + est.step_overhead + est.runtime  # runtime: CUDA context
    per_node = min(gpus_per_node, n_gpus)
    gpu_weights = 0.0 if offload_params else weights / n_gpus
    moments = est.optimizer / n_gpus
    trainable = (est.lora + est.gradients) / n_gpus + (0.0 if offload_optimizer else moments)
    cpu = per_node * ((weights / n_gpus if offload_params else 0.0)
                      + (moments + est.lora / n_gpus if offload_optimizer else 0.0))
    return Zero3Memory(n_gpus=n_gpus, local_batch=local, weights=gpu_weights,
                       trainable=trainable, live=live, activations=est.activations,
                       other=other, cpu_per_node=cpu)


def zero3_table(gpu_counts=(8, 16, 32, 64), **kwargs) -> list[dict]:
    """:meth:`Zero3Memory.row` for each GPU count (keywords as :func:`zero3_memory`)."""
    return [zero3_memory(n, **kwargs).row() for n in gpu_counts]


def single_device_gb(size: str = "176b", cfg: RunConfig | None = None) -> float:
    """The LACoS recipe (8-bit base) on one device, for comparison: what every data-parallel
    process would hold (:func:`lacos_helpers.memory.estimate_training_memory`)."""
    cfg = cfg or load_profile("paper")
    return estimate_training_memory(cfg, size, device="cuda").total_gb


def markdown(rows: list[dict]) -> str:
    """A markdown table of :func:`zero3_table` rows."""
    return markdown_table(rows, align="right")
