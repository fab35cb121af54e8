"""The ``colab`` profile's own code, run on a CPU: notebooks 00-04 and the CLI's train /
evaluate / resume with only the size and the steps reduced. A random BLOOM folder written by the
package (``rehearsal.write_random_bloom``: the Hub's layout, float16 shards, a tokenizer) stands
in for ``bigscience/bloom-560m``; it goes through the Hub loader, bitsandbytes' ``load_in_8bit``
with the frozen weights in 16 bits (as Colab loads them), weighted-mean pooling, bitsandbytes'
Adam8bit, gradient checkpointing and checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lacos_helpers import bloom, runtime

ROOT = Path(__file__).resolve().parents[1]
# Only size and steps: a 2-block BLOOM of hidden size 64, a few steps and pairs, 2 languages.
SMALL = {"train.steps": 6, "train.batch_size": 8, "train.warmup_steps": 1,
         "data.nli_limit": 400, "eval.sts_limit": 60, "eval.langs": ["en", "de"],
         "encoder.max_length": 32, "eval.batch_size": 32}
NOTEBOOKS = ["00", "01", "02", "03", "04"]


@pytest.fixture(scope="module")
def random_bloom(tmp_path_factory) -> Path:
    from lacos_helpers import data
    from lacos_helpers.rehearsal.checkpoint import write_random_bloom

    texts = data.training_texts(data.load_nli_triplets("en", limit=2000, seed=0))
    return write_random_bloom(tmp_path_factory.mktemp("hub") / "bloom-h64-l2",
                              bloom.BloomShape(64, 2, 1), tokenizer_texts=texts)


@pytest.fixture
def colab_env(random_bloom, tmp_path, monkeypatch):
    """The environment of a Colab session, but on this CPU at a small size."""
    monkeypatch.setenv("LACOS_PROFILE", "colab")
    monkeypatch.setenv("LACOS_MODEL_ID", str(random_bloom))
    monkeypatch.setenv("LACOS_OVERRIDES", json.dumps(SMALL))
    monkeypatch.setenv("LACOS_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LACOS_STATIC_WIDGETS", "1")
    monkeypatch.delenv("LACOS_RUN", raising=False)
    if runtime.data_dir() is None:  # a newcomer's clone: colab refuses generated data by default
        monkeypatch.setenv("LACOS_DATA_SOURCE", "generated")
    return tmp_path


def test_small_colab_profile_is_colab_at_a_smaller_size(colab_env, random_bloom):
    from lacos_helpers import config

    cfg = config.load_profile()
    full = config.PROFILES["colab"]
    assert cfg.model.model_id == str(random_bloom)
    assert (cfg.quant, cfg.lora, cfg.encoder.pooling) == (full.quant, full.lora, "weightedmean")
    assert (cfg.train.optimizer, cfg.train.gradient_checkpointing) == ("bnb-adam8bit", True)
    assert cfg.train.steps == 6 and cfg.data.allow_generated is False


@pytest.mark.slow
def test_colab_notebooks_00_to_04_run_on_cpu(colab_env):
    from lacos_helpers.course import runner

    out = colab_env / "course"
    saved = os.environ.get("LACOS_REPORT_FILE")
    try:
        failed = runner.run_course("colab", out, ROOT / "notebooks", NOTEBOOKS)
    finally:  # the runner sets these for its kernels
        os.environ.pop("LACOS_REPORT_FILE", None)
        if saved is not None:
            os.environ["LACOS_REPORT_FILE"] = saved
    summary = json.loads((out / "summary.json").read_text())
    errors = {row["notebook"]: row["error"] for row in summary["notebooks"] if row["error"]}
    assert failed == 0, errors


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_colab_cli_trains_resumes_and_evaluates_on_cpu(colab_env):
    """``train`` with the colab profile (bitsandbytes load_in_8bit in 16 bits, Adam8bit,
    checkpointing), a run cut after its first checkpoint resumed to the same adapter, and
    ``evaluate`` of the run."""
    from lacos_helpers import cli, training

    args = ["train", "--profile", "colab", "--steps", "4", "--checkpoint-every", "2"]
    straight, cut = colab_env / "straight", colab_env / "cut"
    assert cli.main([*args, "--out", str(straight)]) == 0
    assert cli.main([*args, "--out", str(cut)]) == 0
    run = json.loads((straight / "run.json").read_text())
    assert run["config"]["quant"]["backend"] == "bitsandbytes"
    assert run["config"]["train"]["optimizer"] == "bnb-adam8bit"
    # a kill after step 2: the later checkpoint, the final adapter and summary never written
    import shutil

    shutil.rmtree(cut / "adapter")
    shutil.rmtree(cut / "checkpoints" / "step-000004")
    (cut / "checkpoints" / "latest").write_text("step-000002")
    assert training.latest_checkpoint(cut).name == "step-000002"
    assert cli.main([*args, "--out", str(cut)]) == 0
    a, b = _adapter(straight), _adapter(cut)
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a), "the resumed run must reach the same adapter"
    assert cli.main(["evaluate", "--run", str(straight), "--split", "dev", "--limit", "20",
                     "--langs", "en,de"]) == 0
    assert any((straight / "eval").glob("*.md"))


def test_chapter_2_adapters_leave_a_16bit_backbone_exactly_as_prepared(colab_env):
    """Chapter 2's check "B = 0: exactly the 8-bit model" on the backbone as Colab loads it
    (bitsandbytes load_in_8bit, the rest in float16): preparing for k-bit training changes the
    numbers (norms to float32), so the chapter probes after preparing, then injects."""
    import torch

    from lacos_helpers import backbones, config, lora, quantization

    cfg = config.load_profile()
    model, tokenizer = backbones.load_backbone(cfg)
    assert backbones.model_dtype(model) == torch.float16 and quantization.has_8bit_layers(model)
    probe = runtime.to_device(tokenizer(["A man plays a guitar.", "Ein Kind reitet."],
                                        padding=True, return_tensors="pt"), model)
    with torch.no_grad():
        as_loaded = model(**probe).last_hidden_state.float()
    lora.prepare_for_kbit_training(model, gradient_checkpointing=True,
                                   upcast_frozen=cfg.quant.preparation != "lean")
    with torch.no_grad():
        prepared = model(**probe).last_hidden_state.float()
    assert not torch.equal(prepared, as_loaded)  # why the order matters in 16 bits
    lora.inject_lora(model, cfg.lora.targets, r=cfg.lora.r, alpha=cfg.lora.alpha,
                     dropout=cfg.lora.dropout)
    with torch.no_grad():
        injected = model(**probe).last_hidden_state.float()
    assert torch.equal(injected, prepared)
