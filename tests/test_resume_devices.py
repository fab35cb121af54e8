"""Resume on another device: a checkpoint's RNG states stay on the CPU whatever the training
device (``torch.set_rng_state`` takes only a CPU ByteTensor), and the optimizer state follows
the parameters. On the CPU the ``meta`` device stands in for a GPU; the last test needs CUDA."""

import copy

import pytest
import torch

from lacos_helpers import config, data, runtime, training
from lacos_helpers.optim import make_optimizer
from lacos_helpers.training import checkpoints


@pytest.fixture(scope="module")
def cfg(ci_cfg):
    return ci_cfg.replace(train={"batch_size": 8, "steps": 4, "warmup_steps": 1})


def new_trainer(cfg, base, triplets, out_dir) -> training.Trainer:
    """A trainer of a fresh encoder, as a new process builds it."""
    runtime.seed_everything(cfg.seed)
    backbone, tokenizer = base
    encoder = training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)
    return training.Trainer(cfg, encoder, triplets, out_dir, show_progress=False)


def trained_one_step(cfg, base, triplets, out_dir) -> training.Trainer:
    """A trainer after one real step, checkpointed."""
    trainer = new_trainer(cfg, base, triplets, out_dir)
    trainer.restore(trainer.prepare_run_dir())
    trainer.train_step()
    trainer.checkpoint()
    return trainer


def test_read_checkpoint_keeps_rng_states_on_the_cpu(cfg, ci_backbone, ci_triplets, tmp_path):
    first = trained_one_step(cfg, ci_backbone, ci_triplets, tmp_path)
    backbone = new_trainer(cfg, ci_backbone, ci_triplets, tmp_path).encoder.backbone
    state = checkpoints.read_checkpoint(first.last_good, backbone)
    checkpoints.set_rng_state(state.rng)  # raised TypeError: RNG state must be a ByteTensor
    assert state.rng["torch"].device.type == "cpu"
    assert torch.equal(torch.get_rng_state(), first._rng_at_step["torch"])


def test_trainer_restores_for_another_device(cfg, ci_backbone, ci_triplets, tmp_path):
    """The trainer of a GPU run: its loaded state must not follow ``device`` blindly."""
    first = trained_one_step(cfg, ci_backbone, ci_triplets, tmp_path)
    resumed = new_trainer(cfg, ci_backbone, ci_triplets, tmp_path)
    resumed.device = torch.device("meta")
    resumed.restore(resumed.prepare_run_dir())
    assert resumed.step == 1 and resumed.last_good == first.last_good
    assert torch.equal(torch.get_rng_state(), first._rng_at_step["torch"])
    for mine, theirs in zip(resumed.params, first.params):
        got, want = resumed.engine.optimizer.state[mine], first.engine.optimizer.state[theirs]
        assert got.keys() == want.keys()
        for key, value in got.items():
            if isinstance(value, torch.Tensor):
                assert value.device == mine.device and torch.equal(value, want[key]), key


@pytest.mark.parametrize("name", ["adam8bit", "adamw"])
def test_optimizer_state_loaded_on_the_cpu_moves_to_the_parameters(name, tmp_path):
    """A guard (held before the fix): state loaded on the CPU reaches the parameters' device
    (``meta`` here) with its dtypes (uint8 codes of the 8-bit moments)."""
    params = [torch.nn.Parameter(torch.randn(64, 80)), torch.nn.Parameter(torch.randn(8))]
    optimizer = make_optimizer(name, params, lr=1e-2)
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    saved = torch.load(tmp_path / "optimizer.pt", map_location="cpu", weights_only=False)
    elsewhere = [torch.nn.Parameter(p.detach().to("meta")) for p in params]
    restored = make_optimizer(name, elsewhere, lr=1e-2)
    restored.load_state_dict(saved)
    for p, original in zip(elsewhere, params):
        for key, value in restored.state[p].items():
            if isinstance(value, torch.Tensor) and key != "step":  # torch keeps step on CPU
                assert value.device.type == "meta", key
                assert value.dtype == optimizer.state[original][key].dtype, key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda(tmp_path):
    cfg = config.load_profile("ci", model={"device": "cuda"},
                              train={"steps": 3, "warmup_steps": 1, "checkpoint_every": 1})
    triplets = data.load_nli_triplets("en", limit=400, seed=0)
    runtime.seed_everything(0)
    pristine = training.build_encoder(cfg, texts=data.training_texts(triplets))
    stopped = training.train(cfg, copy.deepcopy(pristine), triplets, out_dir=tmp_path,
                             show_progress=False, callbacks=[lambda r: r["step"] >= 2])
    assert stopped.interrupted and stopped.step == 2
    result = training.train(cfg, copy.deepcopy(pristine), triplets, out_dir=tmp_path,
                            show_progress=False)  # raised TypeError in set_rng_state
    assert result.resumed_from == 2 and result.step == 3
    assert all(torch.isfinite(torch.tensor(result.losses)))
    on_gpu = checkpoints.rng_state()
    on_gpu = {**on_gpu, "torch": on_gpu["torch"].cuda(),
              "cuda": [s.cuda() for s in on_gpu["cuda"]]}
    checkpoints.set_rng_state(on_gpu)  # GPU tensors (an old checkpoint loaded on the GPU)
