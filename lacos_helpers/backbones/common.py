"""What every backbone loader shares: device choice, facts about a model and its tokenizer,
tokenizer preparation for batched embedding, and a quiet transformers load."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
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


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a model (``PreTrainedModel.dtype``, else the first parameter's)."""
    return getattr(model, "dtype", None) or next(model.parameters()).dtype


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def describe_backbone(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> str:
    """One line: class, parameters, dtype, device, hidden size / layers, tokenizer facts (vocabulary
    size incl. added tokens, pad token, padding side, maximum length)."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", "?")
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", "?")
    return (f"{type(model).__name__}: {count_parameters(model) / 1e6:.2f}M parameters, "
            f"{str(model_dtype(model)).replace('torch.', '')}, {model_device(model)}, "
            f"hidden {hidden} x {layers} layers | {type(tokenizer).__name__}: vocab "
            f"{len(tokenizer)}, pad {tokenizer.pad_token!r}, padding {tokenizer.padding_side}, "
            f"max_length {tokenizer.model_max_length}")


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
    from transformers import modeling_gguf_pytorch_utils as gguf_utils  # needs no gguf
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # transformers' GGUF reader uses a plain ``tqdm`` bar that ignores the switch above (and
    # TQDM_DISABLE is read when tqdm is imported): swap in a disabled bar for the load.
    gguf_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(transformers|huggingface_hub|gguf)\b")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        gguf_utils.tqdm = gguf_tqdm


def finish_load(kind: str, name: str, model, tokenizer, cfg: RunConfig, device, t0: float,
                extra: str = "", move: bool = True):
    """Every loader's end: ``(model, tokenizer)`` with the model in eval mode on ``device``
    (``move=False``: a ``device_map`` placed it already) and the tokenizer prepared
    (:func:`prepare_tokenizer`); logs one line (``t0``: the load's ``perf_counter`` start)."""
    if move:
        model = model.to(device)
    model.eval()
    tokenizer = prepare_tokenizer(tokenizer, cfg.encoder.max_length)
    log.info("[backbone] %s %s loaded in %.1fs%s: %s", kind, name, time.perf_counter() - t0,
             f" ({extra})" if extra else "", describe_backbone(model, tokenizer))
    return model, tokenizer
