"""Chapter-5 experiments: one variant per call, result tables on disk."""
import copy
import csv

import pytest

from lacos_helpers import config, data, experiments, quantization
from lacos_helpers.course import schedule


@pytest.fixture(scope="module")
def setup(ci_cfg, ci_backbone):
    cfg = ci_cfg.replace(train={"batch_size": 8})
    backbone, tokenizer = ci_backbone
    triplets = data.load_nli_triplets("en", limit=200, seed=cfg.seed)
    dev = {"en dev": data.load_sts("en", "dev", limit=40)}
    return cfg, backbone, tokenizer, triplets, dev


def test_experiment_steps_follow_the_profile(monkeypatch):
    assert schedule.experiment_steps(config.load_profile("ci")) == 10
    monkeypatch.setitem(schedule.SCHEDULES, "ci", schedule.CourseSchedule())
    assert schedule.experiment_steps(config.load_profile("ci")) == 20


def test_run_experiment_leaves_the_shared_backbone_untouched(setup):
    cfg, backbone, tokenizer, triplets, dev = setup
    before = copy.deepcopy(backbone.state_dict())
    row = experiments.run_experiment(cfg, "recipe", triplets, dev, backbone=backbone,
                                     tokenizer=tokenizer, steps=2)
    assert row["experiment"] == "recipe" and row["steps"] == 2 and -1 <= row["en dev"] <= 1
    after = backbone.state_dict()
    assert before.keys() == after.keys()
    assert all((before[k] == after[k]).all() for k in before)
    assert not any(isinstance(m, quantization.Int8Linear) for m in backbone.modules())


def test_run_experiment_applies_one_change(setup):
    cfg, backbone, tokenizer, triplets, dev = setup
    fp32 = experiments.run_experiment(cfg, "fp32", triplets, dev, backbone=backbone,
                                      tokenizer=tokenizer, steps=2, quant={"backend": "none"},
                                      train={"hard_negatives": False})
    assert fp32["triplets"] == len(triplets)  # no hard-negative filter
    with pytest.raises(TypeError, match="unknown train field"):
        experiments.run_experiment(cfg, "bad", triplets, dev, backbone=backbone,
                                   tokenizer=tokenizer, steps=2, train={"hard_negative": False})


def test_result_table_writes_csv_and_markdown(tmp_path):
    rows = [{"experiment": "a", "en dev": 0.5, "steps": 3},
            {"experiment": "b", "en dev": 0.61234, "steps": 3}]
    table = experiments.ResultTable("demo", rows, note="note")
    csv_path, md_path = table.save(tmp_path, score_columns=["en dev"])
    with open(csv_path, newline="") as f:
        back = list(csv.DictReader(f))
    assert [float(r["en dev"]) for r in back] == [0.5, 0.61234]
    md = md_path.read_text()
    assert "| b | 61.23 | 3 |" in md and md.rstrip().endswith("note")
    assert table.column("en dev") == [0.5, 0.61234]
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
    experiments.run_experiment(eight_bit, "fp32", triplets, dev, backbone=backbone,
                               tokenizer=tokenizer, steps=1,
                               quant={"backend": "none", "load_in_8bit": False})
    (quant, reloaded), = loads
    assert reloaded and quant.backend == "none" and not quant.load_in_8bit
