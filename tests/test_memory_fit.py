"""The memory model counts each activation in its real dtype (and the CUDA context on a GPU)
without moving its CPU predictions, and a colab/paper run is fitted to its GPU's free memory
before it trains (GradCache first, then a smaller batch, else an error with the numbers). The
GPU is mocked: ``torch.cuda.mem_get_info`` / ``memory_reserved`` and the encoder's device."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lacos_helpers import bloom, config, memory, rehearsal, runtime, training
from lacos_helpers.training import fit

GB = memory.GB
# The "predicted GB" column of README's table of the 18 reference rehearsals (CPU, measured on
# the reference machine): counting dtypes on a GPU must leave every CPU prediction where it was.
README_PREDICTED_GB = [2.47, 1.42, 2.21, 1.65, 3.38, 1.80, 3.36, 2.34, 2.18, 4.66, 3.14, 4.24,
                       11.62, 7.51, 12.59, 9.10, 4.38, 3.04]


def colab(preparation: str = "lean", **train) -> config.RunConfig:
    return config.load_profile("colab", quant={"preparation": preparation}, train=train)


def allocated(cfg, size="7b1") -> float:
    return memory.estimate_training_memory(cfg, size, device="cuda").allocated


def need(cfg, size="7b1") -> float:
    """What the fit compares with the free memory."""
    return fit.predicted_bytes(cfg, bloom.shape(size))


# -- the memory model ---------------------------------------------------------------------

def test_cpu_predictions_of_the_reference_rehearsals_are_unchanged():
    records = rehearsal.reference_records()
    assert [round(r["predicted_gb"], 2) for r in records] == README_PREDICTED_GB
    assert max(abs(r["error_percent"]) for r in records) <= 13.5  # worst: 560m at 32 x 64


def test_activation_dtypes_follow_the_recipe_backend_and_device():
    for preparation in ("lean", "standard"):  # float32 residual stream either way
        gpu = memory.activation_dtypes(colab(preparation), "cuda")
        # bitsandbytes' int8 matmul returns its (float32) input's dtype; attention is autocast
        assert (gpu.stream, gpu.linear, gpu.attention, gpu.autocast) == (4, 4, 2, 2)
    weight_only = colab().replace(quant={"backend": "lacos", "compute": "dequantize",
                                         "load_in_8bit": False})
    assert memory.activation_dtypes(weight_only, "cuda").linear == 2  # float matmul: 16-bit
    assert memory.activation_dtypes(colab(), "cpu") == memory.ActivationDtypes.uniform(4)
    bf16 = weight_only.replace(encoder={"cpu_bf16": True})
    assert memory.activation_dtypes(bf16, "cpu", cpu_native_bf16=True).linear == 2
    assert memory.activation_dtypes(bf16, "cpu", cpu_native_bf16=False).linear == 4


def test_gpu_prediction_counts_float32_activations_and_the_cuda_context():
    cfg = colab()
    est = memory.estimate_training_memory(cfg, "7b1", device="cuda")
    assert est.runtime == memory.CUDA_CONTEXT_BYTES and est.step_overhead == 0
    assert est.allocated == pytest.approx(est.total - memory.CUDA_CONTEXT_BYTES)
    shape = bloom.shape("7b1")
    sentences, tokens = 3 * cfg.train.batch_size, cfg.encoder.max_length
    dtypes = memory.activation_dtypes(cfg, "cuda")
    # every checkpointed block input is float32: one block more is 4 bytes per token and unit
    deeper = bloom.BloomShape(shape.hidden_size, shape.n_layer + 1, shape.n_head)
    extra = (memory.activation_bytes(deeper, sentences, tokens, True, dtypes)
             - memory.activation_bytes(shape, sentences, tokens, True, dtypes))
    assert extra == 4 * sentences * tokens * shape.hidden_size
    # the old model (every activation 16-bit) under-counted by about half
    assert est.activations > 1.8 * memory.activation_bytes(shape, sentences, tokens, True, 2)
    # bitsandbytes' backward dequantizes the 4h x h weight in its input's dtype, float32
    assert est.matmul_transient == 4 * (4 * 4096 * 4096)


def test_a_loaded_run_no_longer_meets_the_loaders_transients():
    standard = memory.estimate_training_memory(colab("standard"), "7b1", batch=2, max_length=16,
                                               device="cuda")
    assert standard.upcast_transient > standard.step  # the cast of the embeddings is the peak
    assert standard.training == pytest.approx(standard.resident + standard.step)
    assert standard.training < standard.total
    assert need(colab("standard", batch_size=2)) < allocated(colab("standard", batch_size=2))
    lean = memory.estimate_training_memory(colab(), "7b1", device="cuda")
    assert need(colab()) == pytest.approx(lean.training - lean.runtime) == lean.allocated


def test_gradcache_chunk_shrinks_the_predicted_activations():
    full = allocated(colab())
    chunks = [allocated(colab(cache_chunk=c)) for c in (16, 8, 4, 1)]
    assert full > chunks[0] > chunks[1] > chunks[2] > chunks[3]
    assert allocated(colab(cache_chunk=32)) == full  # one chunk: no GradCache


# -- fitting a run to its GPU -------------------------------------------------------------

def test_a_run_that_fits_is_unchanged():
    cfg = colab()
    assert fit.fit_to_device(cfg, "7b1", "cuda", free_bytes=80e9) == (cfg, None)


def test_too_big_takes_the_largest_gradcache_chunk_that_fits(capsys):
    cfg = colab()  # 32 triplets x 64 tokens of BLOOM-7b1 on a 16 GB T4 (~15 GB free)
    free = 15e9
    budget = free * (1 - fit.ALLOCATOR_MARGIN)
    assert need(cfg) > budget
    new, message = fit.fit_to_device(cfg, "7b1", "cuda", free_bytes=free)
    chunk = new.train.cache_chunk
    assert new.train.batch_size == 32 and 1 <= chunk < 32
    assert need(new) <= budget < need(colab(cache_chunk=chunk + 1))
    assert new.replace(train={"cache_chunk": None}) == cfg  # nothing else changed
    for number in (f"{need(cfg) / GB:.2f} GB", "15.00 GB free",
                   f"cache_chunk={chunk}", f"predicted {need(new) / GB:.2f} GB"):
        assert number in message, (number, message)
    assert message in capsys.readouterr().out


def test_the_budget_is_free_memory_plus_what_torch_already_holds(monkeypatch):
    seen = []

    def mem_get_info(device):
        seen.append(torch.device(device))
        return int(9e9), int(16e9)

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: int(7e9))
    assert fit.available_bytes("cuda:0") == int(16e9) and seen == [torch.device("cuda:0")]
    new, message = fit.fit_to_device(colab(), "7b1", "cuda:0")
    assert new.train.cache_chunk and "16.00 GB free on cuda:0" in message


def test_without_gradcache_a_smaller_batch_is_taken_and_said_to_change_the_recipe():
    cfg = colab()
    new, message = fit.fit_to_device(cfg, "7b1", "cuda", free_bytes=15e9,
                                     allow_gradcache=False)
    batch = new.train.batch_size
    assert 2 <= batch < 32 and not new.train.cache_chunk
    budget = 15e9 * (1 - fit.ALLOCATOR_MARGIN)
    assert need(new) <= budget < need(colab(batch_size=batch + 1))
    assert f"train.batch_size 32 -> {batch}" in message and "changes the recipe" in message


def test_nothing_fits_is_an_error_with_the_numbers():
    cfg = colab()
    with pytest.raises(fit.DeviceMemoryError) as error:
        fit.fit_to_device(cfg, "7b1", "cuda", free_bytes=6e9)  # the int8 weights alone: 6 GB
    text = str(error.value)
    assert "6.00 GB free" in text and f"{need(cfg) / GB:.2f} GB" in text
    assert f"{need(colab(cache_chunk=1)) / GB:.2f} GB at 32 triplets" in text
    assert "GradCache chunks of 1" in text and "nothing fits" in text


def test_cpu_runs_other_models_and_other_profiles_are_left_alone(lacos_log):
    cfg = colab()
    assert fit.fit_to_device(cfg, "7b1", "cpu", free_bytes=1e9) == (cfg, None)
    assert fit.fit_to_device(cfg, None, "cuda", free_bytes=1e9) == (cfg, None)
    other = config.load_profile("ci")
    assert fit.fit_to_device(other, "7b1", "cuda", free_bytes=1e9) == (other, None)
    assert "may not fit" in lacos_log.text and "'ci' profile is not adapted" in lacos_log.text


def test_the_shape_of_a_loaded_model_comes_from_its_config():
    class Model:
        config = bloom.bloom_config("7b1")

    assert fit.bloom_shape_of(Model()) == (bloom.shape("7b1"), bloom.VOCAB_SIZE)

    class NotBloom:
        config = type("Config", (), {"model_type": "gemma3_text"})()

    assert fit.bloom_shape_of(NotBloom()) is None
    assert fit.bloom_shape_of(object()) is None


def test_training_on_a_gpu_fits_first_and_run_json_records_what_trained(
        ci_cfg, ci_backbone, ci_triplets, tmp_path, monkeypatch, capsys):
    """The real ``training.train`` with the device mocked as a GPU whose free memory fits the
    tiny BLOOM only in GradCache chunks of 2 triplets (the run itself trains on the CPU)."""
    cfg = ci_cfg.replace(name="colab", train={"steps": 2, "batch_size": 8, "warmup_steps": 0})
    backbone, tokenizer = ci_backbone
    shape, vocab = fit.bloom_shape_of(backbone)
    budget = fit.predicted_bytes(cfg.replace(train={"cache_chunk": 2}), shape, vocab)
    monkeypatch.setattr(fit, "_device_of", lambda encoder: torch.device("cuda"))
    monkeypatch.setattr(fit, "available_bytes",
                        lambda device: budget / (1 - fit.ALLOCATOR_MARGIN) * (1 + 1e-9))
    runtime.seed_everything(cfg.seed)
    encoder = training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)
    result = training.train(cfg, encoder, ci_triplets[:32], out_dir=tmp_path, show_progress=False)
    assert result.config.train.cache_chunk == 2 and result.step == 2
    recorded = json.loads((tmp_path / "run.json").read_text())
    assert recorded["config"]["train"]["cache_chunk"] == 2
    assert recorded["config"]["train"]["batch_size"] == 8
    assert "cache_chunk=2" in capsys.readouterr().out
