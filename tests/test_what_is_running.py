"""The "What is running" box printed under every notebook's header."""
import pytest

from lacos_helpers import config
from lacos_helpers.course import notebook


@pytest.mark.parametrize("name", list(config.PROFILES))
@pytest.mark.parametrize("source", ["local", "hub", "generated", None])
def test_box_for_every_profile(name, source):
    cfg = config.load_profile(name)
    box = notebook.what_is_running(cfg, source_kind=source)
    lines = box.splitlines()
    assert f"What is running ({name} profile)" in lines[0]
    assert len({len(line) for line in lines}) == 1, "a closed box: every line equally wide"
    for key in ("model", "positions", "LoRA", "frozen 8-bit", "licence", "train data",
                "eval data", "data licences"):
        assert f"{key}:" in box, key
    flat = " ".join(line.strip("| ") for line in lines)
    assert str(cfg.lora.r) in flat and "STS-B" in flat and "SNLI + MultiNLI" in flat


def _flat(name, source="local"):
    box = notebook.what_is_running(config.load_profile(name), source_kind=source)
    return " ".join(" ".join(line.strip("|").split()) for line in box.splitlines())


def test_cpu_box_names_gemma_its_licence_and_differences():
    text = _flat("cpu")
    assert "Gemma-3-270M" in text and "BLOOM in the paper" in text
    assert "Gemma Terms of Use" in text and "Prohibited Use Policy" in text
    assert "RoPE" in text and "ALiBi" in text
    assert "q_proj" in text and "query_key_value" in text
    assert "weight-only 8-bit" in text
    data_spec = config.load_profile("cpu").data
    held = notebook.offline_nli_triplets(data_spec.train_langs)
    assert held == 13_639 + 5 * 2_500 and f"~{held:,} triplets" in text
    assert f"and {data_spec.crosslingual} per XNLI row across two of the languages" in text
    assert notebook.offline_nli_triplets(data_spec.train_langs, 4) == held + 4 * 2_500
    assert notebook.offline_nli_triplets(("en",), 4) == 13_639  # one language: none across
    assert "XNLI CC BY-NC 4.0" in text


def test_ci_box_says_random_tiny_bloom_and_limit():
    text = _flat("ci")
    assert "random-init tiny BLOOM" in text and "not the paper" in text
    assert "no model licence" in text and "Gemma" not in text
    assert "2,000 of the ~13,639 triplets" in text
    assert "XNLI" not in text  # English only


@pytest.mark.parametrize("name", ["colab", "paper"])
def test_gpu_boxes_say_bloom_rail_and_llm_int8(name):
    text = _flat(name, "hub")
    assert "bigscience/bloom" in text and "BigScience RAIL License" in text
    assert "LLM.int8 by bitsandbytes" in text and "query_key_value" in text
    assert "NLI train splits" in text


def test_start_prints_the_box(capsys, monkeypatch):
    monkeypatch.setenv("LACOS_PROFILE", "ci")
    notebook.start("test chapter")
    out = capsys.readouterr().out
    assert "What is running (ci profile)" in out


@pytest.mark.parametrize("native", [True, False])
def test_cpu_box_says_what_precision_this_cpu_computes_in(monkeypatch, native):
    from lacos_helpers import runtime

    monkeypatch.setattr(runtime, "cpu_native_bf16", lambda: native)
    text = _flat("cpu")
    assert "matmuls:" in text
    assert ("bfloat16 (autocast) on this CPU" in text) is native
    assert ("float32: this CPU has no native bfloat16" in text) is not native
    assert "matmuls:" not in _flat("ci")
