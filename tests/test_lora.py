"""LoRA from scratch: layer, injection, counts, merge, adapter I/O and training, checked
against peft on a tiny BLOOM with float, Int8Linear and bitsandbytes bases."""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
from torch import nn
from transformers import BloomConfig, BloomModel

from lacos_helpers import bloom, lora, quantization

peft = pytest.importorskip("peft")
bnb = pytest.importorskip("bitsandbytes")

HIDDEN, N_LAYER, VOCAB = 64, 2, 1000
TARGETS = ("query_key_value", "dense_4h_to_h")
R, ALPHA = 4, 8
LR = 1e-3
# Bounds measured on 2 CPU cores (see the tests that use them).
SAME_BASE_TOL = 1e-6  # ours vs peft on the same base layers: identical arithmetic
CROSS_BACKEND_REL_TOL = 5e-3  # ours on Int8Linear vs peft on Linear8bitLt, relative (norm)
# 8-bit merge: outputs also see the LoRA update through int8 activation quantization.
MERGE_8BIT_REL_TOL = 2e-2
BLOOM_560M = {"vocab_size": 250880, "hidden_size": 1024, "n_layer": 24, "n_head": 16}
BLOOM_7B1 = {"vocab_size": 250880, "hidden_size": 4096, "n_layer": 30, "n_head": 32}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's "unsupported layer" / 8-bit merge notes
        yield


@pytest.fixture(scope="module")
def base_model() -> BloomModel:
    torch.manual_seed(0)
    config = BloomConfig(vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=N_LAYER, n_head=4,
                         use_cache=False)
    return BloomModel(config).eval()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(1))


def _quantized(model: nn.Module, backend: str | None) -> nn.Module:
    model = copy.deepcopy(model)
    return quantization.quantize_model(model, backend=backend) if backend else model


def _randomize_b(model: nn.Module, seed: int = 2, std: float = 0.1) -> None:
    """B starts at zero; a random B makes every comparison mean something."""
    g = torch.Generator().manual_seed(seed)
    for layer in lora.lora_layers(model).values():
        layer.lora_B.weight.data = torch.randn(layer.lora_B.weight.shape, generator=g) * std


def _ours(base: nn.Module, backend: str | None, targets=TARGETS) -> nn.Module:
    model = lora.inject_lora(_quantized(base, backend), targets, r=R, alpha=ALPHA)
    _randomize_b(model)
    return model


def _peft(base: nn.Module, backend: str | None, state: dict, targets=TARGETS) -> nn.Module:
    model = _quantized(base, backend)
    config = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(targets),
                             lora_dropout=0.0)
    if backend == "bitsandbytes":
        model.is_loaded_in_8bit = True  # what from_pretrained(load_in_8bit) sets; peft checks it
    elif backend == "lacos":
        lora.register_int8linear(config)
    wrapped = peft.get_peft_model(model, config)
    result = peft.set_peft_model_state_dict(wrapped, state)
    assert not result.unexpected_keys
    return wrapped


def _hidden(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).last_hidden_state


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# --------------------------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------------------------
def _bnb_linear(linear: nn.Linear) -> nn.Module:
    return quantization.quantize_model(nn.Sequential(copy.deepcopy(linear)),
                                       backend="bitsandbytes")[0]


@pytest.mark.parametrize("kind", ["float", "int8", "bnb"])
def test_layer_starts_equal_to_base_and_adds_scaled_update(kind):
    torch.manual_seed(0)
    linear = nn.Linear(32, 48)
    base = {"float": linear, "int8": quantization.Int8Linear.from_linear(linear),
            "bnb": _bnb_linear(linear)}[kind]
    layer = lora.LoRALinear(base, r=4, alpha=12)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        reference = base(x)
        assert torch.equal(layer(x), reference)  # B = 0
        layer.lora_B.weight.normal_()
        expected = reference + 3.0 * (x @ layer.lora_A.weight.T) @ layer.lora_B.weight.T
        got = layer(x)
    assert got.shape == (2, 5, 48)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert layer.lora_A.weight.shape == (4, 32) and layer.lora_B.weight.shape == (48, 4)
    assert layer.lora_A.weight.dtype == torch.float32
    assert all(not p.requires_grad for p in layer.base_layer.parameters())
    assert layer.lora_A.weight.requires_grad and layer.lora_B.weight.requires_grad


def test_initialisation_matches_peft():
    torch.manual_seed(0)
    layer = lora.LoRALinear(nn.Linear(100, 30), r=8, alpha=16)
    bound = 1 / math.sqrt(100)  # kaiming_uniform(a=sqrt(5)): sqrt(6 / ((1 + 5) * fan_in))
    weight = layer.lora_A.weight
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert weight.std() > 0.4 * bound  # uniform on [-bound, bound]: std = bound / sqrt(3)
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert layer.scaling == 2.0
    base = nn.Sequential(nn.Linear(100, 30))
    torch.manual_seed(0)
    ours = lora.inject_lora(copy.deepcopy(base), ["0"], r=8, alpha=16)
    torch.manual_seed(0)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["0"]))
    # same random stream, same draws: A identical to peft's
    assert set(lora.lora_state_dict(ours)) == set(peft.get_peft_model_state_dict(theirs))
    for key, value in peft.get_peft_model_state_dict(theirs).items():
        assert torch.equal(lora.lora_state_dict(ours)[key], value)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = lora.LoRALinear(nn.Linear(16, 16), r=2, alpha=4, dropout=0.5)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(64, 16)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"r": 0}, ValueError, "positive"),
    ({"r": -2}, ValueError, "positive"),
    ({"r": 2.5}, TypeError, "int"),
    ({"r": True}, TypeError, "int"),
    ({"alpha": 0}, ValueError, "alpha"),
    ({"alpha": float("nan")}, ValueError, "alpha"),
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"dropout": -0.1}, ValueError, "dropout"),
])
def test_layer_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        lora.LoRALinear(nn.Linear(4, 4), **kwargs)


def test_layer_rejects_non_linear_and_double_wrapping():
    with pytest.raises(TypeError, match="wraps nn.Linear"):
        lora.LoRALinear(nn.Conv1d(4, 4, 1))
    with pytest.raises(TypeError, match="twice"):
        lora.LoRALinear(lora.LoRALinear(nn.Linear(4, 4)))


# --------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------
def test_inject_wraps_targets_freezes_rest_and_records_settings(base_model, ids):
    model = lora.inject_lora(copy.deepcopy(base_model))
    layers = lora.lora_layers(model)
    assert list(layers) == [f"h.{i}.self_attention.query_key_value" for i in range(N_LAYER)]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == [f"{name}.{part}.weight" for name in layers
                         for part in ("lora_A", "lora_B")]
    assert model.lacos_lora["r"] == 8 and model.lacos_lora["lora_alpha"] == 16
    assert model.lacos_lora["target_modules"] == ["query_key_value"]
    torch.testing.assert_close(_hidden(model, ids), _hidden(base_model, ids), rtol=0, atol=0)


def test_state_dict_names_map_to_peft(base_model):
    ours = lora.inject_lora(copy.deepcopy(base_model), TARGETS, r=R, alpha=ALPHA)
    theirs = peft.get_peft_model(copy.deepcopy(base_model), peft.LoraConfig(
        r=R, lora_alpha=ALPHA, target_modules=list(TARGETS)))
    mapped = {lora.PEFT_KEY_PREFIX + k for k in ours.state_dict()}
    peft_keys = {k.replace(".default.", ".") for k in theirs.state_dict()}
    assert mapped == peft_keys
    saved = peft.get_peft_model_state_dict(theirs)
    assert set(lora.lora_state_dict(ours)) == set(saved)
    assert all(ours.state_dict()[k[len(lora.PEFT_KEY_PREFIX):]].shape == v.shape
               for k, v in saved.items())


def test_inject_other_architecture_names():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj, self.o_proj = (nn.Linear(8, 8) for _ in range(3))
            self.norm = nn.LayerNorm(8)

    model = nn.Sequential(Attention(), Attention())
    lora.inject_lora(model, ["q_proj", "v_proj"], r=2, alpha=4)
    assert list(lora.lora_layers(model)) == ["0.q_proj", "0.v_proj", "1.q_proj", "1.v_proj"]
    assert not model[0].norm.weight.requires_grad and not model[0].o_proj.weight.requires_grad


def test_dotted_suffix_targets_like_peft(base_model):
    model = lora.inject_lora(copy.deepcopy(base_model),
                             ["self_attention.dense", "h.1.mlp.dense_4h_to_h"])
    assert list(lora.lora_layers(model)) == ["h.0.self_attention.dense", "h.1.self_attention.dense",
                                             "h.1.mlp.dense_4h_to_h"]


def test_unknown_target_lists_linear_layer_names(base_model):
    model = copy.deepcopy(base_model)
    with pytest.raises(ValueError, match="q_proj") as info:
        lora.inject_lora(model, ["q_proj"])
    for name in ("dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"):
        assert name in str(info.value)
    assert not lora.lora_layers(model)  # nothing half-injected


def test_non_linear_target_and_double_injection_are_errors(base_model):
    model = copy.deepcopy(base_model)
    with pytest.raises(TypeError, match="must be linear"):
        lora.inject_lora(model, ["self_attention"])
    with pytest.raises(ValueError, match="non-empty"):
        lora.inject_lora(model, [])
    lora.inject_lora(model)
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.inject_lora(model)
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.inject_lora(model, ["dense"])


def test_remove_lora_restores_the_base(base_model, ids):
    model = _ours(base_model, "lacos")
    reference = _hidden(_quantized(base_model, "lacos"), ids)
    assert _rel(_hidden(model, ids), reference) > 1e-3
    lora.remove_lora(model)
    assert not lora.lora_layers(model) and not hasattr(model, "lacos_lora")
    torch.testing.assert_close(_hidden(model, ids), reference, rtol=0, atol=0)
    lora.inject_lora(model)  # can start over


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", [None, "lacos", "bitsandbytes"])
def test_trainable_report_counts_real_parameters(base_model, backend):
    model = lora.inject_lora(_quantized(base_model, backend), TARGETS, r=R, alpha=ALPHA)
    report = lora.trainable_report(model)
    expected_lora = N_LAYER * R * ((HIDDEN + 3 * HIDDEN) + (4 * HIDDEN + HIDDEN))
    base_total = sum(p.numel() for p in base_model.parameters())
    assert report["trainable"] == expected_lora
    assert report["total"] == base_total + expected_lora
    assert report["frozen"] == base_total
    assert report["percent"] == pytest.approx(100 * expected_lora / (base_total + expected_lora))
    assert report["lora_layers"] == 2 * N_LAYER
    text = lora.format_trainable_report(report)
    assert f"{expected_lora:,}" in text and "%" in text


@pytest.mark.parametrize("config, max_percent", [(BLOOM_560M, 0.2), (BLOOM_7B1, 0.1)])
def test_bloom_sizes_on_meta_device(config, max_percent):
    with torch.device("meta"):
        model = BloomModel(BloomConfig(**config))
    h, n_layer = config["hidden_size"], config["n_layer"]
    base_total = sum(p.numel() for p in model.parameters())
    assert base_total == bloom.param_count(h, n_layer)["total"]
    lora.inject_lora(model, r=8, alpha=16)
    report = lora.trainable_report(model)
    assert report["trainable"] == lora.lora_param_count(h, n_layer, 8) == n_layer * 4 * h * 8
    assert report["percent"] < max_percent < 1.0


def test_lora_param_count_matches_injection_for_every_target(base_model):
    targets = tuple(bloom.LINEAR_SHAPES)
    for r in (1, 3, 16):
        model = lora.inject_lora(copy.deepcopy(base_model), targets, r=r, alpha=r)
        assert lora.trainable_report(model)["trainable"] == lora.lora_param_count(
            HIDDEN, N_LAYER, r, targets)


def test_lora_param_count_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown BLOOM layer"):
        lora.lora_param_count(64, 2, 8, ["q_proj"])
    with pytest.raises(ValueError, match="positive"):
        lora.lora_param_count(64, 2, 0)
    with pytest.raises(ValueError, match="positive"):
        lora.lora_param_count(0, 2, 8)


def test_bloom_lora_table_grows_linearly_with_rank():
    rows = lora.bloom_lora_table(["560m", "7b1"], ranks=(1, 8, 64))
    assert len(rows) == 6
    by_key = {(row["model"], row["r"]): row for row in rows}
    for model in ("bloom-560m", "bloom-7b1"):
        assert by_key[(model, 64)]["lora_params"] == 64 * by_key[(model, 1)]["lora_params"]
        assert by_key[(model, 8)]["percent"] < 1.0
    assert by_key[("bloom-7b1", 8)]["lora_params"] == 30 * 4 * 4096 * 8
    assert "| bloom-7b1 | 8 |" in lora.format_lora_table(rows)
    with pytest.raises(ValueError, match="unknown BLOOM size"):
        lora.bloom_lora_table(["13b"])


# --------------------------------------------------------------------------------------------
# Parity with peft: outputs and one AdamW step
# --------------------------------------------------------------------------------------------
def _adamw_step(model: nn.Module, ids: torch.Tensor, target: torch.Tensor) -> None:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    loss = (model(ids).last_hidden_state - target).pow(2).mean()
    loss.backward()
    optimizer.step()
    model.eval()


def _after_one_step(ours, theirs, ids):
    target = torch.randn(*ids.shape, HIDDEN, generator=torch.Generator().manual_seed(3))
    before = {k: v.clone() for k, v in lora.lora_state_dict(ours).items()}
    _adamw_step(ours, ids, target)
    _adamw_step(theirs, ids, target)
    mine, peft_state = lora.lora_state_dict(ours), peft.get_peft_model_state_dict(theirs)
    return before, mine, peft_state


@pytest.mark.parametrize("ours_backend, peft_backend", [
    (None, None), ("bitsandbytes", "bitsandbytes"), ("lacos", "lacos")])
def test_parity_with_peft_on_the_same_base(base_model, ids, ours_backend, peft_backend):
    ours = _ours(base_model, ours_backend)
    theirs = _peft(base_model, peft_backend, lora.lora_state_dict(ours))
    mine, reference = _hidden(ours, ids), _hidden(theirs, ids)
    assert (mine - reference).abs().max().item() <= SAME_BASE_TOL
    assert _rel(mine, _hidden(_quantized(base_model, ours_backend), ids)) > 1e-3  # LoRA counts
    before, after, peft_after = _after_one_step(ours, theirs, ids)
    for key, value in after.items():
        assert (value - before[key]).abs().max() > 0.5 * LR  # the step moved A and B
        assert (value - peft_after[key]).abs().max().item() <= SAME_BASE_TOL


def test_int8linear_base_close_to_peft_on_bitsandbytes(base_model, ids):
    """Ours on Int8Linear vs peft on Linear8bitLt: the bases round differently (bitsandbytes
    rounds to fp16 first), so outputs agree to ~4e-4 relative (bound 5e-3); Adam's first step
    is ~lr * sign(grad), so a few tiny gradients flip sign: the updates still agree in
    direction (cosine > 0.9) and no weight differs by more than 2 lr."""
    ours = _ours(base_model, "lacos")
    theirs = _peft(base_model, "bitsandbytes", lora.lora_state_dict(ours))
    assert _rel(_hidden(ours, ids), _hidden(theirs, ids)) <= CROSS_BACKEND_REL_TOL
    before, after, peft_after = _after_one_step(ours, theirs, ids)
    for key in after:
        mine, reference = after[key] - before[key], peft_after[key] - before[key]
        cosine = nn.functional.cosine_similarity(mine.flatten(), reference.flatten(), dim=0)
        assert cosine > 0.9
        assert (mine - reference).abs().max() <= 2 * LR * 1.001


# --------------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------------
def test_merge_and_unmerge_float_base(base_model, ids):
    model = _ours(base_model, None)
    unmerged = _hidden(model, ids)
    weights = {n: layer.base_layer.weight.clone()
               for n, layer in lora.lora_layers(model).items()}
    lora.merge_lora(model)
    assert all(layer.merged for layer in lora.lora_layers(model).values())
    assert (_hidden(model, ids) - unmerged).abs().max() <= 1e-5
    lora.unmerge_lora(model)
    assert (_hidden(model, ids) - unmerged).abs().max() <= 1e-5
    for name, layer in lora.lora_layers(model).items():
        assert (layer.base_layer.weight - weights[name]).abs().max() <= 1e-6


@pytest.mark.parametrize("backend", ["lacos", "bitsandbytes"])
def test_merge_8bit_base_rounds_onto_the_grid_within_half_a_step(base_model, ids, backend):
    model = _ours(base_model, backend)
    unmerged = _hidden(model, ids)
    layers = lora.lora_layers(model)
    wanted = {n: layer.base_weight() + layer.delta_weight() for n, layer in layers.items()}
    before = {n: layer.base_weight() for n, layer in layers.items()}
    lora.merge_lora(model)
    for name, layer in layers.items():
        step = torch.maximum(before[name].abs().amax(dim=1, keepdim=True),
                             wanted[name].abs().amax(dim=1, keepdim=True)) / 127
        error = (layer.base_weight() - wanted[name]).abs()
        assert bool((error <= step / 2 * (1 + 1e-5) + 1e-8).all())
        assert (layer.base_weight() - before[name]).abs().max() > 0  # the update arrived
    merged = _hidden(model, ids)
    assert _rel(merged, unmerged) <= MERGE_8BIT_REL_TOL
    lora.unmerge_lora(model)
    for name, layer in layers.items():
        assert torch.equal(layer.base_weight(), before[name])  # codes and scales restored
    torch.testing.assert_close(_hidden(model, ids), unmerged, rtol=0, atol=0)


def test_merge_8bit_keeps_the_grid_where_the_update_is_zero():
    torch.manual_seed(0)
    layer = lora.LoRALinear(quantization.Int8Linear.from_linear(nn.Linear(16, 8)), r=2)
    codes, scales = layer.base_layer.weight.clone(), layer.base_layer.weight_scale.clone()
    with torch.no_grad():
        layer.lora_B.weight.zero_()
        layer.lora_B.weight[3] = 1.0  # only row 3 changes
    layer.merge()
    changed = (layer.base_layer.weight != codes).any(dim=1)
    assert changed.tolist() == [i == 3 for i in range(8)]
    assert torch.equal(layer.base_layer.weight_scale[changed.logical_not()],
                       scales[changed.logical_not()])


def test_merge_errors(base_model):
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora.merge_lora(copy.deepcopy(base_model))
    model = lora.merge_lora(_ours(base_model, None))
    with pytest.raises(RuntimeError, match="already merged"):
        lora.merge_lora(model)
    lora.unmerge_lora(model)
    with pytest.raises(RuntimeError, match="not merged"):
        lora.unmerge_lora(model)


# --------------------------------------------------------------------------------------------
# Adapter I/O in peft's format
# --------------------------------------------------------------------------------------------
def test_saved_adapter_is_peft_format_and_loads_in_peft(base_model, ids, tmp_path):
    ours = _ours(base_model, None)
    folder = lora.save_adapter(ours, tmp_path / "adapter")
    assert sorted(p.name for p in folder.iterdir()) == [lora.ADAPTER_CONFIG_NAME,
                                                         lora.ADAPTER_WEIGHTS_NAME]
    config = json.loads((folder / lora.ADAPTER_CONFIG_NAME).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == R and config["lora_alpha"] == ALPHA
    assert config["target_modules"] == list(TARGETS) and config["bias"] == "none"
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base_model), folder)
    assert (_hidden(theirs, ids) - _hidden(ours, ids)).abs().max() <= SAME_BASE_TOL
    size = (folder / lora.ADAPTER_WEIGHTS_NAME).stat().st_size
    n_lora = lora.trainable_report(ours)["trainable"]
    assert 4 * n_lora < size < 4 * n_lora + 4096  # fp32 tensors + a small header


def test_peft_saved_adapter_loads_into_plain_model(base_model, ids, tmp_path):
    theirs = peft.get_peft_model(copy.deepcopy(base_model), peft.LoraConfig(
        r=R, lora_alpha=ALPHA, target_modules=list(TARGETS), lora_dropout=0.0,
        init_lora_weights=False))  # random A and B
    theirs.save_pretrained(tmp_path / "peft")
    ours = lora.load_adapter(copy.deepcopy(base_model), tmp_path / "peft")
    assert ours.lacos_lora["r"] == R and sorted(ours.lacos_lora["target_modules"]) == sorted(
        TARGETS)
    reference = _hidden(theirs, ids)
    assert _rel(reference, _hidden(base_model, ids)) > 1e-3
    assert (_hidden(ours, ids) - reference).abs().max() <= SAME_BASE_TOL


def test_round_trip_into_injected_8bit_model(base_model, ids, tmp_path):
    ours = _ours(base_model, "lacos")
    lora.save_adapter(ours, tmp_path / "a")
    other = lora.inject_lora(_quantized(base_model, "lacos"), TARGETS, r=R, alpha=ALPHA)
    lora.load_adapter(other, tmp_path / "a")
    torch.testing.assert_close(_hidden(other, ids), _hidden(ours, ids), rtol=0, atol=0)


def test_load_adapter_errors(base_model, tmp_path):
    ours = _ours(base_model, None)
    folder = lora.save_adapter(ours, tmp_path / "a")
    with pytest.raises(ValueError, match="differs"):
        lora.load_adapter(lora.inject_lora(copy.deepcopy(base_model), TARGETS, r=2), folder)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        lora.load_adapter(copy.deepcopy(base_model), tmp_path / "missing")
    hand_made = nn.Sequential(lora.LoRALinear(nn.Linear(4, 4)))  # LoRA layers, no settings
    with pytest.raises(ValueError, match="no lacos_lora settings"):
        lora.load_adapter(hand_made, folder)
    config = json.loads((folder / lora.ADAPTER_CONFIG_NAME).read_text())
    for change, match in (({"use_dora": True}, "use_dora"), ({"peft_type": "IA3"}, "LORA"),
                          ({"target_modules": ".*query.*"}, "regular expression")):
        bad = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        bad.mkdir()
        (bad / lora.ADAPTER_CONFIG_NAME).write_text(json.dumps({**config, **change}))
        (bad / lora.ADAPTER_WEIGHTS_NAME).write_bytes(
            (folder / lora.ADAPTER_WEIGHTS_NAME).read_bytes())
        with pytest.raises(ValueError, match=match):
            lora.load_adapter(copy.deepcopy(base_model), bad)
    state = lora.lora_state_dict(ours)
    key = next(iter(state))
    with pytest.raises(KeyError, match="missing"):
        lora.set_lora_state_dict(ours, {k: v for k, v in state.items() if k != key})
    with pytest.raises(ValueError, match="shape"):
        lora.set_lora_state_dict(ours, {**state, key: state[key][:1]})


# --------------------------------------------------------------------------------------------
# Training: gradients reach only the adapters
# --------------------------------------------------------------------------------------------
def _lora_grads(base_model, ids, backend, checkpointing):
    model = lora.inject_lora(_quantized(base_model, backend), TARGETS, r=R, alpha=ALPHA)
    with warnings.catch_warnings():  # no deprecated transformers entry point
        warnings.simplefilter("error", FutureWarning)
        lora.prepare_for_kbit_training(model, gradient_checkpointing=checkpointing)
    _randomize_b(model)  # with B = 0, A gets no gradient
    model.train()
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x name
    if flag is None:
        flag = model.is_gradient_checkpointing
    assert flag == checkpointing
    model(ids).last_hidden_state.pow(2).mean().backward()
    with_grad = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    int8_buffers = [b for b in model.buffers() if b.dtype == torch.int8]
    return model, with_grad, int8_buffers


@pytest.mark.parametrize("backend", [None, "lacos", "bitsandbytes"])
def test_gradients_reach_only_lora_with_and_without_checkpointing(base_model, ids, backend):
    grads = {}
    for checkpointing in (False, True):
        model, with_grad, int8_buffers = _lora_grads(base_model, ids, backend, checkpointing)
        expected = {n for n, p in model.named_parameters() if "lora_" in n}
        assert set(with_grad) == expected and len(expected) == 2 * len(TARGETS) * N_LAYER
        assert all(g.abs().sum() > 0 for g in with_grad.values())
        assert all(b.grad is None for b in int8_buffers)
        grads[checkpointing] = with_grad
    for name, grad in grads[False].items():  # recomputation gives the same gradients
        torch.testing.assert_close(grads[True][name], grad, rtol=1e-5, atol=1e-7)


def test_prepare_upcasts_half_parameters_and_freezes_base(base_model):
    model = copy.deepcopy(base_model).half()
    for p in model.parameters():
        p.requires_grad_(True)
    lora.inject_lora(model, r=2, alpha=4)
    lora.prepare_for_kbit_training(model)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n in dict(model.named_parameters()) if "lora_" in n}


def test_prepare_rejects_checkpointing_without_support():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4))
    model.get_input_embeddings = lambda: model[0]
    with pytest.raises(ValueError, match="gradient checkpointing"):
        lora.prepare_for_kbit_training(model, gradient_checkpointing=True)


@pytest.mark.parametrize("kind", ["float", "int8", "bnb"])
def test_dequantized_linear_is_an_independent_float_copy(kind):
    torch.manual_seed(0)
    linear = nn.Linear(32, 16)
    layer = {"float": linear, "int8": quantization.Int8Linear.from_linear(linear),
             "bnb": _bnb_linear(linear)}[kind]
    copy_ = lora.dequantized_linear(layer)
    assert type(copy_) is nn.Linear and copy_.weight.dtype == torch.float32
    step = 0 if kind == "float" else linear.weight.abs().amax(1, keepdim=True) / 254 * 1.01
    if kind == "bnb":  # rounded to float16 before quantizing
        step = step + linear.weight.abs() * 2**-11
    assert bool(((copy_.weight - linear.weight).abs() <= step + 1e-6).all())
    with torch.no_grad():
        copy_.weight.add_(1.0)
    assert not torch.allclose(lora.dequantized_linear(layer).weight, copy_.weight)
    with pytest.raises(TypeError, match="linear layer"):
        lora.dequantized_linear(nn.LayerNorm(4))
