"""Random-weight BLOOM checkpoints of the real shapes, written without ever holding the float
model in memory: the architecture is built on the meta device, and its tensors are created,
written to sharded safetensors and freed one block (or the embedding matrix) at a time.

The folder looks like a Hub snapshot of ``bigscience/bloom-<size>`` (config, shards and their
index, a tokenizer), so the ``colab`` / ``paper`` profiles load it through their own code with
``LACOS_MODEL_ID`` (or ``model.model_id``) pointing at it. The weights are random (normal, std
0.02, as BLOOM's initializer): a rehearsal measures memory and time, not quality. The tokenizer
is a byte-level BPE trained on the given texts; the embedding matrix keeps BLOOM's 250,880 rows.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from lacos_helpers import bloom, runtime
from lacos_helpers.backbones import RANDOM_WEIGHTS_MARKER as MARKER  # has_random_weights reads it
from lacos_helpers.memory.step import GB

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the written folder changes
DEFAULT_SHARD_BYTES = 2 * 10**9
INITIALIZER_RANGE = 0.02


def _group(name: str) -> str:
    """What a parameter is written with: its block (``h.<i>``), else its first component
    (the embeddings, the final norm)."""
    return ".".join(name.split(".")[:2]) if name.startswith("h.") else name.split(".")[0]


def _tensor(name: str, shape: torch.Size, dtype: torch.dtype, generator) -> torch.Tensor:
    """BLOOM's initialisation: weights N(0, 0.02), biases 0, LayerNorm weights 1."""
    if "layernorm" in name or name.startswith("ln_f"):
        return (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=dtype)
    return torch.empty(shape, dtype=dtype).normal_(0.0, INITIALIZER_RANGE, generator=generator)


def folder_for(shape: bloom.BloomShape, vocab_size: int = bloom.VOCAB_SIZE,
               dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """``<cache>/rehearsal/bloom-h<h>-l<L>-a<heads>-v<V>-<dtype>-s<seed>``."""
    tag = (f"bloom-h{shape.hidden_size}-l{shape.n_layer}-a{shape.n_head}-v{vocab_size}-"
           f"{str(dtype).replace('torch.', '')}-s{seed}")
    return runtime.cache_dir() / "rehearsal" / tag


def marker(shape: bloom.BloomShape, vocab_size: int = bloom.VOCAB_SIZE,
           dtype: torch.dtype = torch.float16, seed: int = 0) -> dict:
    """The settings :data:`MARKER` records (defaults: :func:`write_random_bloom`'s)."""
    return {"format": FORMAT, "shape": list(shape), "vocab_size": vocab_size,
            "dtype": str(dtype), "seed": seed}


def is_complete(folder: Path, expected: dict) -> bool:
    """Whether ``folder`` holds a finished checkpoint written with ``expected`` settings."""
    path = folder / MARKER
    if not path.is_file():
        return False
    found = json.loads(path.read_text())
    return {k: found.get(k) for k in expected} == expected


def write_random_bloom(folder: str | os.PathLike, shape: bloom.BloomShape | str, *,
                       tokenizer_texts: Iterable[str], vocab_size: int = bloom.VOCAB_SIZE,
                       dtype: torch.dtype = torch.float16, seed: int = 0,
                       shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write a random BLOOM of ``shape`` (a public size such as ``"7b1"`` or a
    :class:`~lacos_helpers.bloom.BloomShape`) to ``folder`` as sharded safetensors in ``dtype``,
    a few tensors at a time; reuses a complete folder written with the same settings.
    Returns the folder."""
    from safetensors.torch import save_file
    from transformers import BloomModel

    from lacos_helpers.backbones.tiny import build_tiny_tokenizer

    shape = bloom.shape(shape)
    folder = Path(folder)
    expected = marker(shape, vocab_size, dtype, seed)
    if is_complete(folder, expected):
        log.info("[rehearsal] reusing the random checkpoint in %s", folder)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    config = bloom.bloom_config(shape, vocab_size=vocab_size)
    config.dtype = str(dtype).replace("torch.", "")
    config.architectures = ["BloomModel"]
    with torch.device("meta"):
        meta = BloomModel(config)
    shapes = {name: p.shape for name, p in meta.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    groups = [list(names) for _, names in itertools.groupby(shapes, key=_group)]
    shards: list[list[str]] = []  # the names in each shard, written as shard-<i>.tmp
    pending: dict[str, torch.Tensor] = {}
    total = 0
    for group in groups:
        for name in group:
            pending[name] = _tensor(name, shapes[name], dtype, generator)
            total += pending[name].nbytes
        if sum(t.nbytes for t in pending.values()) >= shard_bytes or group is groups[-1]:
            save_file(pending, str(folder / f"shard-{len(shards):05d}.tmp"),
                      metadata={"format": "pt"})
            shards.append(list(pending))
            pending = {}
    weight_map = {}
    for i, names in enumerate(shards):
        final = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        os.replace(folder / f"shard-{i:05d}.tmp", folder / final)
        weight_map.update(dict.fromkeys(names, final))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(folder)
    tokenizer = build_tiny_tokenizer(list(tokenizer_texts), vocab_size=min(4000, vocab_size))
    tokenizer.save_pretrained(folder)
    (folder / MARKER).write_text(json.dumps({**expected, "bytes": total,
                                             "seconds": round(time.perf_counter() - t0, 1)}))
    log.info("[rehearsal] random BLOOM h=%d L=%d written to %s: %.2f GB in %d shards, %.0f s",
             shape.hidden_size, shape.n_layer, folder, total / GB, len(shards),
             time.perf_counter() - t0)
    return folder
