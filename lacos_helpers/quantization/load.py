"""Load a checkpoint straight into 8 bits with :class:`Int8Linear` (what ``load_in_8bit`` does
with bitsandbytes): the model is built on the meta device, its storage allocated once, and the
safetensors shards are streamed tensor by tensor, each linear weight quantized as it arrives.
The float model never exists: the peak is the 8-bit model plus one tensor.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from lacos_helpers.modules import matches_any, replace_submodule
from lacos_helpers.quantization.int8_linear import DEFAULT_THRESHOLD, Int8Linear, _rowwise_int8

log = logging.getLogger(__name__)


def _shard_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = dict.fromkeys(json.loads(index.read_text())["weight_map"].values())
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"{folder} holds no safetensors checkpoint (model.safetensors or "
                            "model.safetensors.index.json)")


def load_quantized(folder: str | Path, *, dtype: torch.dtype = torch.float16,
                   compute: str = "int8", threshold: float = DEFAULT_THRESHOLD,
                   skip: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """The base model (``AutoModel``) of the checkpoint in ``folder`` with every ``nn.Linear``
    (but ``skip``) as an :class:`Int8Linear` and the other weights in ``dtype``, on the CPU,
    in eval mode. Checkpoint keys with a ``transformer.`` prefix (causal-LM checkpoints) are
    accepted; a missing or unexpected key is an error naming it."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModel.from_config(config, dtype=dtype)
    linears = [(name, m) for name, m in model.named_modules()
               if type(m) is nn.Linear and not matches_any(name, skip)]
    for name, linear in linears:
        replace_submodule(model, name, Int8Linear(
            linear.in_features, linear.out_features, bias=linear.bias is not None,
            threshold=threshold, device="meta", bias_dtype=dtype, compute=compute))
    model.to_empty(device="cpu")
    targets = dict(model.named_parameters()) | dict(model.named_buffers())
    quantized = {f"{name}.weight" for name, _ in linears}
    loaded: set[str] = set()
    for shard in _shard_files(folder):
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has keys(), no iteration
                name = key.removeprefix("transformer.")
                if name not in targets:
                    raise KeyError(f"{shard.name}: unexpected tensor {key!r} for "
                                   f"{type(model).__name__}")
                tensor = f.get_tensor(key)
                with torch.no_grad():
                    if name in quantized:
                        layer = model.get_submodule(name.removesuffix(".weight"))
                        codes, scale = _rowwise_int8(tensor)
                        layer.weight.copy_(codes)
                        layer.weight_scale.copy_(scale)
                    else:
                        targets[name].copy_(tensor.to(targets[name].dtype))
                loaded.add(name)
                del tensor
    missing = sorted((set(dict(model.named_parameters())) | quantized) - loaded)
    if missing:
        raise KeyError(f"{folder}: the checkpoint lacks {missing[:5]}"
                       f"{' ...' if len(missing) > 5 else ''}")
    model.lacos_quantization = {"backend": "lacos", "threshold": threshold, "compute": compute,
                                "replaced": [name for name, _ in linears]}
    model.config._name_or_path = str(folder)
    log.info("[model] %d linear layers loaded straight into 8 bits (lacos, %s)", len(linears),
             compute)
    return model.eval()
