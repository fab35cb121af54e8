"""The trainable LACoS encoder of a configuration, and the trained encoder of a run directory."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from torch import nn

from lacos_helpers import backbones, lora, quantization, runtime
from lacos_helpers.backbones import norms
from lacos_helpers.config import RunConfig
from lacos_helpers.encoder import SiameseEncoder
from lacos_helpers.training.runs import TOKENIZER_DIR, load_run_config, run_adapter_dir

log = logging.getLogger(__name__)


def quantize_backbone(cfg: RunConfig, backbone: nn.Module) -> nn.Module:
    """Cast the frozen linear layers to 8 bits as ``cfg.quant`` says (no-op if already 8-bit,
    e.g. loaded with ``load_in_8bit``, or ``backend == "none"``)."""
    q = cfg.quant
    if q.backend == "none" or quantization.has_8bit_layers(backbone):
        return backbone
    quantization.quantize_model(backbone, backend=q.backend, compute=q.compute,
                                threshold=q.threshold)
    n = len(backbone.lacos_quantization["replaced"])
    log.info("[model] %d linear layers cast to 8 bits (%s, %s)", n, q.backend, q.compute)
    return backbone


def build_encoder(cfg: RunConfig, backbone: nn.Module | None = None, tokenizer=None, *,
                  texts: Iterable[str] | None = None) -> SiameseEncoder:
    """The trainable LACoS encoder: backbone (loaded if not given; ``texts`` train the tiny
    BLOOM's tokenizer) -> 8 bits (``cfg.quant``) -> LoRA (``cfg.lora``) -> Siamese encoder
    (``cfg.encoder``). Only the LoRA matrices require grad."""
    if backbone is None:
        backbone, tokenizer = backbones.load_backbone(cfg, texts=texts, tokenizer=tokenizer)
    elif tokenizer is None:
        raise ValueError("pass the tokenizer that belongs to the given backbone")
    quantize_backbone(cfg, backbone)
    if lean_norms := norms.use_lean_norms(backbone):  # the same forward, less kept for backward
        log.info("[model] %d Gemma RMSNorms with a lean backward", lean_norms)
    lora.inject_lora(backbone, target_modules=cfg.lora.targets, r=cfg.lora.r,
                     alpha=cfg.lora.alpha, dropout=cfg.lora.dropout)
    lean = cfg.quant.preparation == "lean"
    lora.prepare_for_kbit_training(backbone,
                                   gradient_checkpointing=cfg.train.gradient_checkpointing,
                                   upcast_frozen=not lean)
    if lean:  # the loader's freed temporaries go back to the system, not kept for later
        runtime.release_free_memory()
    log.info("[model] %s", lora.format_trainable_report(lora.trainable_report(backbone)))
    return SiameseEncoder(backbone, tokenizer, pooling=cfg.encoder.pooling,
                          max_length=cfg.encoder.max_length, cpu_bf16=cfg.encoder.cpu_bf16,
                          pad_multiple=cfg.encoder.pad_multiple)


def save_run_tokenizer(cfg: RunConfig, encoder: SiameseEncoder, out_dir: Path) -> None:
    """A tiny-BLOOM run keeps its trained tokenizer (it cannot be downloaded again)."""
    if cfg.model.kind == "tiny-bloom" and not (out_dir / TOKENIZER_DIR).is_dir():
        encoder.tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)


def run_tokenizer(cfg: RunConfig, run_dir: Path):
    """The tokenizer a tiny-BLOOM run saved (None for other kinds: theirs is downloadable)."""
    if cfg.model.kind != "tiny-bloom":
        return None
    folder = run_dir / TOKENIZER_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"{run_dir} has no {TOKENIZER_DIR}/ (written by lacos_helpers "
                                ">= 0.2): pass the backbone and tokenizer the run trained with")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def load_encoder(run_dir: str | os.PathLike, *, backbone: nn.Module | None = None,
                 tokenizer=None, trained: bool = True) -> SiameseEncoder:
    """The trained encoder of a run directory: its configuration's backbone, 8-bit as trained,
    the run's adapter (final, else the latest checkpoint), pooling and max_length restored.
    Pass ``backbone`` / ``tokenizer`` to reuse an already loaded (unmodified) base model.
    ``trained=False`` gives the same encoder before training (LoRA B = 0: exactly the
    backbone), the baseline of the run's evaluations."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if backbone is None and tokenizer is None:
        tokenizer = run_tokenizer(cfg, run_dir)
    encoder = build_encoder(cfg, backbone, tokenizer)
    if not trained:
        return encoder.eval()
    adapter = run_adapter_dir(run_dir)
    lora.load_adapter(encoder.backbone, adapter)
    encoder.eval()
    log.info("[model] adapter loaded from %s", adapter)
    return encoder
