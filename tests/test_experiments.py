"""Chapter-5 experiments: one variant per call, cached results, result tables with intervals,
claims decided by paired bootstrap with a second seed when one does not decide."""
import copy
import csv
import json

import pytest
import torch

from lacos_helpers import config, data, experiments, quantization
from lacos_helpers.course import schedule


@pytest.fixture(scope="module")
def setup(ci_cfg, ci_backbone):
    cfg = ci_cfg.replace(train={"batch_size": 8})
    backbone, tokenizer = ci_backbone
    triplets = data.load_nli_triplets("en", limit=200, seed=cfg.seed)
    dev = {"en dev": data.load_sts("en", "dev", limit=40)}
    return cfg, backbone, tokenizer, triplets, dev


def runs(cfg, triplets, eval_sets, **shared):
    """The experiments of one :class:`ExperimentSetup`: ``run(label, seed=None, **overrides)``."""
    setup = experiments.ExperimentSetup(cfg, triplets, eval_sets, **shared)
    return lambda label, **kw: experiments.run_experiment(setup, label, **kw)


def test_experiment_steps_follow_the_profile(monkeypatch):
    assert schedule.experiment_steps(config.load_profile("ci")) == 10
    monkeypatch.setitem(schedule.SCHEDULES, "ci", schedule.CourseSchedule())
    assert schedule.experiment_steps(config.load_profile("ci")) == 20
    # a profile made smaller (LACOS_OVERRIDES) runs shorter experiments, as in the cpu smoke run
    assert schedule.experiment_steps(config.load_profile("cpu", train={"steps": 2})) == 2
    assert schedule.experiment_steps(config.load_profile("cpu")) == 10


def test_experiment_batch_size_follows_the_schedule():
    cpu, ci = config.load_profile("cpu"), config.load_profile("ci")
    assert schedule.experiment_config(cpu).train.batch_size == 16 != cpu.train.batch_size
    # only the batch changes; a profile without an experiment batch is unchanged
    assert schedule.experiment_config(cpu).replace(train={"batch_size": 32}) == cpu
    assert schedule.experiment_config(ci) == ci


def test_course_overrides_change_the_schedule_not_the_run(monkeypatch):
    """``course.<field>`` paths of LACOS_OVERRIDES shrink chapters 6 and 7 (the cpu-profile
    test); the run's configuration ignores them and takes its own paths."""
    monkeypatch.setenv(config.OVERRIDES_VAR, json.dumps(
        {"train.steps": 3, "course.search_docs": 300, "course.negative_batches": [4, 8],
         "course.negative_pairs": 16, "course.negative_lr": 1e-3, "course.bitext_rows": None}))
    cpu = config.load_profile("cpu")
    sizes = schedule.course_schedule(cpu)
    assert cpu.train.steps == 3 and schedule.course_steps(cpu) == 3
    assert (sizes.search_docs, sizes.search_queries, sizes.bitext_rows) == (300, 150, None)
    assert sizes.negative_batches == (4, 8) and sizes.negative_pairs == 16
    assert sizes.negative_lr == 1e-3 and sizes.negative_updates == 3  # the cpu schedule's
    monkeypatch.delenv(config.OVERRIDES_VAR)
    assert schedule.course_schedule(cpu) == schedule.SCHEDULES["cpu"]
    assert schedule.course_schedule(cpu.replace(name="mine")) == schedule.CourseSchedule()


@pytest.mark.parametrize("overrides, message", [
    ({"course.search_doc": 3}, "unknown course schedule field.*course.search_doc"),
    ({"course.search_docs": 0}, "course.search_docs must be a positive int"),
    ({"course.search_docs": "300"}, "course.search_docs must be a positive int"),
    ({"course.negative_pairs": None}, "course.negative_pairs must be a positive int"),
    ({"course.negative_batches": []}, "course.negative_batches must be a non-empty list"),
    ({"course.negative_lr": True}, "course.negative_lr must be a positive number"),
    ({"course.negative_pairs": 100}, r"course.negative_pairs \(100\) is not a multiple of "
                                     r"the batch size\(s\) \[8, 32, 128\]"),
])
def test_bad_course_overrides_are_errors_naming_the_field(monkeypatch, overrides, message):
    monkeypatch.setenv(config.OVERRIDES_VAR, json.dumps(overrides))
    with pytest.raises(ValueError, match=message):
        schedule.course_schedule(config.load_profile("cpu"))


def test_run_experiment_leaves_the_shared_backbone_untouched(setup):
    cfg, backbone, tokenizer, triplets, dev = setup
    before = copy.deepcopy(backbone.state_dict())
    row = runs(cfg, triplets, dev, backbone=backbone, tokenizer=tokenizer, steps=2)("recipe")
    assert row["experiment"] == "recipe" and row["steps"] == 2 and -1 <= row["en dev"] <= 1
    after = backbone.state_dict()
    assert before.keys() == after.keys()
    assert all((before[k] == after[k]).all() for k in before)
    assert not any(isinstance(m, quantization.Int8Linear) for m in backbone.modules())


def test_run_experiment_applies_one_change(setup):
    cfg, backbone, tokenizer, triplets, dev = setup
    run = runs(cfg, triplets, dev, backbone=backbone, tokenizer=tokenizer, steps=2)
    fp32 = run("fp32", quant={"backend": "none"}, train={"hard_negatives": False})
    assert fp32["triplets"] == len(triplets)  # no hard-negative filter
    with pytest.raises(TypeError, match="unknown train field"):
        run("bad", train={"hard_negative": False})


def test_result_table_writes_csv_and_markdown(tmp_path):
    rows = [{"experiment": "a", "en dev": 0.5, "steps": 3},
            {"experiment": "b", "en dev": 0.61234, "steps": 3}]
    table = experiments.ResultTable("demo", rows, note="note")
    csv_path, md_path = table.save(tmp_path, score_columns=["en dev"])
    with open(csv_path, newline="") as f:
        back = list(csv.DictReader(f))
    assert [float(r["en dev"]) for r in back] == [0.5, 0.61234]
    md = md_path.read_text()
    assert "| b | 61.2 | 3 |" in md and md.rstrip().endswith("note")
    assert table.column("en dev") == [0.5, 0.61234]
    seeds = experiments.ResultTable("seeds", [{"experiment": "a", "triplets": 25338, "seed": s}
                                              for s in (0, 1)])
    assert "| a | 25338 | 0,1 |" in seeds.to_markdown()   # a mean of seeds' counts, not 2.534e+04
    with pytest.raises(ValueError, match="no rows"):
        experiments.ResultTable("empty", [])


def test_fp32_ablation_of_an_8bit_loaded_profile_loads_a_float_backbone(setup, monkeypatch):
    """colab/paper load BLOOM in 8 bits: "fp32 base" must not compare 8-bit with 8-bit."""
    cfg, backbone, tokenizer, triplets, dev = setup
    loads = []
    real_build = experiments.training.build_encoder

    def build(run_cfg, backbone=None, tokenizer=None, texts=None):
        loads.append((run_cfg.quant, backbone is None))
        if backbone is None:  # stands in for the Hub load of a float BLOOM
            backbone, tokenizer = copy.deepcopy(setup[1]), setup[2]
        return real_build(run_cfg, backbone, tokenizer, texts=texts)

    monkeypatch.setattr(experiments.training, "build_encoder", build)
    eight_bit = cfg.replace(model={"kind": "hub", "model_id": "bigscience/bloom-560m",
                                   "tiny": None},
                            quant={"backend": "bitsandbytes", "load_in_8bit": True})
    runs(eight_bit, triplets, dev, backbone=backbone, tokenizer=tokenizer, steps=1)(
        "fp32", quant={"backend": "none", "load_in_8bit": False})
    (quant, reloaded), = loads
    assert reloaded and quant.backend == "none" and not quant.load_in_8bit


def test_an_identical_experiment_is_read_from_the_cache(setup, tmp_path):
    cfg, backbone, tokenizer, triplets, dev = setup
    run = runs(cfg, triplets, dev, backbone=backbone, tokenizer=tokenizer, cache_dir=tmp_path,
               steps=2)
    first, again = run("recipe"), run("same recipe")
    assert not first["cached"] and again["cached"] and again["experiment"] == "same recipe"
    assert again["predictions"] == first["predictions"] and again["en dev"] == first["en dev"]
    assert len(first["predictions"]["en dev"]) == len(dev["en dev"])
    # anything that decides the result is in the key: steps, seed, data, evaluation pairs
    base = cfg.replace(train={"steps": 2, "warmup_steps": 1})
    assert len(list(tmp_path.glob("*.json"))) == 1
    train_key = experiments.training_key
    assert train_key(base, triplets) == train_key(base, list(triplets))
    assert train_key(base, triplets) != train_key(base.replace(seed=1), triplets)
    assert train_key(base, triplets) != train_key(base, triplets[1:])


def test_a_training_scored_on_more_sets_is_reused_for_a_subset(setup, tmp_path):
    cfg, backbone, tokenizer, triplets, dev = setup
    both = {**dev, "de dev": data.load_sts("de", "dev", limit=30)}
    kwargs = dict(backbone=backbone, tokenizer=tokenizer, cache_dir=tmp_path, steps=2)
    wide = runs(cfg, triplets, both, **kwargs)("multilingual study")
    narrow = runs(cfg, triplets, dev, **kwargs)("ablation study")
    assert not wide["cached"] and narrow["cached"]
    assert set(narrow[experiments.PREDICTIONS]) == {"en dev"} and "de dev" not in narrow
    assert narrow["en dev"] == wide["en dev"]
    assert narrow[experiments.PREDICTIONS]["en dev"] == wide[experiments.PREDICTIONS]["en dev"]
    # a set the cached training was not scored on (other pairs) trains again
    other = {"en dev": dev["en dev"][:-1]}
    again = runs(cfg, triplets, other, **kwargs)("other pairs")
    assert not again["cached"]
    assert len(again[experiments.PREDICTIONS]["en dev"]) == len(other["en dev"])


def _fake_rows(monkeypatch, quality):
    """run_experiment stand-in: predictions = gold + noise of size ``quality[label]``, one
    noise draw per seed (variants of the same quality predict the same)."""
    calls = []

    def fake(setup, label, *, seed=None, **overrides):
        calls.append((label, seed))
        eval_sets, steps = setup.eval_sets, setup.steps
        gold = torch.tensor([p.score for p in eval_sets["en dev"]], dtype=torch.float64)
        gen = torch.Generator().manual_seed(1000 + seed)
        pred = gold + quality[label] * torch.randn(len(gold), generator=gen, dtype=torch.float64)
        from lacos_helpers.evaluation.metrics import spearman

        return {"experiment": label, "en dev": spearman(pred, gold), "final_loss": 1.0,
                "steps": steps, "seed": seed, "predictions": {"en dev": pred.tolist()}}

    monkeypatch.setattr(experiments, "run_experiment", fake)
    return calls


def test_study_decides_clear_claims_with_one_seed_and_adds_a_seed_otherwise(setup, monkeypatch):
    cfg, _, _, triplets, _ = setup
    dev = {"en dev": data.load_sts("en", "dev", limit=300)}
    calls = _fake_rows(monkeypatch, {"good": 0.3, "bad": 3.0, "twin": 0.3})
    setup = experiments.ExperimentSetup(cfg, triplets, dev, steps=2)
    study = experiments.Study("demo", setup, extra_seeds=(1,))
    table = study.run([experiments.Variant("good"), experiments.Variant("bad"),
                       experiments.Variant("twin")], progress=False)
    assert table.labels == ["good", "bad", "twin"] and len(calls) == 3
    clear = study.decide("good", "bad", "en dev", "less noise is better")
    assert clear["decided"] and clear["seeds"] == 1 and len(calls) == 3
    assert "holds" in clear["text"] and clear["text"].startswith("less noise is better: +")
    close = study.decide("twin", "good", "en dev", "same noise")
    assert close["seeds"] == 2 and ("twin", 1) in calls and ("good", 1) in calls
    assert close["delta"] == 0 and not close["decided"] and "not shown" in close["text"]
    low, high = study.table.interval("good", "en dev")
    assert low < study.table.score("good", "en dev") < high
    md = study.table.to_markdown(["en dev"])
    assert "| good |" in md and "[" in md and "0,1" in md  # interval and both seeds shown
    with pytest.raises(KeyError, match="no variant"):
        study.decide("missing", "good", "en dev", "x")
