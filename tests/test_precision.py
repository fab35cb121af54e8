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
