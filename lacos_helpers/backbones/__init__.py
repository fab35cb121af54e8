"""Backbones: the decoder LLM whose hidden states become sentence embeddings.

:func:`load_backbone` returns ``(model, tokenizer)`` for the configuration's ``model.kind``:
``tiny-bloom`` (:mod:`.tiny`: random-init, no download), ``hub`` (:mod:`.hub`: any Hub id or
local folder, what Colab runs) or ``gguf`` (:mod:`.gguf`: the offline pretrained decoder). The
model is always the *base* transformer (no LM head: only ``last_hidden_state`` is needed), in
eval mode, on the configuration's device. The tokenizer always has a pad token and pads on the
left (decoders attend left to right, so with left padding the last position is a real token).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lacos_helpers.backbones.common import (
    count_parameters,
    describe_backbone,
    model_device,
    model_dtype,
    prepare_tokenizer,
    quiet_transformers,
    resolve_device,
)
from lacos_helpers.backbones.gguf import gguf_path, load_gguf_model
from lacos_helpers.backbones.hub import HubUnavailableError, load_hub_model
from lacos_helpers.backbones.tiny import (
    build_tiny_bloom,
    build_tiny_tokenizer,
    load_tiny_bloom,
    train_bytelevel_bpe,
)

if TYPE_CHECKING:  # pragma: no cover
    from lacos_helpers.config import RunConfig


def load_backbone(cfg: RunConfig, *, texts: Iterable[str] | None = None, tokenizer=None):
    """``(model, tokenizer)`` for the configuration. ``texts`` / ``tokenizer``: ``tiny-bloom``
    needs one, the training texts to train its BPE tokenizer on
    (:func:`lacos_helpers.data.training_texts`) or a trained tokenizer (the one a run saved)."""
    device = resolve_device(cfg)
    kind = cfg.model.kind
    if kind == "tiny-bloom":
        return load_tiny_bloom(cfg, device, texts=texts, tokenizer=tokenizer)
    if kind == "hub":
        return load_hub_model(cfg, device)
    if kind == "gguf":
        return load_gguf_model(cfg, device)
    raise ValueError(f"unknown model.kind {kind!r}; expected 'tiny-bloom', 'hub' or 'gguf'")


RANDOM_WEIGHTS_MARKER = "rehearsal.json"  # written by rehearsal.write_random_bloom


def has_random_weights(cfg: RunConfig) -> bool:
    """Whether the configuration's backbone is random-init: the ``ci`` profile's tiny BLOOM, or
    a Hub-layout folder written by ``rehearsal.write_random_bloom`` (BLOOM's real shapes).
    Training it runs the recipe's code; it need not improve a score in a few steps."""
    if cfg.model.kind == "tiny-bloom":
        return True
    folder = Path(str(cfg.model.model_id)).expanduser()
    return cfg.model.kind == "hub" and (folder / RANDOM_WEIGHTS_MARKER).is_file()


__all__ = [
    "HubUnavailableError",
    "build_tiny_bloom",
    "build_tiny_tokenizer",
    "count_parameters",
    "describe_backbone",
    "gguf_path",
    "has_random_weights",
    "load_backbone",
    "model_device",
    "model_dtype",
    "prepare_tokenizer",
    "quiet_transformers",
    "resolve_device",
    "train_bytelevel_bpe",
]
