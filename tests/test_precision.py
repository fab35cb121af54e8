"""Mixed precision by compute capability, with the device query mocked: bf16 only where it is
native (>= 8.0), fp16 + GradScaler on older GPUs, float32 on the CPU."""

from __future__ import annotations

import pytest
import torch

from lacos_helpers import runtime
from lacos_helpers.training import precision

GPUS = {"T4": (7, 5), "V100": (7, 0), "A100": (8, 0), "H100": (9, 0)}


@pytest.fixture
def gpu(monkeypatch):
    def use(name: str):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: GPUS[name])
        # is_bf16_supported() says True on a T4 (emulated): it must not decide
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return use


@pytest.mark.parametrize("name, dtype, scaler", [
    ("T4", torch.float16, True), ("V100", torch.float16, True),
    ("A100", torch.bfloat16, False), ("H100", torch.bfloat16, False),
])
def test_gpu_precision_follows_compute_capability(gpu, monkeypatch, name, dtype, scaler):
    gpu(name)
    cuda = torch.device("cuda")
    assert precision.amp_dtype(cuda) == dtype
    assert runtime.native_bf16(cuda) == (dtype == torch.bfloat16)
    made = []
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device: made.append(device) or "scaler")
    assert (precision.make_scaler(cuda) == "scaler") == scaler
    assert made == (["cuda"] if scaler else [])


def test_cpu_trains_in_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: pytest.fail("no GPU query on the CPU"))
    cpu = torch.device("cpu")
    assert precision.amp_dtype(cpu) is None and precision.make_scaler(cpu) is None
    assert not runtime.native_bf16("cpu")
    with precision.autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


# --------------------------------------------------------------------------------------------
# bfloat16 matmuls on CPUs that have them (the cpu profile's encoder.cpu_bf16)
# --------------------------------------------------------------------------------------------

SENTENCES = ["A man is playing a guitar on stage.", "Dogs run.", "Ein Mann spielt Gitarre.",
             "Two children are building a sandcastle on a sunny beach near the water."]


@pytest.mark.parametrize("avx512_bf16, amx, native", [
    (True, False, True), (False, True, True), (False, False, False)])
def test_cpu_native_bf16_reads_the_cpu_flags(monkeypatch, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert runtime.cpu_native_bf16() is native


def _layer_and_input():
    from lacos_helpers.quantization.int8_linear import Int8Linear

    torch.manual_seed(0)
    layer = Int8Linear.from_linear(torch.nn.Linear(96, 80), compute="dequantize")
    x = torch.randn(3, 7, 96, requires_grad=True)
    return layer, x


def _output_and_input_grad(layer, x, autocast: bool):
    x.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y, x.grad.clone()


def test_weight_only_layer_under_autocast_dequantizes_to_bf16_and_stays_close(monkeypatch):
    from lacos_helpers.quantization import int8_linear

    layer, x = _layer_and_input()
    y32, g32 = _output_and_input_grad(layer, x, autocast=False)
    made = []
    dequantize = int8_linear._dequantized_rows
    monkeypatch.setattr(int8_linear, "_dequantized_rows",
                        lambda *a: made.append(a[-1]) or dequantize(*a))
    y16, g16 = _output_and_input_grad(layer, x, autocast=True)
    assert y16.dtype == torch.bfloat16 and y16.shape == y32.shape == (3, 7, 80)
    assert made and set(made) == {torch.bfloat16}  # rows made in bf16, forward and backward
    assert g16.dtype == torch.float32  # the input's gradient in the input's dtype
    assert (y16.float() - y32).abs().max() <= 2e-2 * y32.abs().max()
    assert (g16 - g32).abs().max() <= 2e-2 * g32.abs().max()
    assert not torch.equal(y16.float(), y32)  # it did round: the check above is not vacuous


def test_weight_only_layer_in_row_chunks_under_autocast(monkeypatch):
    from lacos_helpers.quantization import int8_linear

    layer, x = _layer_and_input()
    whole, _ = _output_and_input_grad(layer, x, autocast=True)
    monkeypatch.setattr(int8_linear, "DEQUANT_CHUNK_NUMEL", 96 * 16)  # 5 chunks of 16 rows
    chunked, _ = _output_and_input_grad(layer, x, autocast=True)
    assert chunked.dtype == torch.bfloat16
    assert (chunked.float() - whole.float()).abs().max() <= 1e-2 * whole.float().abs().max()


@pytest.fixture
def lora_encoders(ci_backbone, monkeypatch):
    """(float32 encoder, cpu_bf16 encoder) sharing one 8-bit weight-only tiny BLOOM with LoRA
    (B nonzero), on a CPU said to have native bfloat16."""
    import copy

    from lacos_helpers import lora, quantization
    from lacos_helpers.encoder import siamese

    backbone, tokenizer = ci_backbone
    model = quantization.quantize_model(copy.deepcopy(backbone), backend="lacos",
                                        compute="dequantize")
    lora.inject_lora(model, target_modules=("query_key_value",), r=4, alpha=8)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    monkeypatch.setattr(siamese, "cpu_native_bf16", lambda: True)
    return (siamese.SiameseEncoder(model, tokenizer, "lasttoken", 32),
            siamese.SiameseEncoder(model, tokenizer, "lasttoken", 32, cpu_bf16=True))


def test_cpu_bf16_encoder_computes_in_bf16_and_returns_float32(lora_encoders):
    enc32, enc16 = lora_encoders
    assert enc32.compute_dtype is None and enc16.compute_dtype == torch.bfloat16
    assert enc16.to_config()["cpu_bf16"] is True and "cpu_bf16=True" in repr(enc16)
    seen = []
    hook = enc16.backbone.h[0].self_attention.query_key_value.base_layer.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    a = enc32.encode(SENTENCES, show_progress=False)
    b = enc16.encode(SENTENCES, show_progress=False)
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]  # one batch each
    assert b.dtype == torch.float32 and b.shape == a.shape and torch.isfinite(b).all()
    cosine = (a * b).sum(dim=1)  # unit vectors
    assert cosine.min() > 0.99 and not torch.equal(a, b)
    with enc16.float32():
        assert enc16.compute_dtype is None
        c = enc16.encode(SENTENCES, show_progress=False)
    assert enc16.compute_dtype == torch.bfloat16  # restored after the block
    assert (c - a).abs().max() < 1e-6


def test_cpu_bf16_training_gradients_are_float32_and_close(lora_encoders):
    enc32, enc16 = lora_encoders
    grads = []
    for enc in (enc32, enc16):
        enc.zero_grad(set_to_none=True)
        emb = enc.embed(SENTENCES)
        assert emb.dtype == torch.float32 and emb.requires_grad
        (emb * torch.linspace(-1, 1, emb.shape[1])).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in enc.parameters() if p.requires_grad]))
    g32, g16 = grads
    assert g16.dtype == torch.float32 and torch.isfinite(g16).all()
    assert (g16 - g32).norm() <= 0.05 * g32.norm()


def test_cpu_bf16_is_float32_on_a_cpu_without_native_bf16(lora_encoders, monkeypatch):
    from lacos_helpers.encoder import siamese

    enc32, enc16 = lora_encoders
    monkeypatch.setattr(siamese, "cpu_native_bf16", lambda: False)
    assert enc16.compute_dtype is None
    a, b = (e.encode(SENTENCES, show_progress=False) for e in (enc32, enc16))
    assert (a - b).abs().max() < 1e-6


def test_cpu_bf16_configuration():
    from lacos_helpers import config

    assert config.load_profile("cpu").encoder.cpu_bf16 is True
    assert all(not config.load_profile(name).encoder.cpu_bf16
               for name in ("ci", "colab", "paper"))
    with pytest.raises(ValueError, match="encoder.cpu_bf16"):
        config.load_profile("ci", encoder={"cpu_bf16": "yes"})
    old = config.load_profile("cpu").to_dict()
    del old["encoder"]["cpu_bf16"]  # a run.json written before the field existed
    assert config.RunConfig.from_dict(old).encoder.cpu_bf16 is False
