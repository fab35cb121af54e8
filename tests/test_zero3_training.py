"""ZeRO-3 trains through the one trainer (issue 27): the data policy of the run is passed to
its loaders (``colab`` / ``paper`` refuse generated data without a data folder or the Hub,
whatever the session's policy), and a killed ZeRO-3 run resumes to the adapter of an
uninterrupted one (slow: 2 CPU processes under ``DS_ACCELERATOR=cpu``, ~4 minutes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lacos_helpers import config, runtime
from lacos_helpers.data import sources

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "zero3_worker.py"
TIMEOUT_S = 420


# -- the recipe ------------------------------------------------------------------------------

def test_zero3_recipe_per_device():
    from lacos_helpers.training import zero
    from lacos_helpers.training.zero_recipe import zero3_recipe

    paper = config.load_profile("paper")
    gpu, cpu = zero3_recipe(paper, "cuda:1"), zero3_recipe(paper, "cpu")
    assert (gpu.dtype, gpu.base_bytes_per_param, gpu.bf16) == ("bfloat16", 2, True)
    assert (cpu.dtype, cpu.base_bytes_per_param, cpu.bf16) == ("float32", 4, False)
    for recipe in (gpu, cpu):
        assert recipe.config.quant.backend == "none" and not recipe.config.quant.load_in_8bit
        assert recipe.config.model.dtype == recipe.dtype  # a Hub model loads in that dtype
        assert recipe.config.train.optimizer == "adamw"
        assert recipe.config.quant.preparation == paper.quant.preparation
    # the training reads the same recipe, on the run's device
    trained = zero.zero_recipe(paper.replace(model={"device": "cpu"}))
    assert trained == zero3_recipe(paper, "cpu").config.replace(model={"device": "cpu"})


# -- the data policy is the run's, passed explicitly -------------------------------------------

@pytest.fixture
def no_data(monkeypatch):
    """No data folder, no Hub, no source asked for by name."""
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    monkeypatch.setattr(runtime, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(runtime, "data_dir", lambda: None)


@pytest.mark.parametrize("profile", ["colab", "paper"])
def test_real_data_profiles_refuse_generated_whatever_the_session(profile, no_data):
    policy = sources.DataPolicy.of(config.load_profile(profile).data)
    assert not policy.allow_generated
    previous = sources.set_policy("auto", allow_generated=True)  # a permissive session
    try:
        with pytest.raises(sources.DataSourceError, match="real data only"):
            sources.resolve_source(policy)
    finally:
        sources.set_policy(previous.source, previous.allow_generated)


def test_generated_by_name_is_allowed(no_data, monkeypatch):
    policy = sources.DataPolicy.of(config.load_profile("colab").data)
    monkeypatch.setenv(sources.SOURCE_ENV, "generated")
    assert sources.resolve_source(policy) == "generated"
    assert sources.resolve_source(sources.DataPolicy("auto", True)) == "generated"


def test_the_session_policy_does_not_leak_into_a_run(no_data):
    """A session that forbids generated data does not forbid it to a run that allows it."""
    previous = sources.set_policy("auto", allow_generated=False)
    try:
        assert sources.resolve_source(sources.DataPolicy("auto", True)) == "generated"
    finally:
        sources.set_policy(previous.source, previous.allow_generated)


# -- 2 CPU processes under DeepSpeed -----------------------------------------------------------

def launch(args, tmp_path, **env):
    """``torchrun`` 2 processes of :mod:`zero3_worker` with no data folder and no source asked
    for by name unless ``env`` says; returns (exit code, output)."""
    pytest.importorskip("deepspeed")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(WORKER), *args]
    base = {k: v for k, v in os.environ.items() if k not in ("LACOS_DATA_DIR", sources.SOURCE_ENV)}
    full_env = {**base, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": str(REPO), **env}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, cwd=tmp_path)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        output, _ = proc.communicate()
        pytest.fail(f"run timed out after {TIMEOUT_S} s:\n{output[-4000:]}")
    return proc.returncode, output


@pytest.mark.slow
def test_zero3_run_refuses_generated_data_in_colab(tmp_path):
    """No data folder and no Hub: a ``colab`` ZeRO-3 run stops before loading anything."""
    code, output = launch(["train", "--zero3", "--profile", "colab", "--steps", "1", "--out",
                           str(tmp_path / "run")], tmp_path)
    assert code != 0
    assert "real data only" in output, output[-4000:]
    assert not (tmp_path / "run" / "adapter").exists()


def adapter_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_killed_zero3_run_resumes_to_the_same_adapter(tmp_path):
    args = ["train", "--zero3", "--profile", "ci", "--steps", "2", "--batch-size", "8",
            "--lr", "1e-3", "--limit", "64", "--checkpoint-every", "1", "--eval-every", "2",
            "--data-source", "generated"]
    code, output = launch([*args, "--out", str(tmp_path / "whole")], tmp_path)
    assert code == 0, output[-4000:]
    code, output = launch([*args, "--out", str(tmp_path / "killed")], tmp_path,
                          KILL_AFTER_STEP="1")
    assert code != 0, output[-4000:]
    killed = tmp_path / "killed"
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step-000001"
    assert (killed / "checkpoints" / "zero" / "step-000001").is_dir()
    assert not (killed / "adapter").exists()
    code, output = launch([*args, "--out", str(killed)], tmp_path)
    assert code == 0, output[-4000:]
    assert "resumed from" in output
    from lacos_helpers.training import runs

    steps = [r["step"] for r in runs.read_log(killed) if r["kind"] == "train"]
    assert steps == [1, 2]
    whole, resumed = adapter_weights(tmp_path / "whole"), adapter_weights(killed)
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=1e-6, msg=name)
    assert any(bool(v.abs().sum()) for k, v in whole.items() if "lora_B" in k)  # it trained


@pytest.mark.parametrize("zero3, world, leaves", [(True, 2, True), (True, 1, False),
                                                  (False, 2, False)])
def test_launched_zero3_worker_leaves_without_teardown(monkeypatch, zero3, world, leaves):
    """A finished ZeRO-3 worker among several leaves the process group, then exits at once (the
    interpreter's teardown aborted a CPU rank now and then); anything else returns."""
    import argparse

    from lacos_helpers import cli
    from lacos_helpers.training import distributed, zero

    calls = []
    info = distributed.ProcessInfo(rank=0, world_size=world)
    monkeypatch.setattr(zero, "join_processes", lambda: None)
    monkeypatch.setattr(distributed, "launch_info", lambda: info)
    monkeypatch.setattr(distributed, "init_process_group", lambda: info)
    monkeypatch.setattr(cli, "_train", lambda args, info: 3)
    monkeypatch.setattr(distributed, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(runtime, "exit_now", lambda code: calls.append(("exit", code)))
    assert cli.train_command(argparse.Namespace(zero3=zero3)) == 3
    assert calls == (["shutdown", ("exit", 3)] if leaves else ["shutdown"])
