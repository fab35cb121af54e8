"""The Colab GPU path's logic, checked on a CPU: what would only show on the first GPU run."""

from __future__ import annotations

import torch

from lacos_helpers import runtime
from lacos_helpers.memory.measure import PeakMemory


def test_a_cpu_measurement_never_reports_the_gpu_peak(monkeypatch):
    """Chapter 3 rehearses a small BLOOM on the CPU while the course's encoder sits on the GPU:
    the GPU's peak is that encoder's, not the rehearsal's."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 123 * 10**9)
    with PeakMemory() as cpu_run:
        pass
    assert cpu_run.cuda_peak is None
    with PeakMemory(cuda=True) as gpu_run:
        pass
    assert gpu_run.cuda_peak == 123 * 10**9


def test_batches_go_to_the_model_and_tensors_come_back_through_the_cpu():
    from transformers import BatchEncoding

    model = torch.nn.Linear(2, 2).to("meta")
    batch = BatchEncoding({"input_ids": torch.ones(2, 3, dtype=torch.long),
                           "attention_mask": torch.ones(2, 3, dtype=torch.long)})
    moved = runtime.to_device(batch, model)
    assert isinstance(moved, BatchEncoding)
    assert {t.device.type for t in moved.values()} == {"meta"}
    assert runtime.to_device({"x": torch.ones(1)}, "meta")["x"].device.type == "meta"
    assert runtime.to_device(torch.ones(1), model).device.type == "meta"
    half = torch.ones(3, dtype=torch.bfloat16)
    assert runtime.to_numpy(half).dtype.name == "float32"
    assert runtime.to_numpy(torch.arange(3)).tolist() == [0, 1, 2]


def test_injected_lora_layers_take_the_mode_of_the_model():
    """With LoRA dropout (the colab and paper profiles: 0.05), a layer injected into a model in
    eval mode must not drop: chapter 2 reloads an adapter into an eval-mode backbone and
    compares outputs exactly."""
    from lacos_helpers import lora

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)).eval()
    lora.inject_lora(model, ["0", "1"], r=2, alpha=4, dropout=0.5)
    assert not any(m.training for m in model.modules())
    for layer in lora.lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 8)
    assert torch.equal(model(x), model(x))
