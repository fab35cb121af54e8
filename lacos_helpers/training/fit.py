"""Fit a run to its GPU before it trains: the memory model's prediction
(:func:`lacos_helpers.memory.estimate_training_memory`) against the memory the GPU has free.

When the prediction exceeds it, the ``colab`` and ``paper`` profiles adapt, in this order:

1. GradCache (``train.cache_chunk``): the largest chunk of triplets that fits (the batch, its
   in-batch negatives and gradients of plain MNR; one more forward pass per step);
2. else the largest smaller batch that fits (fewer in-batch negatives: this changes the
   recipe), with GradCache where it is needed too;
3. else :class:`DeviceMemoryError`, with the numbers.

The change is logged, printed and recorded in ``run.json`` (the adapted configuration is the
run's). Only one-process runs are fitted (:func:`lacos_helpers.training.train`); other profiles,
CPU runs and models that are not BLOOM are left as they are (a profile that is not adapted gets
a warning when it looks too large).

The budget is the GPU's free memory (``torch.cuda.mem_get_info``, after the CUDA context is
created) plus what torch's caching allocator already holds (the loaded 8-bit weights, counted
in the prediction), less :data:`ALLOCATOR_MARGIN`; it is compared with the prediction's torch
allocations once the model is loaded (without the CUDA context and the loader's transients).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from lacos_helpers import bloom, memory
from lacos_helpers.config import RunConfig

log = logging.getLogger(__name__)

ADAPTING_PROFILES = ("colab", "paper")
# Kept free for the caching allocator: reserved memory exceeds allocated memory by its
# rounding and fragmentation (a margin, not a measurement).
ALLOCATOR_MARGIN = 0.05
MIN_BATCH = 2  # MNR needs one in-batch negative


class DeviceMemoryError(RuntimeError):
    """The run does not fit its GPU, even with GradCache chunks of one triplet and the
    smallest batch."""


def bloom_shape_of(model) -> tuple[bloom.BloomShape, int] | None:
    """``(shape, vocab_size)`` of a BLOOM model from its ``config`` (None for other models)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "bloom":
        return None
    shape = bloom.BloomShape(config.hidden_size,
                             getattr(config, "n_layer", None) or config.num_hidden_layers,
                             getattr(config, "n_head", None) or config.num_attention_heads)
    return shape, config.vocab_size


def available_bytes(device: torch.device | str) -> int:
    """Bytes a run on ``device`` may allocate in all: free (``torch.cuda.mem_get_info``) +
    what torch's caching allocator already holds (``memory_reserved``)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free) + int(torch.cuda.memory_reserved(device))


def predicted_bytes(cfg: RunConfig, shape: bloom.BloomShape,
                    vocab_size: int = bloom.VOCAB_SIZE) -> float:
    """torch's peak allocations of a training step of ``cfg`` on a GPU once the model is
    loaded (bytes): the memory model's training peak without the CUDA context."""
    est = memory.estimate_training_memory(cfg, shape, device="cuda", vocab_size=vocab_size)
    return est.training - est.runtime


def _gradcache_candidates(cfg: RunConfig) -> Iterator[RunConfig]:
    """``cfg`` with GradCache chunks from the largest (below the batch) down to 1."""
    batch = cfg.train.batch_size
    for chunk in range(min(batch, cfg.train.cache_chunk or batch) - 1, 0, -1):
        yield cfg.replace(train={"cache_chunk": chunk})


def _candidates(cfg: RunConfig, gradcache: bool) -> Iterator[RunConfig]:
    """``cfg``'s GradCache chunks (if ``gradcache``), then smaller batches (largest first), each
    without GradCache and then with its chunks."""
    if gradcache:
        yield from _gradcache_candidates(cfg)
    for batch in range(cfg.train.batch_size - 1, MIN_BATCH - 1, -1):
        smaller = cfg.replace(train={"batch_size": batch, "cache_chunk": None})
        yield smaller
        if gradcache:
            yield from _gradcache_candidates(smaller)


def _describe(cfg: RunConfig) -> str:
    t = cfg.train
    chunk = f", GradCache chunks of {t.cache_chunk}" if t.cache_chunk and \
        t.cache_chunk < t.batch_size else ""
    return f"{t.batch_size} triplets x {cfg.encoder.max_length} tokens{chunk}"


def _change(old: RunConfig, new: RunConfig) -> str:
    """What the adaptation changed, in words."""
    b0, b1, chunk = old.train.batch_size, new.train.batch_size, new.train.cache_chunk
    parts = []
    if b1 != b0:
        parts.append(f"train.batch_size {b0} -> {b1} ({b1 - 1} in-batch negatives instead of "
                     f"{b0 - 1}: this changes the recipe)")
    if chunk and chunk < b1:
        parts.append(f"GradCache in chunks of {chunk} triplets (train.cache_chunk={chunk}"
                     + ("" if b1 != b0 else f": the same batch, its {b0 - 1} in-batch "
                        "negatives and gradients, one more forward pass per step") + ")")
    return "; ".join(parts)


def fit_to_device(cfg: RunConfig, shape: bloom.BloomShape | str | None,
                  device: torch.device | str, free_bytes: float | None = None, *,
                  vocab_size: int = bloom.VOCAB_SIZE, allow_gradcache: bool = True,
                  label: str | None = None) -> tuple[RunConfig, str | None]:
    """``(cfg, message)``: ``cfg`` adapted to the memory of ``device`` (see the module
    docstring) and what was changed (None: unchanged). ``shape``: the BLOOM (None: not a
    BLOOM, left as is); ``free_bytes``: the budget (default :func:`available_bytes`);
    ``allow_gradcache``: False when the trainer's objective is given (it ignores
    ``train.cache_chunk``). Raises :class:`DeviceMemoryError` when nothing fits."""
    device = torch.device(device)
    if device.type != "cuda" or shape is None:
        return cfg, None
    shape = bloom.shape(shape)
    # what trains: a given objective ignores train.cache_chunk
    base = cfg if allow_gradcache else cfg.replace(train={"cache_chunk": None})
    free = float(available_bytes(device) if free_bytes is None else free_bytes)
    budget = free * (1 - ALLOCATOR_MARGIN)
    need = predicted_bytes(base, shape, vocab_size)
    label = label or f"BLOOM (h={shape.hidden_size}, {shape.n_layer} blocks)"
    where = (f"{label} at {_describe(base)}: predicted {need / memory.GB:.2f} GB, "
             f"{free / memory.GB:.2f} GB free on {device} ({budget / memory.GB:.2f} GB usable)")
    if need <= budget:
        log.info("[fit] %s: fits", where)
        return cfg, None
    if cfg.name not in ADAPTING_PROFILES:
        log.warning("[fit] %s: may not fit; the %r profile is not adapted (set "
                    "train.cache_chunk or a smaller train.batch_size)", where, cfg.name)
        return cfg, None
    for new in _candidates(base, allow_gradcache):
        new_need = predicted_bytes(new, shape, vocab_size)
        if new_need <= budget:
            message = (f"[fit] {where}: {_change(base, new)}; predicted "
                       f"{new_need / memory.GB:.2f} GB")
            log.warning("%s", message)
            print(message)
            return new, message
    raise DeviceMemoryError(_nothing_fits(base, shape, vocab_size, where, allow_gradcache))


def _nothing_fits(cfg: RunConfig, shape: bloom.BloomShape, vocab_size: int, where: str,
                  gradcache: bool) -> str:
    """The error message: the smallest settings tried and their predictions."""
    tried = [cfg.replace(train={"cache_chunk": 1})] if gradcache else []
    tried.append(cfg.replace(train={"batch_size": MIN_BATCH,
                                    "cache_chunk": 1 if gradcache else None}))
    numbers = ", ".join(f"{predicted_bytes(c, shape, vocab_size) / memory.GB:.2f} GB at "
                        f"{_describe(c)}" for c in tried)
    return (f"{where}: nothing fits ({numbers}). Use a GPU with more memory, a shorter "
            "encoder.max_length or a smaller BLOOM (LACOS_MODEL_ID).")


def _device_of(encoder) -> torch.device:
    """The device the encoder's weights are on (the first parameter's; CPU without any)."""
    param = next(iter(encoder.parameters()), None)
    return torch.device("cpu") if param is None else param.device


def fit_encoder_to_device(cfg: RunConfig, encoder, *, allow_gradcache: bool = True
                          ) -> RunConfig:
    """:func:`fit_to_device` for a built encoder (its device and its backbone's BLOOM shape);
    returns the configuration the run trains with."""
    found = bloom_shape_of(getattr(encoder, "backbone", encoder))
    if found is None:
        return cfg
    shape, vocab_size = found
    return fit_to_device(cfg, shape, _device_of(encoder), vocab_size=vocab_size,
                         allow_gradcache=allow_gradcache, label=cfg.model.label)[0]


__all__ = ["ADAPTING_PROFILES", "ALLOCATOR_MARGIN", "DeviceMemoryError", "available_bytes",
           "bloom_shape_of", "fit_encoder_to_device", "fit_to_device", "predicted_bytes"]
