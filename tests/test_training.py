"""Training loop: schedule, data order, checkpoints, resume after a kill, NaN stop, CLI."""
import copy
import json

import pytest
import torch

from lacos_helpers import data, lora, runtime, training
from lacos_helpers.cli import main as cli_main

STEPS = 8


@pytest.fixture(scope="module")
def cfg(ci_cfg):
    return ci_cfg.replace(train={"batch_size": 8, "steps": STEPS, "warmup_steps": 2},
                          data={"nli_limit": 400}, eval={"sts_limit": 64})


@pytest.fixture(scope="module")
def base(ci_backbone):
    return ci_backbone


@pytest.fixture(scope="module")
def triplets(cfg):
    return data.load_nli_triplets("en", limit=cfg.data.nli_limit, seed=cfg.seed)


def fresh_encoder(cfg, base):
    runtime.seed_everything(cfg.seed)
    backbone, tokenizer = base
    return training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)


def with_train(cfg, **train):
    return cfg.replace(train=train)


class SimulatedKill(Exception):
    """Raised from a callback: the process dies mid-run, nothing is saved."""


def adapter_tensors(encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lora.lora_state_dict(encoder.backbone).items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


# -- schedule and settings -------------------------------------------------------------------

def test_lr_factor_shapes():
    f = [training.lr_factor(s, 4, 20, "linear") for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == 1.0 and all(a >= b for a, b in zip(f[4:], f[5:])) and f[-1] > 0
    assert training.lr_factor(20, 4, 20, "linear") == 0.0
    assert training.lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert training.lr_factor(15, 4, 20, "constant") == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        training.lr_factor(0, 0, 10, "step")


def test_batch_plan_is_a_function_of_the_step(triplets):
    a = training.BatchPlan(triplets, 16, seed=1)
    b = training.BatchPlan(triplets, 16, seed=1)
    n = a.batches_per_epoch
    assert n >= 10
    assert [t.anchor for t in a[n + 3]] == [t.anchor for t in b[n + 3]]
    assert [t.anchor for t in a[3]] != [t.anchor for t in a[n + 3]]  # new epoch, new order
    for m in (0, n - 1, n):
        texts = [x for t in a[m] for x in t if x]
        assert len(texts) == len(set(texts))


def test_batch_plan_follows_epochs_of_different_length():
    # Many shared texts: deferred duplicates make some epochs one batch shorter than others.
    rows = [data.NLITriplet(f"premise {i % 7}", f"hypothesis {i}", None) for i in range(60)]
    plan = training.BatchPlan(rows, 5, seed=0)
    lengths = [len(data.no_duplicate_batches(rows, 5, seed=0, epoch=e)) for e in range(4)]
    flat = [b for e in range(4) for b in data.no_duplicate_batches(rows, 5, seed=0, epoch=e)]
    assert [plan[m] for m in range(sum(lengths))] == flat


def test_usable_triplets_filters_missing_hard_negatives(triplets):
    kept = training.usable_triplets(triplets, hard_negatives=True)
    assert 0 < len(kept) <= len(triplets) and all(t.hard_negative for t in kept)
    assert len(training.usable_triplets(triplets, hard_negatives=False)) == len(triplets)
    with pytest.raises(ValueError, match="empty"):
        training.usable_triplets([], hard_negatives=True)


# -- the loop --------------------------------------------------------------------------------

def test_only_lora_parameters_train(cfg, base):
    encoder = fresh_encoder(cfg, base)
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_training_lowers_loss_and_writes_run(cfg, base, tmp_path):
    encoder = fresh_encoder(cfg, base)
    before = adapter_tensors(encoder)
    more = data.load_nli_triplets("en", limit=2000, seed=cfg.seed)
    run_cfg = with_train(cfg, steps=40, batch_size=16, warmup_steps=4, checkpoint_every=15)
    result = training.train(run_cfg, encoder, more, out_dir=tmp_path, show_progress=False)
    losses = result.losses
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.2, losses
    assert max_diff(before, adapter_tensors(encoder)) > 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    log = training.read_log(tmp_path)
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(1, 41))
    assert (tmp_path / "log.csv").read_text().count("\n") == 41
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["config"]["name"] == "ci" and run["config"]["train"]["steps"] == 40
    assert run["environment"]["world_size"] == 1 and run["data"]["n_triplets"] > 0
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert result.config.train.batch_size == 16 and run["config"]["train"]["batch_size"] == 16
    assert checkpoints == ["step-000030", "step-000040"]  # keep_checkpoints=2
    assert training.latest_checkpoint(tmp_path).name == "step-000040"


def test_killed_run_resumes_to_the_same_adapter(cfg, base, triplets, tmp_path):
    run_cfg = with_train(cfg, checkpoint_every=3, grad_accum=2)
    straight = fresh_encoder(cfg, base)
    training.train(run_cfg, straight, triplets, out_dir=tmp_path / "straight",
                   show_progress=False)

    def kill_after_step_5(record):
        if record["kind"] == "train" and record["step"] == 5:
            raise SimulatedKill

    killed = fresh_encoder(cfg, base)
    with pytest.raises(SimulatedKill):
        training.train(run_cfg, killed, triplets, out_dir=tmp_path / "killed",
                       show_progress=False, callbacks=[kill_after_step_5])
    assert training.latest_checkpoint(tmp_path / "killed").name == "step-000003"
    resumed_encoder = fresh_encoder(cfg, base)  # a new process: fresh model, fresh RNG
    torch.manual_seed(1234)
    second = training.train(run_cfg, resumed_encoder, triplets, out_dir=tmp_path / "killed",
                            show_progress=False)
    assert second.resumed_from == 3 and second.step == STEPS
    assert max_diff(adapter_tensors(straight), adapter_tensors(resumed_encoder)) <= 1e-6
    steps = [r["step"] for r in training.read_log(tmp_path / "killed") if r["kind"] == "train"]
    assert steps == list(range(1, STEPS + 1))  # the lost steps 4-5 were redone, not duplicated


def test_keyboard_interrupt_checkpoints_finished_steps(cfg, base, triplets, tmp_path):
    straight = fresh_encoder(cfg, base)
    training.train(cfg, straight, triplets, out_dir=tmp_path / "a", show_progress=False)

    def interrupt_at_step_4(record):
        if record["kind"] == "train" and record["step"] == 4:
            raise KeyboardInterrupt

    encoder = fresh_encoder(cfg, base)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, encoder, triplets, out_dir=tmp_path / "b", show_progress=False,
                       callbacks=[interrupt_at_step_4])
    assert training.latest_checkpoint(tmp_path / "b").name == "step-000004"
    resumed = fresh_encoder(cfg, base)
    training.train(cfg, resumed, triplets, out_dir=tmp_path / "b", show_progress=False)
    assert max_diff(adapter_tensors(straight), adapter_tensors(resumed)) <= 1e-6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(cfg, base, triplets, tmp_path):
    encoder = fresh_encoder(cfg, base)
    poisoned = {"on": False}

    def poison_after_step_3(record):  # a step may run several forward passes (length groups)
        if record["kind"] == "train" and record["step"] == 3:
            poisoned["on"] = True

    def poison(module, inputs, output):
        if poisoned["on"]:
            output.last_hidden_state[:] = float("nan")
        return output

    encoder.backbone.register_forward_hook(poison)
    with pytest.raises(training.TrainingDivergedError, match="step 4.*step-000002"):
        training.train(with_train(cfg, checkpoint_every=2), encoder, triplets, out_dir=tmp_path,
                       show_progress=False, callbacks=[poison_after_step_3])
    assert training.latest_checkpoint(tmp_path).name == "step-000002"
    state = torch.load(training.latest_checkpoint(tmp_path) / "trainer_state.pt",
                       weights_only=False)
    assert state["step"] == 2 and all(torch.isfinite(torch.tensor(
        [r["loss"] for r in state["history"]])))


def test_resume_refuses_different_settings(cfg, base, triplets, tmp_path):
    short = with_train(cfg, steps=2)
    encoder = fresh_encoder(cfg, base)
    training.train(short, encoder, triplets, out_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="different settings.*batch_size"):
        training.train(with_train(short, batch_size=4), fresh_encoder(cfg, base), triplets,
                       out_dir=tmp_path, show_progress=False)


@pytest.mark.parametrize("override, path", [
    ({"encoder": {"pooling": "lasttoken"}}, "encoder.pooling"),
    ({"encoder": {"max_length": 16}}, "encoder.max_length"),
    ({"quant": {"compute": "dequantize"}}, "quant.compute"),
    ({"data": {"train_langs": ("en", "de")}}, "data.train_langs"),
    ({"data": {"nli_limit": 300}}, "data.nli_limit"),
])
def test_resume_names_every_recipe_difference(cfg, base, triplets, tmp_path, override, path):
    """The 0.1 resume check compared 11 training settings and 6 profile fields only: these
    five changes resumed silently and overwrote run.json."""
    short = with_train(cfg, steps=3, checkpoint_every=1)

    def kill_in_step_2(record):
        if record["step"] == 2:
            raise SimulatedKill

    with pytest.raises(SimulatedKill):  # step 1 is checkpointed: this run can be resumed
        training.train(short, fresh_encoder(cfg, base), triplets, out_dir=tmp_path,
                       show_progress=False, callbacks=[kill_in_step_2])
    before = (tmp_path / "run.json").read_text()
    changed = short.replace(**override)
    with pytest.raises(training.RunMismatchError, match=f"different settings.*{path}"):
        training.train(changed, fresh_encoder(changed, base), triplets, out_dir=tmp_path,
                       show_progress=False)
    assert (tmp_path / "run.json").read_text() == before  # the run's record is untouched
    training.train(changed, fresh_encoder(changed, base), triplets, out_dir=tmp_path,
                   resume=False, show_progress=False)  # starting over is allowed


def test_resume_refuses_another_tokenizer(cfg, base, triplets, tmp_path):
    """Same configuration, but a tiny BLOOM whose tokenizer was trained on other texts: the
    adapter would not fit that vocabulary."""
    from lacos_helpers import backbones

    short = with_train(cfg, steps=2, checkpoint_every=1)
    training.train(short, fresh_encoder(cfg, base), triplets, out_dir=tmp_path,
                   show_progress=False, callbacks=[lambda r: r["step"] >= 1])
    other_texts = data.training_texts(triplets[: len(triplets) // 2])
    other = backbones.load_backbone(cfg, texts=other_texts)
    with pytest.raises(training.RunMismatchError, match="backbone.vocab"):
        training.train(short, fresh_encoder(cfg, other), triplets, out_dir=tmp_path,
                       show_progress=False)


def test_a_callback_can_stop_the_run_gracefully(cfg, base, triplets, tmp_path):
    result = training.train(cfg, fresh_encoder(cfg, base), triplets, out_dir=tmp_path,
                            show_progress=False, callbacks=[lambda r: r["step"] >= 3])
    assert result.interrupted and result.step == 3
    assert training.latest_checkpoint(tmp_path).name == "step-000003"
    assert not (tmp_path / "adapter").exists()  # unfinished: no final adapter
    resumed = training.train(cfg, fresh_encoder(cfg, base), triplets, out_dir=tmp_path,
                             show_progress=False)
    assert resumed.resumed_from == 3 and resumed.step == STEPS and not resumed.interrupted


def test_eval_every_records_dev_spearman(cfg, base, triplets, tmp_path):
    dev = data.load_sts("en", "dev", limit=64)
    encoder = fresh_encoder(cfg, base)
    run_cfg = with_train(cfg, steps=4, eval_every=2, hard_negatives=False)
    result = training.train(run_cfg, encoder, triplets, out_dir=tmp_path, dev_pairs=dev,
                            show_progress=False)
    assert [e["step"] for e in result.evals] == [2, 4]
    assert all(-1 <= e["spearman"] <= 1 for e in result.evals)
    with pytest.raises(ValueError, match="dev_pairs"):
        training.train(with_train(cfg, eval_every=2), encoder, triplets, out_dir=tmp_path / "x",
                       show_progress=False)


def test_load_encoder_restores_the_trained_encoder(cfg, base, triplets, tmp_path):
    encoder = fresh_encoder(cfg, base)
    training.train(with_train(cfg, steps=4, learning_rate=1e-2), encoder, triplets,
                   out_dir=tmp_path, show_progress=False)
    sentences = ["A man plays a guitar.", "Zwei Hunde rennen.", "A child is reading."]
    want = encoder.encode(sentences, show_progress=False)
    loaded = training.load_encoder(tmp_path, backbone=copy.deepcopy(base[0]),
                                   tokenizer=base[1])
    got = loaded.encode(sentences, show_progress=False)
    assert (got - want).abs().max().item() < 1e-5
    # the run keeps the tiny BLOOM's tokenizer: a new process rebuilds the same encoder
    rebuilt = training.load_encoder(tmp_path).encode(sentences, show_progress=False)
    assert (rebuilt - want).abs().max().item() < 1e-5
    untrained = fresh_encoder(cfg, base).encode(sentences, show_progress=False)
    assert (untrained - want).abs().max().item() > 1e-4  # training changed the embeddings


def test_cli_train_adds_crosslingual_triplets(tmp_path, monkeypatch):
    monkeypatch.setenv("LACOS_PROFILE", "ci")
    run = tmp_path / "run"
    assert cli_main(["train", "--out", str(run), "--steps", "1", "--batch-size", "4",
                     "--limit", "40", "--crosslingual", "1", "--langs", "en,de"]) == 0
    cfg = training.load_run_config(run)
    assert (cfg.data.crosslingual, cfg.data.train_langs) == (1, ("en", "de"))
    cross = data.nli.crosslingual_triplets(("en", "de"), 1, seed=cfg.seed)
    within = data.load_nli_triplets(("en", "de"), limit=40, seed=cfg.seed)
    want = len(training.usable_triplets(within, True)) + len(training.usable_triplets(cross, True))
    assert json.loads((run / "train_summary.json").read_text())["triplets"] == want


def test_run_of_the_01_format_is_refused_by_name(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"profile": {"name": "ci"}, "settings": {}}))
    with pytest.raises(ValueError, match="lacos_helpers 0.1.*train the run again"):
        training.load_run_config(tmp_path)


def test_load_encoder_names_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run"):
        training.load_encoder(tmp_path / "nothing")


def test_cli_train_then_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LACOS_PROFILE", "ci")
    run = tmp_path / "run"
    assert cli_main(["train", "--out", str(run), "--steps", "3", "--batch-size", "8",
                     "--limit", "200"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 3 and -1 <= summary["dev_spearman_after"] <= 1
    assert cli_main(["evaluate", "--run", str(run), "--limit", "50"]) == 0
    assert (run / "eval" / "trained_sts_test_limit50.csv").is_file()
    assert (run / "eval" / "trained_crosslingual_test_limit50.md").is_file()
    assert cli_main(["evaluate", "--run", str(run), "--limit", "50", "--langs", "en"]) == 0
    assert (run / "eval" / "trained_sts_test_en_limit50.csv").is_file()
    out = capsys.readouterr().out
    assert "Cross-lingual" in out
