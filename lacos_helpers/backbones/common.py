"""What every backbone loader shares: device choice, facts about a model and its tokenizer,
tokenizer preparation for batched embedding, and a quiet transformers load."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lacos_helpers.runtime import pick_device

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedTokenizerBase

    from lacos_helpers.config import RunConfig

log = logging.getLogger("lacos_helpers.backbones")


def resolve_device(cfg_or_device: RunConfig | str | None = "auto") -> torch.device:
    """The torch device for a configuration (``model.device``) or a device string, by
    :func:`lacos_helpers.runtime.pick_device`: ``"auto"`` -> cuda if available, else cpu; cuda
    without CUDA is an error."""
    import torch

    model = getattr(cfg_or_device, "model", None)
    pref = model.device if model is not None else cfg_or_device
    return torch.device(pick_device((pref or "auto").strip().lower()))


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a model (``PreTrainedModel.dtype``, else the first parameter's)."""
    dtype = getattr(model, "dtype", None)
    if dtype is not None:
        return dtype
    return next(model.parameters()).dtype


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def tokenizer_info(tokenizer: PreTrainedTokenizerBase) -> dict:
    """What matters about a tokenizer for pooling: vocabulary size (incl. added tokens), pad token,
    padding side and maximum length."""
    return {
        "vocab_size": len(tokenizer),
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "padding_side": tokenizer.padding_side,
        "model_max_length": tokenizer.model_max_length,
    }


def describe_backbone(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> str:
    """One line: class, parameters, dtype, device, hidden size / layers, tokenizer facts."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", "?")
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", "?")
    info = tokenizer_info(tokenizer)
    return (f"{type(model).__name__}: {count_parameters(model) / 1e6:.2f}M parameters, "
            f"{str(model_dtype(model)).replace('torch.', '')}, {model_device(model)}, "
            f"hidden {hidden} x {layers} layers | {type(tokenizer).__name__}: vocab "
            f"{info['vocab_size']}, pad {info['pad_token']!r}, padding {info['padding_side']}, "
            f"max_length {info['model_max_length']}")


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase,
                      max_length: int | None = None) -> PreTrainedTokenizerBase:
    """Make a decoder tokenizer ready for batched embedding: pad token (own, else eos, else unk),
    ``padding_side="left"`` and ``model_max_length`` = ``max_length`` (when given)."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "left"
    if max_length:
        tokenizer.model_max_length = int(max_length)
    # recorded so that save_pretrained() writes it and a reload pads the same way
    tokenizer.init_kwargs["padding_side"] = "left"
    return tokenizer


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logging, progress bars (incl. the GGUF de-quantization tqdm bar) and
    the warnings transformers raises for the duration of a load; restores everything
    afterwards (nothing process-wide)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # transformers' GGUF reader uses a plain ``tqdm`` bar that ignores the switch above (and
    # TQDM_DISABLE is read when tqdm is imported): swap in a disabled bar for the load.
    gguf_utils = _gguf_utils_module()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(transformers|huggingface_hub|gguf)\b")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm


def _gguf_utils_module():
    """``transformers.modeling_gguf_pytorch_utils`` if importable (it needs no ``gguf``)."""
    try:
        return importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:
        return None


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """``dtype=`` (transformers >= 4.56) or the older ``torch_dtype=``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def report(kind: str, name: str, model, device, seconds: float, extra: str = "") -> None:
    """Log one line about a loaded backbone."""
    dtype = str(model_dtype(model)).replace("torch.", "")
    log.info("[backbone] %s %s: %s, %.2fM parameters, %s, %s, loaded in %.1fs%s", kind, name,
             type(model).__name__, count_parameters(model) / 1e6, dtype, device, seconds,
             f"; {extra}" if extra else "")
