"""A damaged latest checkpoint (a ``trainer_state.pt`` or adapter file truncated or missing: a
Google Drive sync cut short, a full disk): resume warns, naming the damaged file, and falls back
to the newest whole checkpoint; when none is whole it raises an error naming the files."""

import copy
import shutil

import pytest
import torch

from lacos_helpers import lora, runtime, training

STATE = "trainer_state.pt"


@pytest.fixture(scope="module")
def cfg(ci_cfg):
    return ci_cfg.replace(train={"batch_size": 8, "steps": 4, "warmup_steps": 1,
                                 "checkpoint_every": 2, "keep_checkpoints": 2})


def fresh_encoder(cfg, base):
    runtime.seed_everything(cfg.seed)
    backbone, tokenizer = base
    return training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)


def new_trainer(cfg, base, triplets, out_dir, **options) -> training.Trainer:
    return training.Trainer(cfg, fresh_encoder(cfg, base), triplets, out_dir,
                            show_progress=False, **options)


def checkpointed(cfg, base, triplets, out_dir, steps=(1, 2)) -> None:
    """A run directory with checkpoints at ``steps`` (no training: cheap)."""
    trainer = new_trainer(cfg, base, triplets, out_dir)
    trainer.restore(trainer.prepare_run_dir())
    for step in steps:
        trainer.step = step
        trainer.checkpoint()


def resumed(cfg, base, triplets, out_dir) -> training.Trainer:
    trainer = new_trainer(cfg, base, triplets, out_dir)
    trainer.restore(trainer.prepare_run_dir())
    return trainer


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def remove(path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def adapter_tensors(encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lora.lora_state_dict(encoder.backbone).items()}


def test_resume_past_a_truncated_state_ends_like_an_uninterrupted_run(
        cfg, ci_backbone, ci_triplets, tmp_path, lacos_log):
    """A whole run (checkpoints at steps 2 and 4) whose latest trainer_state.pt is then cut
    short: run again, it redoes steps 3-4 from step 2 and ends with the same adapter."""
    straight = fresh_encoder(cfg, ci_backbone)
    training.train(cfg, straight, ci_triplets, out_dir=tmp_path, show_progress=False)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-000002", "step-000004"]
    damaged = root / "step-000004" / STATE
    truncate(damaged)
    lacos_log.take()
    again = fresh_encoder(cfg, ci_backbone)
    torch.manual_seed(1234)  # a new process: another RNG state
    result = training.train(cfg, again, ci_triplets, out_dir=tmp_path, show_progress=False)
    warning = lacos_log.text
    assert str(damaged) in warning and str(root / "step-000002") in warning, warning
    assert result.resumed_from == 2 and result.step == 4
    diff = max((a - b).abs().max().item() for a, b in
               zip(adapter_tensors(straight).values(), adapter_tensors(again).values()))
    assert diff <= 1e-6
    assert training.latest_checkpoint(tmp_path).name == "step-000004"
    assert torch.load(damaged, weights_only=False)["step"] == 4  # rewritten whole
    steps = [r["step"] for r in training.read_log(tmp_path) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("name, damage", [
    (STATE, truncate),
    (STATE, remove),
    ("adapter_model.safetensors", truncate),
    ("adapter_model.safetensors", remove),
    ("adapter_config.json", truncate),
    ("", remove),  # the whole folder that ``latest`` names is gone
])
def test_damaged_latest_checkpoint_falls_back_to_the_previous(
        cfg, ci_backbone, ci_triplets, tmp_path, lacos_log, name, damage):
    checkpointed(cfg, ci_backbone, ci_triplets, tmp_path)
    damaged = tmp_path / "checkpoints" / "step-000002" / name
    damage(damaged)
    lacos_log.take()
    trainer = resumed(cfg, ci_backbone, ci_triplets, tmp_path)
    assert trainer.step == 1 and trainer.resumed_from == 1
    assert trainer.last_good.name == "step-000001"
    warning = lacos_log.text
    assert str(damaged) in warning and "step-000001" in warning, warning


def test_all_checkpoints_damaged_raise_an_error_naming_them(
        cfg, ci_backbone, ci_triplets, tmp_path):
    checkpointed(cfg, ci_backbone, ci_triplets, tmp_path)
    root = tmp_path / "checkpoints"
    truncate(root / "step-000002" / STATE)
    remove(root / "step-000001" / "adapter_model.safetensors")
    with pytest.raises(RuntimeError) as error:
        resumed(cfg, ci_backbone, ci_triplets, tmp_path)
    message = str(error.value)
    assert str(root / "step-000002" / STATE) in message, message
    assert str(root / "step-000001" / "adapter_model.safetensors") in message, message
    assert "resume=False" in message
    fresh = new_trainer(cfg, ci_backbone, ci_triplets, tmp_path, resume=False)
    fresh.restore(fresh.prepare_run_dir())  # starting over is the caller's choice
    assert fresh.step == 0 and not root.exists()
