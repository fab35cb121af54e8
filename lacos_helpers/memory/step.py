"""A memory model of one LACoS training step on a BLOOM: every part that holds memory at the
peak, from the configuration alone, checked against the peaks ``python -m lacos_helpers
rehearse`` measures (README). Counted: on a GPU, CUDA allocations plus the CUDA context; on a
CPU, the process's *anonymous* resident memory (bitsandbytes' CPU loader leaves the float16
tensors it does not quantize memory-mapped, as file pages, until they are upcast).

Parts (bytes; GB = 1e9):

``weights_int8``, ``weights_scales``
    the quantized linear weights (one byte each) and their float32 row scales;
``weights_float``
    the embedding matrix (``V x h``: half of BLOOM-560m), LayerNorms and biases: all float32
    under the *standard* k-bit preparation (peft's), the embeddings kept 16-bit by the *lean* one;
``upcast_transient``
    the standard preparation casts the embedding matrix while its 16-bit copy still exists;
``load_transient``
    the float16 temporaries of bitsandbytes' CPU quantization that glibc keeps in its heap
    (:func:`bnb_cpu_load_heap`): kept by the standard recipe, returned by the lean one;
``lora``, ``gradients``, ``optimizer``
    the adapters (float32), their gradients, Adam's moments (8-bit: ~2.03 bytes per parameter);
``activations``
    with gradient checkpointing each block keeps its input (``tokens x h``) and one block at a
    time is recomputed in full; without it every block keeps everything. Attention scores are
    ``sequences x heads x T x T``. Sentences per forward = triplets x 3 (anchor, positive, hard
    negative); with GradCache (``train.cache_chunk``) the triplets of one chunk, plus the
    cached embeddings of the whole batch. Each tensor in its real dtype (:func:`activation_dtypes`);
``matmul_transient``
    the largest weight an 8-bit matmul dequantizes at once: bitsandbytes on a CPU to float32 in
    the forward and again in the backward; the package's weight-only ``Int8Linear`` in chunks
    of 8M weights; bitsandbytes on a GPU in its backward only (for the input gradient);
``step_overhead``, ``runtime``
    on a CPU, autograd's bookkeeping and heap growth during a step and the Python process with
    its libraries and data (both measured); on a GPU, none and the CUDA context.

**Dtypes of the activations.** The residual stream and the LayerNorms are float32 under both
recipes. An 8-bit layer with int8 compute (bitsandbytes on a GPU, ``Int8Linear(compute="int8")``)
returns its *input's* dtype, so the outputs of the stream-fed linears stay float32 even under
autocast; float matmuls return the autocast dtype (16-bit on a GPU, bfloat16 on a CPU with
``encoder.cpu_bf16`` where the CPU has it, else float32). The attention matmuls run in the
autocast dtype; BLOOM's softmax is float32. Under autocast, matmuls fed float32 keep 16-bit
copies of their inputs (q, k, v, the adapter's input).

The peak is the resident part (weights, adapters, process) plus the largest of the transients
that never overlap: the load and upcast transients before training, one step's memory during
it (in the standard recipe a step's small allocations reuse the retained load heap first).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lacos_helpers import bloom
from lacos_helpers.config import RunConfig
from lacos_helpers.quantization.int8_linear import DEQUANT_CHUNK_NUMEL

GB = 1e9
FLOAT32_BYTES, HALF_BYTES = 4, 2
# Measured on the reference machine (python -m lacos_helpers rehearse, README):
CPU_RUNTIME_BYTES = 0.30e9  # anonymous RSS once torch, transformers, bitsandbytes and data load
CPU_STEP_OVERHEAD_BYTES = 0.40e9  # a step's autograd and heap growth beyond its tensors
CPU_RESIDUAL_BYTES = 0.06e9  # small allocations that stay after loading (tokenizer, hooks ...)
BNB_CPU_LOAD_HEAP_BYTES = 0.75e9  # glibc heap kept after bitsandbytes' CPU quantization
# The CUDA context, outside torch's caching allocator: 287 MB with lazy module loading (torch's
# default; pytorch/pytorch PR #86509) plus the cuBLAS handles and bitsandbytes' kernels as they
# load. 0.5 GB is the upper end, not measured here (no GPU).
CUDA_CONTEXT_BYTES = 0.5e9
GLIBC_MMAP_THRESHOLD = 32 << 20  # allocations this large go to mmap and are returned at once
ADAM8BIT_BYTES_PER_PARAM = 2 + 2 * 4 / 256  # two uint8 moments + a float32 absmax per 256
ADAM32_BYTES_PER_PARAM = 8
# Values one BLOOM block holds per token and hidden unit at the peak of its forward + backward:
# ~28 saved tensors and ~17 gradients, 45 in all, fitted to the measured peak of BLOOM-560m at
# 96 sentences x 64 tokens on a CPU (float32, README). Split by the op that makes each tensor,
# which sets its dtype:
BLOCK_STREAM_VALUES = 9  # residual stream, LayerNorm outputs, the adapter's input (+ grads)
BLOCK_LINEAR_VALUES = 31  # outputs of the stream-fed linears: qkv (+ the LoRA update, heads
#                           split), the MLP's 4h before and after GELU, its output (+ grads)
BLOCK_ATTENTION_VALUES = 5  # attention matmul outputs: context, merged heads, dense (+ grads)
# autocast's 16-bit copies of float32 matmul inputs: q, k, v (if float32) and the adapter's input
AUTOCAST_QKV_COPIES, AUTOCAST_ADAPTER_COPIES = 3, 1
# per attention-score element: scores (attention dtype), scores + float32 mask, softmax
# (float32: BLOOM's code) and its gradient; under autocast a 16-bit copy of the
# probabilities for the matmul with the values
BLOCK_SCORE_TENSORS = 4
GRADCACHE_EMBEDDING_COPIES = 3  # cached embeddings, their leaf copy and its gradient (float32)


@dataclass(frozen=True)
class ActivationDtypes:
    """Bytes per value of each kind of activation (see the module docstring): the residual
    stream, the outputs of the stream-fed linear layers, the attention matmuls; ``autocast``:
    the autocast dtype's bytes (None: no autocast)."""

    stream: int = FLOAT32_BYTES
    linear: int = FLOAT32_BYTES
    attention: int = FLOAT32_BYTES
    autocast: int | None = None

    @classmethod
    def uniform(cls, bytes_per_value: int) -> ActivationDtypes:
        """Every activation in one dtype (no autocast copies)."""
        return cls(bytes_per_value, bytes_per_value, bytes_per_value, None)


def activation_dtypes(cfg: RunConfig, device: str = "cpu",
                      cpu_native_bf16: bool | None = None) -> ActivationDtypes:
    """The dtypes of a training step's activations under ``cfg`` on ``device`` ("cpu" or
    "cuda"). On a CPU, ``encoder.cpu_bf16`` autocasts to bfloat16 where the CPU multiplies it
    natively (``cpu_native_bf16``; None: ask this CPU)."""
    if device == "cpu":
        bf16 = cfg.encoder.cpu_bf16
        if bf16 and cpu_native_bf16 is None:
            from lacos_helpers.runtime import cpu_native_bf16 as native

            cpu_native_bf16 = native()
        amp = HALF_BYTES if bf16 and cpu_native_bf16 else None
    else:  # float16 below compute capability 8.0, bfloat16 from it: 2 bytes either way
        amp = HALF_BYTES
    q = cfg.quant
    keeps_input = (q.backend == "bitsandbytes" and device != "cpu") or \
        (q.backend == "lacos" and q.compute == "int8")
    linear = FLOAT32_BYTES if keeps_input or amp is None else amp  # the stream: float32
    return ActivationDtypes(linear=linear, attention=amp or linear, autocast=amp)


def _block_bytes(n: int, h: int, scores: int, d: ActivationDtypes) -> float:
    """One block's activations at its backward's peak (``n`` tokens, ``scores`` elements)."""
    per_token = (BLOCK_STREAM_VALUES * d.stream + BLOCK_LINEAR_VALUES * d.linear
                 + BLOCK_ATTENTION_VALUES * d.attention)
    per_score = d.attention + (BLOCK_SCORE_TENSORS - 1) * FLOAT32_BYTES
    if d.autocast is not None:
        copies = AUTOCAST_ADAPTER_COPIES + (AUTOCAST_QKV_COPIES if d.linear != d.autocast
                                            else 0)
        per_token += copies * d.autocast
        per_score += d.autocast
    return per_token * n * h + per_score * scores


def activation_bytes(shape: bloom.BloomShape, sequences: int, tokens: int,
                     checkpointing: bool, dtypes: ActivationDtypes | int) -> float:
    """Activation memory of one forward + backward of ``sequences`` sentences of ``tokens``
    tokens each (see the module docstring); ``dtypes``: :func:`activation_dtypes`, or the
    bytes of every value."""
    d = ActivationDtypes.uniform(dtypes) if isinstance(dtypes, int) else dtypes
    h, n = shape.hidden_size, sequences * tokens
    scores = sequences * shape.n_head * tokens * tokens
    block = _block_bytes(n, h, scores, d)
    boundaries = 4 * n * h * d.stream  # embedding output and its LayerNorm, ln_f, pooled
    if checkpointing:
        return shape.n_layer * n * h * d.stream + block + boundaries
    return shape.n_layer * block + boundaries


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak of one training step, by part (bytes); ``lean``: whether the load heap
    is returned before training (the lean recipe); ``cuda``: whether on a GPU (then
    ``runtime`` is the CUDA context)."""

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
    cuda: bool = False

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
        """The peak: loading and preparing (load and upcast transients), or training."""
        return max(self.resident + self.load_transient + self.upcast_transient, self.training)

    @property
    def total_gb(self) -> float:
        return self.total / GB

    @property
    def allocated(self) -> float:
        """On a GPU, the peak of torch's allocations (``max_memory_allocated``): the total
        without the CUDA context; on a CPU the total."""
        return self.total - (self.runtime if self.cuda else 0.0)

    @property
    def training(self) -> float:
        """The peak once the model is loaded and prepared (the load and upcast transients are
        over): what a run about to train still has to meet."""
        if self.lean:  # the load heap is returned before training
            return self.resident + self.step
        # the standard recipe keeps the load heap: a step's small allocations reuse it, its
        # activations (large tensors, mapped afresh) do not
        small = self.step - self.activations
        return self.resident + self.load_transient + (
            self.activations + max(small - self.load_transient, 0.0))

    def components_gb(self) -> dict[str, float]:
        """``{part: GB}`` rounded to 3 decimals."""
        return {f.name: round(getattr(self, f.name) / GB, 3) for f in fields(self)
                if f.name not in ("lean", "cuda")}


def bnb_cpu_load_heap(h: int) -> float:
    """The heap bitsandbytes' CPU loader leaves behind: 0.75 GB (measured at 560m and 1b1) times
    the share of weights whose float16 temporary stays below glibc's mmap threshold."""
    sizes = bloom.linear_sizes(h)
    small = sum(n for n in sizes if 2 * n < GLIBC_MMAP_THRESHOLD)
    return BNB_CPU_LOAD_HEAP_BYTES * small / sum(sizes)


def step_activations(cfg: RunConfig, shape: bloom.BloomShape, triplets: int, tokens: int,
                     dtypes: ActivationDtypes) -> float:
    """Activations of one step of ``triplets`` triplets of ``tokens`` tokens: one forward +
    backward of all of them, or with GradCache (``train.cache_chunk`` below ``triplets``) one
    chunk at a time plus the cached float32 embeddings of the whole batch."""
    roles = 3 if cfg.train.hard_negatives else 2
    chunk = cfg.train.cache_chunk
    checkpointing = cfg.train.gradient_checkpointing
    if not chunk or chunk >= triplets:
        return activation_bytes(shape, triplets * roles, tokens, checkpointing, dtypes)
    cache = GRADCACHE_EMBEDDING_COPIES * roles * triplets * shape.hidden_size * FLOAT32_BYTES
    return activation_bytes(shape, chunk * roles, tokens, checkpointing, dtypes) + cache


def estimate_training_memory(cfg: RunConfig, shape: bloom.BloomShape | str, *,
                             batch: int | None = None, max_length: int | None = None,
                             device: str = "cpu",
                             vocab_size: int = bloom.VOCAB_SIZE) -> MemoryEstimate:
    """Peak memory of one training step of ``cfg`` (8-bit backend and load, LoRA, optimizer,
    gradient checkpointing, GradCache chunk, k-bit preparation, batch and length; ``batch`` /
    ``max_length`` override the configuration's) on a BLOOM of ``shape``, on ``device``
    ("cpu" or "cuda")."""
    from lacos_helpers.lora.report import lora_param_count

    s = bloom.shape(shape)
    h, L = s.hidden_size, s.n_layer
    counts = bloom.param_count(h, L, vocab_size)
    embeddings, small_float = counts["embeddings"], counts["other"] - counts["embeddings"]
    cpu = device == "cpu"
    q = cfg.quant
    lean = q.preparation == "lean"
    loaded_16bit = q.load_in_8bit or cfg.model.dtype in ("float16", "bfloat16")
    # bitsandbytes on a CPU leaves the float16 tensors memory-mapped (not anonymous)
    mapped = cpu and q.load_in_8bit and q.backend == "bitsandbytes"
    stored = 2 if loaded_16bit else 4
    if q.backend == "none":  # the linear weights stay float, stored like the embeddings
        weights_int8 = scales = 0.0
        embeddings = counts["total"] - small_float
    else:
        weights_int8, scales = counts["linear_weights"], 4 * counts["linear_rows"]
    if lean:
        weights_float = small_float * 4 + (0 if mapped else embeddings * stored)
        upcast = 0.0
    else:
        weights_float = (small_float + embeddings) * 4
        upcast = embeddings * stored if stored < 4 and not mapped else 0.0
    load = bnb_cpu_load_heap(h) if mapped else 0.0
    n_lora = lora_param_count(h, L, cfg.lora.r, cfg.lora.targets)
    optimizer = n_lora * (ADAM8BIT_BYTES_PER_PARAM if "8bit" in cfg.train.optimizer
                          else ADAM32_BYTES_PER_PARAM)
    dtypes = activation_dtypes(cfg, device)
    activations = step_activations(cfg, s, batch or cfg.train.batch_size,
                                   max_length or cfg.encoder.max_length, dtypes)
    return MemoryEstimate(
        weights_int8=float(weights_int8), weights_scales=float(scales),
        weights_float=float(weights_float), upcast_transient=float(upcast),
        load_transient=float(load), lora=4.0 * n_lora, gradients=4.0 * n_lora,
        optimizer=float(optimizer), activations=float(activations),
        matmul_transient=float(_matmul_transient(cfg, h, device, dtypes)),
        step_overhead=CPU_STEP_OVERHEAD_BYTES if cpu else 0.0,
        runtime=CPU_RUNTIME_BYTES + CPU_RESIDUAL_BYTES if cpu else CUDA_CONTEXT_BYTES,
        lean=lean, cuda=not cpu)


def _matmul_transient(cfg: RunConfig, h: int, device: str, dtypes: ActivationDtypes) -> float:
    """The largest weight an 8-bit matmul dequantizes at once (see ``matmul_transient``)."""
    q, largest = cfg.quant, max(bloom.linear_sizes(h))
    if q.backend == "bitsandbytes":  # CPU: float32 dequantization in forward and backward;
        return 2 * 4 * largest if device == "cpu" else dtypes.linear * largest  # GPU: backward
    if q.backend == "lacos" and q.compute == "dequantize":
        compute = dtypes.autocast or dtypes.stream
        return 2 * compute * min(largest, DEQUANT_CHUNK_NUMEL)
    return 0.0


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
