"""DeepSpeed ZeRO-3 (+ CPU offload): the shipped configuration files equal the Python template,
fill from the run's configuration and are accepted by DeepSpeed; the ZeRO-3 memory arithmetic
for BLOOM-176B; and (slow, ~1 minute) the tiny BLOOM trains under ZeRO-3 + CPU offload on 2 CPU
processes (``DS_ACCELERATOR=cpu``) with the single-process loss and gradient norm of the same
global batch.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lacos_helpers import bloom, config, data, training
from lacos_helpers.memory import zero3 as zero_memory
from lacos_helpers.training import zero

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 420


@pytest.fixture(scope="module")
def cfg(ci_cfg):
    return ci_cfg.replace(train={"batch_size": 8, "grad_accum": 2, "learning_rate": 1e-3,
                                 "weight_decay": 0.01})


# -- configuration -------------------------------------------------------------------------

def test_shipped_files_are_the_template(tmp_path):
    import yaml

    from lacos_helpers import cli

    assert cli.main(["zero-configs", str(tmp_path)]) == 0  # what wrote them
    for name in (zero.JSON_NAME, zero.ACCELERATE_NAME):
        assert (tmp_path / name).read_text() == (REPO / "configs" / name).read_text(), name

    shipped = json.loads((REPO / "configs" / zero.JSON_NAME).read_text())
    assert shipped == zero.zero3_template()
    acc = yaml.safe_load((REPO / "configs" / zero.ACCELERATE_NAME).read_text())
    assert acc == zero.accelerate_config()
    assert acc["distributed_type"] == "DEEPSPEED"
    assert (REPO / acc["deepspeed_config"]["deepspeed_config_file"]).is_file()
    assert shipped["zero_optimization"]["stage"] == 3
    assert shipped["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert shipped["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_fill_config_from_the_run(cfg):
    filled = zero.load_config(REPO / "configs" / zero.JSON_NAME, cfg, world_size=4)
    assert filled["train_micro_batch_size_per_gpu"] == 2  # global batch 8 over 4 processes
    assert filled["gradient_accumulation_steps"] == 2
    assert filled["train_batch_size"] == 16
    assert filled["gradient_clipping"] == cfg.train.max_grad_norm
    assert filled["optimizer"]["params"]["lr"] == 1e-3
    assert filled["optimizer"]["params"]["weight_decay"] == 0.01
    assert "auto" not in json.dumps(filled)


def test_config_errors(cfg, tmp_path):
    with pytest.raises(ValueError, match="divisible by the 3 processes"):
        zero.fill_config(zero.zero3_template(), cfg, world_size=3)
    with pytest.raises(ValueError, match="no value for foo.bar"):
        zero.fill_config({**zero.zero3_template(), "foo": {"bar": "auto"}}, cfg, 2)
    stage2 = zero.zero3_template()
    stage2["zero_optimization"]["stage"] = 2
    with pytest.raises(ValueError, match="ZeRO stage 3"):
        zero.fill_config(stage2, cfg, 2)
    bad_batch = {**zero.zero3_template(), "train_batch_size": 5}
    with pytest.raises(ValueError, match="train_batch_size 5"):
        zero.fill_config(bad_batch, cfg, 2)
    with pytest.raises(ValueError, match="still holds 'auto'"):
        zero.check_config(zero.zero3_template(), 2)
    with pytest.raises(FileNotFoundError):
        zero.load_config(tmp_path / "missing.json", cfg, 2)


def test_deepspeed_accepts_the_filled_config(cfg):
    """DeepSpeed's own parser and checks (without a process group it counts one process; the
    2-process configuration meets the real engine in the slow test below)."""
    pytest.importorskip("deepspeed")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.config import DeepSpeedConfig

    parsed = DeepSpeedConfig(zero.fill_config(zero.zero3_template(), cfg, world_size=1))
    assert parsed.zero_optimization_stage == 3
    assert parsed.train_batch_size == 16 and parsed.gradient_accumulation_steps == 2
    assert parsed.train_micro_batch_size_per_gpu == 8
    assert parsed.zero_config.offload_param.device == "cpu"
    assert parsed.zero_config.offload_optimizer.device == "cpu"
    assert parsed.gradient_clipping == cfg.train.max_grad_norm


# -- the arithmetic for BLOOM-176B --------------------------------------------------------

ON_GPU = zero.zero3_template(offload_params=False, offload_optimizer=False)


def test_zero3_memory_shards_the_16_bit_weights():
    n_params = bloom.param_count(14336, 70)["total"]
    for n in (8, 16, 64):
        row = zero_memory.zero3_memory(n, ds_config=ON_GPU)
        assert row.weights == pytest.approx(2 * n_params / n, rel=1e-3)
        assert row.local_batch == 64 // n
    eight = zero_memory.zero3_memory(8, ds_config=zero.zero3_template(offload_params=False))
    sixteen = zero_memory.zero3_memory(16, ds_config=zero.zero3_template(offload_params=False))
    assert sixteen.gpu_total < eight.gpu_total
    assert sixteen.activations == pytest.approx(eight.activations / 2, rel=0.01)
    # largest module gathered whole: the word embeddings, 250,880 x 14,336 in bf16
    assert eight.live >= 2 * 250880 * 14336


def test_offload_moves_weights_to_cpu_ram():
    on_gpu = zero_memory.zero3_memory(8, ds_config=ON_GPU)
    offloaded = zero_memory.zero3_memory(8)
    assert offloaded.weights == 0 and offloaded.gpu_total < on_gpu.gpu_total
    # one node of 8 GPUs holds the whole 16-bit model (+ the small Adam state) in CPU RAM
    assert 8 * on_gpu.weights <= offloaded.cpu_per_node <= 8 * on_gpu.weights + 1e9
    assert zero_memory.zero3_memory(64).cpu_per_node == pytest.approx(
        offloaded.cpu_per_node / 8, rel=1e-6)


def test_zero3_memory_bad_input():
    with pytest.raises(ValueError, match="n_gpus"):
        zero_memory.zero3_memory(0)
    with pytest.raises(ValueError, match="does not split"):
        zero_memory.zero3_memory(3)
    with pytest.raises(ValueError, match="unknown BLOOM size"):
        zero_memory.zero3_memory(8, size="42b")
    table = zero_memory.markdown(zero_memory.zero3_table((8, 16)))
    assert table.count("\n") == 3 and "GPU total GB" in table


@pytest.mark.parametrize("profile", ["paper", "colab", "ci"])
def test_zero3_memory_predicts_the_recipe_that_trains(profile):
    """The prediction per GPU and the ZeRO-3 training read one recipe
    (``training.zero_recipe.zero3_recipe``): the configuration the memory model counts is the
    one a GPU run trains, and the gathered modules are counted in that recipe's dtype."""
    from lacos_helpers import memory
    from lacos_helpers.training.zero_recipe import zero3_recipe

    cfg = config.load_profile(profile)
    on_gpu = zero3_recipe(cfg, "cuda")
    trained = zero.zero_recipe(cfg.replace(model={"device": "cuda"}))  # what a GPU run trains
    assert trained.replace(model={"device": cfg.model.device}) == on_gpu.config
    assert on_gpu.config.quant.backend == "none" and on_gpu.config.train.optimizer == "adamw"
    assert on_gpu.config.quant.preparation == cfg.quant.preparation
    size = "560m"
    no_buckets = copy.deepcopy(ON_GPU)  # the gathered modules alone: no live / prefetch budget
    no_buckets["zero_optimization"].update(stage3_max_live_parameters=0,
                                           stage3_prefetch_bucket_size=0)
    row = zero_memory.zero3_memory(8, size=size, cfg=cfg, global_batch=8, ds_config=no_buckets)
    est = memory.estimate_training_memory(on_gpu.config, size, batch=1, device="cuda")
    weights = est.weights_int8 + est.weights_scales + est.weights_float
    assert row.weights == pytest.approx(weights / 8)
    assert row.activations == est.activations
    shape = bloom.shape(size)
    embeddings = bloom.param_count(shape.hidden_size, shape.n_layer)["embeddings"]
    assert row.live == embeddings * on_gpu.base_bytes_per_param
    # the default reads the buckets of the configuration the training fills (the template)
    ds = zero.zero3_template()["zero_optimization"]
    default = zero_memory.zero3_memory(8, size=size, cfg=cfg, global_batch=8)
    assert default.live == (max(embeddings, ds["stage3_max_live_parameters"])
                            + ds["stage3_prefetch_bucket_size"]) * on_gpu.base_bytes_per_param
    assert default.weights == 0 and row.weights > 0  # the template offloads the parameters


# -- one real step under DeepSpeed on 2 CPU processes -----------------------------------------

def single_process_reference(cfg, triplets):
    """Loss and gradient norm (before clipping) of global micro-batch 0, plain MNR, with the
    encoder ZeRO-3 trains (16-bit base: no 8-bit cast), built as the processes build it."""
    rcfg = zero.zero_recipe(cfg)
    torch.manual_seed(rcfg.seed)
    encoder = training.build_encoder(rcfg, texts=data.training_texts(triplets)).train()
    plan = training.BatchPlan(training.usable_triplets(triplets, True),
                              rcfg.train.batch_size, rcfg.seed)
    loss = training.batch_loss(encoder, plan[0], rcfg.train)
    loss.backward()
    norm = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.requires_grad]).norm()
    return loss.item(), norm.item()


@pytest.mark.slow
def test_zero3_offload_trains_one_step_on_two_cpu_processes(tmp_path):
    pytest.importorskip("deepspeed")
    cfg = config.load_profile("ci", model={"device": "cpu"},
                              train={"batch_size": 8, "steps": 1, "learning_rate": 1e-3})
    out = tmp_path / "z3"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "lacos_helpers", "train", "--zero3", "--profile", "ci", "--steps", "1",
           "--batch-size", "8", "--lr", "1e-3", "--out", str(out)]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "LACOS_PROFILE": "ci"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, cwd=tmp_path)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        output, _ = proc.communicate()
        pytest.fail(f"DeepSpeed run timed out after {TIMEOUT_S} s:\n{output[-4000:]}")
    assert proc.returncode == 0, output[-4000:]
    result = json.loads((out / "zero_result.json").read_text())
    assert result["world_size"] == 2
    assert result["config"]["zero_optimization"]["stage"] == 3
    assert result["config"]["zero_optimization"]["offload_param"]["device"] == "cpu"
    record = result["records"][0]
    triplets = data.load_nli_triplets(cfg.data.train_langs, limit=cfg.data.nli_limit,
                                      seed=cfg.seed)
    loss, norm = single_process_reference(cfg, triplets)
    assert record["loss"] == pytest.approx(loss, rel=1e-5)
    # DeepSpeed averages the processes' gradients; the gathered loss needs their sum
    assert record["grad_norm"] == pytest.approx(norm, rel=1e-4)
    assert (out / "adapter" / "adapter_config.json").is_file()
