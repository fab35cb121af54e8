"""A memory model of one LACoS training step on a BLOOM: every part that holds memory at the
peak, from the configuration alone (no model needed), checked against the peaks measured by
``python -m lacos_helpers rehearse`` (README: within 15% at 560m and 1b1; the 7b1 point is
reported beside its prediction).

What is counted: on a GPU, CUDA allocations (``max_memory_allocated``); on a CPU, the process's
*anonymous* resident memory. bitsandbytes' loader leaves the float16 tensors it does not
quantize memory-mapped from the checkpoint: file pages the kernel can drop and re-read, not
anonymous memory, until the standard k-bit preparation copies them to float32.

Parts (bytes; GB = 1e9):

``weights_int8``, ``weights_scales``
    the quantized linear weights (``12 h^2`` per block, one byte each) and their float32 row
    scales;
``weights_float``
    what stays in floating point: the embedding matrix (``V x h``: BLOOM's 250,880-token
    vocabulary is half of BLOOM-560m), LayerNorms and biases. The *standard* k-bit preparation
    (peft's) holds them all in float32; the *lean* one keeps the embedding matrix in its
    16 bits (memory-mapped with bitsandbytes on a CPU) and upcasts only norms and biases;
``upcast_transient``
    the standard preparation casts the embedding matrix while its 16-bit copy still exists;
``load_transient``
    what loading leaves behind: bitsandbytes' CPU quantization allocates float16 temporaries
    per weight; glibc keeps those below its 32 MiB mmap threshold in the heap, ~0.75 GB
    (measured at 560m and 1b1, where every temporary is that small; scaled by the share of
    weights whose temporary is, e.g. a third at 1b7, none at 7b1). The standard recipe keeps
    that heap (later allocations reuse it); the lean recipe returns it (``malloc_trim``)
    after loading;
``lora``, ``gradients``, ``optimizer``
    the adapters (float32), their gradients, Adam's moments (8-bit: ~2.03 bytes per
    parameter; 32-bit: 8);
``activations``
    with gradient checkpointing each block keeps its input (``tokens x h``) and one block at a
    time is recomputed in full; without it every block keeps everything. Attention scores are
    ``sequences x heads x T x T``. Sentences per step = batch x 3 (anchor, positive, hard
    negative in one forward);
``matmul_transient``
    bitsandbytes' CPU training matmul (``MatMul8bitFp``) dequantizes the weight it multiplies
    to float32, in the forward and again in the backward (the largest: ``4h x h``); the
    package's weight-only ``Int8Linear`` does it in chunks of 8M weights; on a GPU the int8
    kernels do not dequantize;
``step_overhead``, ``runtime``
    on a CPU: autograd's bookkeeping and heap growth during a step (~0.4 GB measured at every
    size) and the Python process with torch, transformers and the data (~0.3 GB).

The peak is the resident part (weights, adapters, process) plus the largest of the transients
that never overlap: the load and upcast transients before training, one step's memory during
it (in the standard recipe a step's small allocations reuse the retained load heap first).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lacos_helpers import bloom
from lacos_helpers.config import RunConfig

GB = 1e9
MIB = 1 << 20
# Measured on the reference machine (python -m lacos_helpers rehearse, README):
CPU_RUNTIME_BYTES = 0.30e9  # anonymous RSS once torch, transformers, bitsandbytes and data load
CPU_STEP_OVERHEAD_BYTES = 0.40e9  # a step's autograd and heap growth beyond its tensors
CPU_RESIDUAL_BYTES = 0.06e9  # small allocations that stay after loading (tokenizer, hooks ...)
BNB_CPU_LOAD_HEAP_BYTES = 0.75e9  # glibc heap kept after bitsandbytes' CPU quantization
GLIBC_MMAP_THRESHOLD = 32 * MIB  # allocations this large go to mmap and are returned at once
LACOS_DEQUANT_CHUNK = 1 << 23  # quantization.int8_linear.DEQUANT_CHUNK_NUMEL
ADAM8BIT_BYTES_PER_PARAM = 2 + 2 * 4 / 256  # two uint8 moments + a float32 absmax per 256
ADAM32_BYTES_PER_PARAM = 8
# Float values one BLOOM block holds per token and hidden unit at the peak of its forward +
# backward: its saved tensors (LayerNorm outputs, qkv and its head-split copies, context and its
# merge, dense and residual outputs, the MLP's 4h before and after GELU, LoRA's dropout and
# low-rank outputs: ~28) and the gradients alive while its backward runs (~17). Fitted to the
# measured peak of BLOOM-560m at 96 sentences x 64 tokens (README); per attention-score element:
# scores, masked scores, softmax and its gradient.
BLOCK_ACTIVATIONS_PER_TOKEN_H = 45
BLOCK_SCORE_TENSORS = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak of one training step, by part (bytes); ``lean``: whether the load heap
    is returned before training (the lean recipe)."""

    weights_int8: float
    weights_scales: float
    weights_float: float
    upcast_transient: float
    load_transient: float
    lora: float
    gradients: float
    optimizer: float
    activations: float
    matmul_transient: float
    step_overhead: float
    runtime: float
    lean: bool = False

    @property
    def resident(self) -> float:
        """What lives through the whole run: weights, adapters, the process."""
        return (self.weights_int8 + self.weights_scales + self.weights_float + self.lora
                + self.runtime)

    @property
    def step(self) -> float:
        """What a training step adds (gradients, optimizer states, activations, temporaries)."""
        return (self.gradients + self.optimizer + self.activations + self.matmul_transient
                + self.step_overhead)

    @property
    def total(self) -> float:
        """The peak (see the module docstring)."""
        if self.lean:  # the load heap is returned before training
            return self.resident + max(self.load_transient + self.upcast_transient, self.step)
        # the standard recipe keeps the load heap: a step's small allocations reuse it, its
        # activations (large tensors, mapped afresh) do not
        small = self.step - self.activations
        return self.resident + self.load_transient + max(
            self.upcast_transient, self.activations + max(small - self.load_transient, 0.0))

    @property
    def total_gb(self) -> float:
        return self.total / GB

    def components_gb(self) -> dict[str, float]:
        """``{part: GB}`` rounded to 3 decimals."""
        return {f.name: round(getattr(self, f.name) / GB, 3) for f in fields(self)
                if f.name != "lean"}


def lora_parameters(shape: bloom.BloomShape, r: int, targets) -> int:
    """LoRA parameters of a BLOOM shape (``r * (in + out)`` per targeted layer and block)."""
    from lacos_helpers.lora.report import lora_param_count

    return lora_param_count(shape.hidden_size, shape.n_layer, r, targets)


def activation_bytes(shape: bloom.BloomShape, sequences: int, tokens: int,
                     checkpointing: bool, bytes_per_value: int) -> float:
    """Activation memory of one forward + backward of ``sequences`` sentences of ``tokens``
    tokens each (see the module docstring)."""
    h, n = shape.hidden_size, sequences * tokens
    scores = sequences * shape.n_head * tokens * tokens
    block = (BLOCK_ACTIVATIONS_PER_TOKEN_H * n * h + BLOCK_SCORE_TENSORS * scores) \
        * bytes_per_value
    boundaries = 4 * n * h * bytes_per_value  # embedding output and its LayerNorm, ln_f, pooled
    if checkpointing:
        return shape.n_layer * n * h * bytes_per_value + block + boundaries
    return shape.n_layer * block + boundaries


def _linear_sizes(h: int) -> list[int]:
    """Weights of the four linear layers of a block (qkv, dense, h->4h, 4h->h)."""
    return [i * o * h * h for i, o in bloom.LINEAR_SHAPES.values()]


def bnb_cpu_load_heap(h: int) -> float:
    """The heap bitsandbytes' CPU loader leaves behind (see ``load_transient``)."""
    sizes = _linear_sizes(h)
    small = sum(n for n in sizes if 2 * n < GLIBC_MMAP_THRESHOLD)
    return BNB_CPU_LOAD_HEAP_BYTES * small / sum(sizes)


def estimate_training_memory(cfg: RunConfig, shape: bloom.BloomShape | str, *,
                             batch: int | None = None, max_length: int | None = None,
                             device: str = "cpu",
                             vocab_size: int = bloom.VOCAB_SIZE) -> MemoryEstimate:
    """Peak memory of one training step of ``cfg`` (8-bit backend and load, LoRA, optimizer,
    gradient checkpointing, k-bit preparation, batch and length; ``batch`` / ``max_length``
    override the configuration's) on a BLOOM of ``shape``, on ``device`` ("cpu" or "cuda")."""
    s = bloom.shape(shape) if isinstance(shape, str) else bloom.BloomShape(*shape)
    h, L = s.hidden_size, s.n_layer
    counts = bloom.param_count(h, L, vocab_size)
    embeddings, small_float = counts["embeddings"], counts["other"] - counts["embeddings"]
    cpu = device == "cpu"
    q = cfg.quant
    lean = q.preparation == "lean"
    eight_bit = q.backend != "none"
    loaded_16bit = q.load_in_8bit or cfg.model.dtype in ("float16", "bfloat16")
    # bitsandbytes on a CPU leaves the float16 tensors memory-mapped (not anonymous)
    mapped = cpu and q.load_in_8bit and q.backend == "bitsandbytes"
    stored = 2 if loaded_16bit else 4
    if not eight_bit:
        weights_int8 = scales = 0.0
        embeddings, small_float = counts["total"] - small_float, small_float
    else:
        weights_int8, scales = counts["linear_weights"], 4 * counts["linear_rows"]
    if lean:
        weights_float = small_float * 4 + (0 if mapped else embeddings * stored)
        upcast = 0.0
    else:
        weights_float = (small_float + embeddings) * 4
        upcast = embeddings * stored if stored < 4 and not mapped else 0.0
    load = bnb_cpu_load_heap(h) if mapped else 0.0
    n_lora = lora_parameters(s, cfg.lora.r, cfg.lora.targets)
    optimizer = n_lora * (ADAM8BIT_BYTES_PER_PARAM if "8bit" in cfg.train.optimizer
                          else ADAM32_BYTES_PER_PARAM)
    sequences = (batch or cfg.train.batch_size) * (3 if cfg.train.hard_negatives else 2)
    tokens = max_length or cfg.encoder.max_length
    width = 4 if cpu else 2  # CPUs compute in float32, GPUs under 16-bit autocast
    activations = activation_bytes(s, sequences, tokens, cfg.train.gradient_checkpointing,
                                   width)
    largest = max(_linear_sizes(h))
    if cpu and q.backend == "bitsandbytes":
        matmul = 2 * 4 * largest
    elif q.backend == "lacos" and q.compute == "dequantize":
        matmul = 2 * width * min(largest, LACOS_DEQUANT_CHUNK)
    else:
        matmul = 0.0
    return MemoryEstimate(
        weights_int8=float(weights_int8), weights_scales=float(scales),
        weights_float=float(weights_float), upcast_transient=float(upcast),
        load_transient=float(load), lora=4.0 * n_lora, gradients=4.0 * n_lora,
        optimizer=float(optimizer), activations=float(activations),
        matmul_transient=float(matmul),
        step_overhead=CPU_STEP_OVERHEAD_BYTES if cpu else 0.0,
        runtime=CPU_RUNTIME_BYTES + CPU_RESIDUAL_BYTES if cpu else 0.0, lean=lean)


def bloom_training_table(cfg: RunConfig, sizes=("560m", "1b1", "1b7", "3b", "7b1"), *,
                         batch: int | None = None, max_length: int | None = None,
                         device: str = "cuda") -> list[dict]:
    """One row per BLOOM size: ``{"model", "total_gb", <part>: GB ...}`` for the chart of
    chapter 3 (what trains on which GPU)."""
    rows = []
    for size in sizes:
        est = estimate_training_memory(cfg, size, batch=batch, max_length=max_length,
                                       device=device)
        rows.append({"model": f"bloom-{size}", "total_gb": round(est.total_gb, 3),
                     **est.components_gb()})
    return rows


__all__ = ["MemoryEstimate", "activation_bytes", "bloom_training_table", "bnb_cpu_load_heap",
           "estimate_training_memory", "lora_parameters"]
