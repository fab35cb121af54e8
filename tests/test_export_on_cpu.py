"""The export's float copy is built layer by layer and each float32 layer leaves the 8-bit
model's device as soon as it is made (on a GPU: one float layer at a time there, the float
model on the CPU). Without a GPU, the CPU plays the source device and ``meta`` the target: at
every layer built, each float layer built before it must already be on the target; the
result on the CPU is the same model as the float copy made in place."""

from __future__ import annotations

import copy

import pytest
import torch

from lacos_helpers import lora, quantization, runtime, training
from lacos_helpers.export import backbone as export_backbone


def _encoder(ci_cfg, ci_backbone, backend="lacos"):
    """The ci encoder with LoRA on query_key_value only (the other linears stay plain 8-bit)
    and non-zero adapters."""
    if backend == "bitsandbytes":
        pytest.importorskip("bitsandbytes")
    cfg = ci_cfg.replace(lora={"targets": ("query_key_value",)},
                         quant={"backend": backend, "compute": "int8"})
    backbone, tokenizer = ci_backbone
    runtime.seed_everything(0)
    encoder = training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)
    gen = torch.Generator().manual_seed(1)
    for layer in lora.lora_layers(encoder.backbone).values():
        layer.lora_B.weight.data = 0.05 * torch.randn(layer.lora_B.weight.shape, generator=gen)
    return encoder


def _count_8bit(model) -> tuple[int, int]:
    n_lora = len(lora.lora_layers(model))
    n_plain = sum(1 for name, m in model.named_modules()
                  if quantization.is_8bit_linear(m)
                  and not name.endswith("base_layer"))
    return n_lora, n_plain


@pytest.mark.parametrize("merge", [True, False])
@pytest.mark.parametrize("backend", ["lacos", "bitsandbytes"])
def test_each_float_layer_is_moved_before_the_next_is_built(ci_cfg, ci_backbone, monkeypatch,
                                                           merge, backend):
    backbone = _encoder(ci_cfg, ci_backbone, backend).backbone
    n_lora, n_plain = _count_8bit(backbone)
    assert n_lora > 0 and n_plain > 0
    built, moves = [], []
    source = next(backbone.parameters()).device

    def watch(build):
        def wrapped(*args, **kwargs):
            # every float layer made before this one has left the source device already
            assert all(m.weight.device == torch.device("meta") for m in built), len(built)
            layer = build(*args, **kwargs)
            assert layer.weight.device == source and layer.weight.dtype == torch.float32
            built.append(layer)
            return layer
        return wrapped

    place = export_backbone._place

    def counted_place(module, device):
        moves.append(device)
        return place(module, device)

    # every float layer starts as a dequantized copy (merging adds the adapter to it)
    monkeypatch.setattr(export_backbone, "dequantized_linear",
                        watch(export_backbone.dequantized_linear))
    monkeypatch.setattr(export_backbone, "_place", counted_place)
    export_backbone.float_backbone(backbone, merge=merge, device="meta")
    assert len(built) == len(moves) == n_lora + n_plain  # one transfer per 8-bit layer
    assert moves == [torch.device("meta")] * len(moves)
    tensors = [*backbone.parameters(), *backbone.buffers()]
    assert all(t.device.type == "meta" for t in tensors)
    assert all(t.dtype == torch.float32 for t in backbone.parameters())
    assert not quantization.has_8bit_layers(backbone) and not lora.lora_layers(backbone)


def test_the_float_model_on_the_cpu_is_the_one_made_in_place(ci_cfg, ci_backbone):
    encoder = _encoder(ci_cfg, ci_backbone)
    in_place = export_backbone.float_backbone(copy.deepcopy(encoder.backbone), device=None)
    on_cpu = export_backbone.float_backbone(encoder.backbone)  # the default: device="cpu"
    ours, theirs = on_cpu.state_dict(), in_place.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert tensor.device.type == "cpu" and tensor.dtype == theirs[name].dtype, name
        assert torch.equal(tensor, theirs[name]), name
    ids = torch.randint(4, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(on_cpu(ids).last_hidden_state,
                                   in_place(ids).last_hidden_state, rtol=0, atol=0)


def test_a_stale_device_map_of_an_8bit_load_is_dropped(ci_cfg, ci_backbone):
    backbone = _encoder(ci_cfg, ci_backbone).backbone
    backbone.hf_device_map = {"": 0}  # what load_in_8bit leaves on a GPU-loaded model
    export_backbone.float_backbone(backbone)
    assert not hasattr(backbone, "hf_device_map")
