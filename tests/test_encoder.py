"""Pooling and the Siamese encoder: hand-computed pooling, padding-side invariance on tiny BLOOM
(ALiBi from the mask), tiny Gemma 3 (rotary, position ids passed) and tiny GPT-2 (learned absolute
positions: the control that needs position ids), encode() like sentence-transformers, edge
cases."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy
import types

import pytest
import torch
from torch import nn

from lacos_helpers import backbones as models
from lacos_helpers.encoder import (
    POOLING_MODES,
    SiameseEncoder,
    last_token_pool,
    mean_pool,
    pad_token_ids,
    pool,
    position_weights,
    positions_from_mask,
    weighted_mean_pool,
)

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Dogs run.",
    "Two children are building a sandcastle on a sunny beach near the water.",
    "Ein Mann spielt Gitarre.",
    "一个男人在弹吉他。",
    "x",
]
TOL = 1e-5


# --------------------------------------------------------------------------------------------
# fixtures: tiny BLOOM (ALiBi from the mask) and tiny Gemma 3 (rotary positions)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bloom(ci_backbone):
    return ci_backbone


@pytest.fixture(scope="module")
def gemma(bloom):
    from transformers import Gemma3TextConfig, Gemma3TextModel

    _, tokenizer = bloom
    cfg = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=32, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, use_cache=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with models.quiet_transformers():
            model = Gemma3TextModel(cfg)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def gpt2(bloom):
    """Learned absolute position embeddings: the case that needs ``position_ids``."""
    from transformers import GPT2Config, GPT2Model

    _, tokenizer = bloom
    cfg = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, n_positions=64,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with models.quiet_transformers():
            model = GPT2Model(cfg)
    return model.eval(), tokenizer


def with_side(tokenizer, side: str):
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = side
    return tok


def encoders(backbone_and_tokenizer, pooling: str, max_length: int = 32):
    backbone, tokenizer = backbone_and_tokenizer
    return [SiameseEncoder(backbone, with_side(tokenizer, side), pooling, max_length)
            for side in ("left", "right")]


# --------------------------------------------------------------------------------------------
# pooling on hand-made tensors
# --------------------------------------------------------------------------------------------

def padded(tokens: torch.Tensor, width: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Place ``tokens`` [n, d] in a [width, d] row (NaN on the padding) and its mask."""
    n, d = tokens.shape
    row = torch.full((width, d), float("nan"))
    mask = torch.zeros(width, dtype=torch.long)
    span = slice(width - n, width) if side == "left" else slice(0, n)
    row[span], mask[span] = tokens, 1
    return row, mask


@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_matches_hand_computation(side):
    torch.manual_seed(0)
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    (ra, ma), (rb, mb) = padded(a, 6, side), padded(b, 6, side)
    hidden, mask = torch.stack([ra, rb]), torch.stack([ma, mb])

    assert torch.allclose(mean_pool(hidden, mask), torch.stack([a.mean(0), b.mean(0)]))
    assert torch.equal(last_token_pool(hidden, mask), torch.stack([a[-1], b[-1]]))
    expected = [sum((i + 1) * x[i] for i in range(len(x))) / sum(range(1, len(x) + 1))
                for x in (a, b)]
    assert torch.allclose(weighted_mean_pool(hidden, mask), torch.stack(expected), atol=1e-6)
    for mode, fn in [("mean", mean_pool), ("weightedmean", weighted_mean_pool),
                     ("lasttoken", last_token_pool)]:
        out = pool(hidden, mask, mode)
        assert out.shape == (2, 4) and torch.isfinite(out).all()
        assert torch.equal(out, fn(hidden, mask))


def test_pooling_is_padding_side_independent_and_weights_sum_to_one():
    torch.manual_seed(1)
    x = torch.randn(4, 8)
    left, mleft = padded(x, 7, "left")
    right, mright = padded(x, 7, "right")
    for mode in POOLING_MODES:
        assert torch.allclose(pool(left[None], mleft[None], mode),
                              pool(right[None], mright[None], mode), atol=1e-6), mode
    w = position_weights(torch.stack([mleft, mright]))
    assert torch.allclose(w.sum(1), torch.ones(2))
    assert w[0, 3:].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert torch.equal(w[0, 3:], w[1, :4]) and not w[0, :3].any()


def test_pooling_bad_input_is_a_clear_error():
    hidden = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"rows \[1\] have no real token"):
        pool(hidden, torch.tensor([[1, 1, 0], [0, 0, 0]]), "mean")
    with pytest.raises(ValueError, match="only 0"):
        pool(hidden, torch.tensor([[1, 2, 1], [1, 1, 1]]), "mean")
    with pytest.raises(ValueError, match="attention_mask must be"):
        pool(hidden, torch.ones(2, 4), "mean")
    with pytest.raises(ValueError, match="hidden must be"):
        pool(torch.randn(2, 3), torch.ones(2, 3), "mean")
    with pytest.raises(ValueError, match="mean, weightedmean, lasttoken"):
        pool(hidden, torch.ones(2, 3), "max")
    assert torch.equal(pool(hidden, torch.ones(2, 3), "Weighted_Mean"),
                       weighted_mean_pool(hidden, torch.ones(2, 3)))


def test_pad_token_ids_and_positions():
    ids, mask = pad_token_ids([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_token_ids([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert positions_from_mask(torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]])).tolist() == \
        [[0, 0, 0, 1], [0, 1, 1, 1]]


# --------------------------------------------------------------------------------------------
# the encoder: padding invariance
# --------------------------------------------------------------------------------------------

def padding_gap(backbone_and_tokenizer, pooling: str) -> float:
    left, right = encoders(backbone_and_tokenizer, pooling)
    batch_left, batch_right = left.tokenize(SENTENCES), right.tokenize(SENTENCES)
    assert batch_left["attention_mask"][:, 0].tolist() != [1] * len(SENTENCES)  # really padded
    assert not torch.equal(batch_left["input_ids"], batch_right["input_ids"])
    with torch.no_grad():
        return (left(**batch_left) - right(**batch_right)).abs().max().item()


@pytest.mark.parametrize("pooling", POOLING_MODES)
@pytest.mark.parametrize("model", ["bloom", "gemma", "gpt2"])
def test_left_and_right_padding_give_the_same_embedding(model, pooling, request):
    assert padding_gap(request.getfixturevalue(model), pooling) < TOL


def gap_without_position_ids(backbone_and_tokenizer) -> float:
    """Left vs right padding when the backbone is called with the mask only (no position ids)."""
    backbone, _ = backbone_and_tokenizer
    outs = []
    with torch.no_grad():
        for enc in encoders(backbone_and_tokenizer, "mean"):
            batch = enc.tokenize(SENTENCES)
            outs.append(pool(backbone(**batch).last_hidden_state, batch["attention_mask"]))
    return (outs[0] - outs[1]).abs().max().item()


def test_absolute_positions_need_position_ids_from_the_mask(gpt2):
    """The control: GPT-2's learned absolute positions shift under left padding unless the
    encoder passes positions counted from the first real token (so the test above can fail)."""
    assert SiameseEncoder(*gpt2)._pass_position_ids
    assert gap_without_position_ids(gpt2) > 1e-2
    assert padding_gap(gpt2, "mean") < TOL


def test_bloom_gets_no_position_ids_and_a_spy_gets_them_from_the_mask(bloom):
    assert not SiameseEncoder(*bloom)._pass_position_ids

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(10, 3)
            self.config = types.SimpleNamespace(hidden_size=3)
            self.seen = {}

        def get_input_embeddings(self):
            return self.embed_tokens

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
            self.seen = {"position_ids": position_ids, "use_cache": use_cache}
            return types.SimpleNamespace(last_hidden_state=self.embed_tokens(input_ids))

    spy = Spy()
    _, tokenizer = bloom
    enc = SiameseEncoder(spy, tokenizer)
    ids = torch.tensor([[3, 3, 5, 6], [7, 8, 9, 4]])
    enc(ids, torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]))
    assert spy.seen["position_ids"].tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    assert spy.seen["use_cache"] is False


def test_padding_invariance_through_a_peft_wrapper(gemma):
    from peft import LoraConfig, get_peft_model

    backbone, tokenizer = gemma
    wrapped = get_peft_model(copy.deepcopy(backbone), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    left = SiameseEncoder(wrapped, with_side(tokenizer, "left"), "lasttoken")
    right = SiameseEncoder(wrapped, with_side(tokenizer, "right"), "lasttoken")
    assert left._pass_position_ids
    a = left.encode(SENTENCES, show_progress=False)
    b = right.encode(SENTENCES, show_progress=False)
    assert (a - b).abs().max().item() < TOL
    base = SiameseEncoder(backbone, tokenizer, "lasttoken").encode(SENTENCES,
                                                                  show_progress=False)
    assert (a - base).abs().max().item() > 1e-3  # the random LoRA layers are really used


def test_8bit_backbone_still_encodes_the_same_either_side(bloom):
    from lacos_helpers import quantization

    backbone, tokenizer = bloom
    q = quantization.quantize_model(copy.deepcopy(backbone), backend="lacos")
    left, right = encoders((q, tokenizer), "mean")
    a = left.encode(SENTENCES, show_progress=False)
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    assert (a - right.encode(SENTENCES, show_progress=False)).abs().max().item() < TOL


# --------------------------------------------------------------------------------------------
# encode / embed
# --------------------------------------------------------------------------------------------

def test_encode_restores_order_and_matches_one_by_one(bloom):
    enc = SiameseEncoder(*bloom, pooling="weightedmean", max_length=32)
    out = enc.encode(SENTENCES, batch_size=4, show_progress=False)
    alone = torch.cat([enc.encode([s], show_progress=False) for s in SENTENCES])
    assert out.shape == (len(SENTENCES), enc.embedding_dim) == (len(SENTENCES), 128)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and not out.requires_grad
    assert (out - alone).abs().max().item() < TOL
    assert torch.allclose(out.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    raw = enc.encode(SENTENCES, normalize=False, show_progress=False, convert_to_tensor=False)
    assert raw.shape == (len(SENTENCES), 128) and not (abs(raw.sum(1)) < 1e-9).all()
    assert torch.allclose(torch.nn.functional.normalize(torch.from_numpy(raw)), out, atol=1e-6)
    with torch.no_grad():
        assert (enc.embed(SENTENCES) - torch.from_numpy(raw)).abs().max().item() < TOL


def test_encode_restores_each_module_training_flag(bloom):
    backbone, tokenizer = bloom
    enc = SiameseEncoder(copy.deepcopy(backbone), tokenizer)
    enc.train()
    enc.backbone.h[0].eval()  # a mixed state must come back as it was
    before = [m.training for m in enc.modules()]
    enc.encode(SENTENCES, show_progress=False)
    assert [m.training for m in enc.modules()] == before
    enc.eval()
    enc.encode(SENTENCES, show_progress=False)
    assert not any(m.training for m in enc.modules())


def test_embed_has_grad_for_training(bloom):
    backbone, tokenizer = bloom
    enc = SiameseEncoder(copy.deepcopy(backbone), tokenizer)
    emb = enc.embed(SENTENCES[:3])
    assert emb.shape == (3, 128) and emb.requires_grad and emb.dtype == torch.float32
    emb.pow(2).sum().backward()
    grad = enc.backbone.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_encode_shows_progress(bloom, capsys):
    SiameseEncoder(*bloom).encode(SENTENCES, batch_size=2, show_progress=True)
    assert "encode" in capsys.readouterr().err
    SiameseEncoder(*bloom).encode(SENTENCES, batch_size=2, show_progress=False)
    assert "encode" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# edge cases
# --------------------------------------------------------------------------------------------

def test_empty_list_single_string_and_empty_string(bloom):
    enc = SiameseEncoder(*bloom)
    assert enc.encode([], show_progress=False).shape == (0, 128)
    assert enc.embed([]).shape == (0, 128)
    one = enc.encode("Dogs run.", show_progress=False)
    assert one.shape == (1, 128)
    assert torch.allclose(one, enc.encode(["Dogs run."], show_progress=False))

    _, tokenizer = bloom
    assert tokenizer("")["input_ids"] == []  # the tiny BLOOM tokenizer gives no token for ""
    batch = enc.tokenize(["", "Dogs run."])
    assert batch["attention_mask"][0].sum() == 1
    assert batch["input_ids"][0, -1] == tokenizer.bos_token_id
    out = enc.encode(["", "Dogs run.", ""], show_progress=False)
    # Rows 0 and 2 are the same sentence in one batch: equal up to float rounding (rows of one
    # batched matmul are not bit-identical on every CPU kernel, so no torch.equal here).
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[2], rtol=0, atol=1e-6)
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_long_text_is_truncated_to_max_length(bloom):
    enc = SiameseEncoder(*bloom, max_length=16)
    long = " ".join(["the dog runs across the field"] * 50)
    batch = enc.tokenize([long, "x"])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].sum() == 16
    a, b = enc.encode([long, long + " and then something else entirely"], show_progress=False)
    assert torch.allclose(a, b, atol=1e-6)  # nothing after token 16 is seen
    assert (a - enc.encode(["the dog runs"], show_progress=False)[0]).abs().max() > 1e-3


def test_bad_sentences_are_type_errors_naming_the_index(bloom):
    enc = SiameseEncoder(*bloom)
    with pytest.raises(TypeError, match=r"sentences\[1\] is NoneType"):
        enc.encode(["ok", None], show_progress=False)
    with pytest.raises(TypeError, match=r"sentences\[2\] is int"):
        enc.embed(["ok", "fine", 3])
    with pytest.raises(TypeError, match="string or a list of strings"):
        enc.encode(None, show_progress=False)
    with pytest.raises(TypeError, match="string or a list of strings"):
        enc.tokenize(b"bytes")
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(["ok"], batch_size=0)


def test_constructor_checks_and_config_round_trip(bloom):
    backbone, tokenizer = bloom
    with pytest.raises(ValueError, match="valid modes: mean, weightedmean, lasttoken"):
        SiameseEncoder(backbone, tokenizer, pooling="cls")
    with pytest.raises(ValueError, match="max_length"):
        SiameseEncoder(backbone, tokenizer, max_length=0)
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="prepare_tokenizer"):
        SiameseEncoder(backbone, no_pad)

    enc = SiameseEncoder(backbone, tokenizer, pooling="last_token", max_length=20)
    assert enc.to_config() == {"pooling": "lasttoken", "max_length": 20, "cpu_bf16": False}
    again = SiameseEncoder(backbone, tokenizer, **enc.to_config())
    assert torch.equal(enc.encode(SENTENCES, show_progress=False),
                       again.encode(SENTENCES, show_progress=False))
    assert "pooling='lasttoken'" in repr(enc)


# --------------------------------------------------------------------------------------------
# length groups: one forward call per group of similar length
# --------------------------------------------------------------------------------------------

def _split_cost(lengths, groups, overhead):
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def _brute_force_best(lengths, overhead):
    """Cheapest split of the sorted lengths into contiguous runs, by trying every cut set."""
    import itertools

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = float("inf")
    for k in range(len(order)):
        for cuts in itertools.combinations(range(1, len(order)), k):
            bounds = (0, *cuts, len(order))
            groups = [order[a:b] for a, b in zip(bounds, bounds[1:])]
            best = min(best, _split_cost(lengths, groups, overhead))
    return best


@pytest.mark.parametrize("overhead", [0, 5, 20, 1000])
def test_length_groups_partition_and_are_optimal(overhead):
    from lacos_helpers.encoder.siamese import length_groups

    gen = torch.Generator().manual_seed(overhead)
    for _ in range(5):
        lengths = torch.randint(1, 40, (8,), generator=gen).tolist()
        groups = length_groups(lengths, overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert _split_cost(lengths, groups, overhead) == _brute_force_best(lengths, overhead)
    assert len(length_groups([3, 9, 3, 40], 10**6)) == 1
    assert len(length_groups([3, 9, 3, 40], 0)) == 3  # one group per distinct length
    assert length_groups([], 10) == []
    with pytest.raises(ValueError, match="overhead_tokens"):
        length_groups([1, 2], -1)


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_grouped_embed_matches_one_padded_batch(bloom, pooling):
    """Grouping by length changes only the padding: the same embeddings and gradients."""
    backbone, tokenizer = bloom
    sentences = SENTENCES * 3 + ["word " * n for n in (1, 5, 12, 25)]
    results = []
    for grouped in (False, True):
        enc = SiameseEncoder(copy.deepcopy(backbone), tokenizer, pooling, max_length=32)
        emb = enc.embed(sentences, group_by_length=grouped)
        (emb * torch.linspace(-1, 1, emb.shape[1])).sum().backward()
        results.append((emb.detach(), enc.backbone.word_embeddings.weight.grad))
    (flat, flat_grad), (grouped, grouped_grad) = results
    assert grouped.shape == flat.shape == (len(sentences), 128)
    torch.testing.assert_close(grouped, flat, atol=TOL, rtol=TOL)
    torch.testing.assert_close(grouped_grad, flat_grad, atol=1e-4, rtol=1e-4)


def test_grouped_embed_uses_several_calls_with_less_padding(bloom, monkeypatch):
    backbone, tokenizer = bloom
    enc = SiameseEncoder(copy.deepcopy(backbone), tokenizer, "mean", max_length=64)
    widths = []
    forward = SiameseEncoder.forward

    def spy(self, input_ids, attention_mask):
        widths.append(tuple(input_ids.shape))
        return forward(self, input_ids, attention_mask)

    monkeypatch.setattr(SiameseEncoder, "forward", spy)
    sentences = ["short"] * 16 + ["a much longer sentence " * 6] * 2
    enc.embed(sentences)
    assert len(widths) == 2 and sum(b * t for b, t in widths) < len(sentences) * max(
        t for _, t in widths) / 2


# --------------------------------------------------------------------------------------------
# padding to a multiple of N tokens: few distinct shapes, the same embeddings
# --------------------------------------------------------------------------------------------

def test_pad_token_ids_to_a_multiple():
    from lacos_helpers.encoder.siamese import padded_width

    ids, mask = pad_token_ids([[5, 6, 7], [8]], pad_id=0, side="left", multiple=4)
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]] and mask.sum().item() == 4
    ids, _ = pad_token_ids([[5, 6, 7, 9, 1]], pad_id=0, side="right", multiple=4)
    assert ids.tolist() == [[5, 6, 7, 9, 1, 0, 0, 0]]
    assert [padded_width(n, 16) for n in (1, 16, 17, 0)] == [16, 16, 32, 0]


@pytest.mark.parametrize("overhead", [0, 40])
def test_length_groups_with_a_multiple_are_optimal_for_the_padded_widths(overhead):
    from lacos_helpers.encoder.siamese import length_groups, padded_width

    gen = torch.Generator().manual_seed(7 + overhead)
    for _ in range(5):
        lengths = torch.randint(1, 40, (8,), generator=gen).tolist()
        groups = length_groups(lengths, overhead, multiple=8)
        padded = [padded_width(n, 8) for n in lengths]
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert _split_cost(padded, groups, overhead) == _brute_force_best(padded, overhead)
    # overhead 0: one group per padded width, not per length
    assert len(length_groups([3, 5, 9, 12, 17], 0, multiple=8)) == 3


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_padding_to_a_multiple_gives_the_same_embeddings(bloom, pooling, monkeypatch):
    backbone, tokenizer = bloom
    sentences = SENTENCES * 2 + ["word " * n for n in (1, 5, 12, 25)]
    plain = SiameseEncoder(backbone, tokenizer, pooling, max_length=32)
    bucketed = SiameseEncoder(backbone, tokenizer, pooling, max_length=32, pad_multiple=16)
    shapes = []
    forward = SiameseEncoder.forward

    def spy(self, input_ids, attention_mask):
        shapes.append(tuple(input_ids.shape))
        return forward(self, input_ids, attention_mask)

    expected = plain.embed(sentences).detach()
    monkeypatch.setattr(SiameseEncoder, "forward", spy)
    got = bucketed.embed(sentences).detach()
    assert shapes and all(t % 16 == 0 for _, t in shapes)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=TOL)
    with pytest.raises(ValueError, match="pad_multiple"):
        SiameseEncoder(backbone, tokenizer, pooling, pad_multiple=0)


# --------------------------------------------------------------------------------------------
# Gemma's RMSNorm with a lean backward
# --------------------------------------------------------------------------------------------

def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves while ``fn()`` runs."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_lean_gemma_norms_give_the_same_numbers_and_save_less(gemma):
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    from lacos_helpers.backbones.norms import LeanGemmaRMSNorm, use_lean_norms

    ref, _ = gemma
    ref = copy.deepcopy(ref)
    for p in ref.parameters():  # every norm weight random and trainable: its gradient checked
        p.data.normal_(0, 0.2) if p.dim() == 1 else None
    lean = copy.deepcopy(ref)
    norms = [m for m in ref.modules() if type(m) is Gemma3RMSNorm]
    assert use_lean_norms(lean) == len(norms) == 2 * 6 + 1  # 4 + q/k per layer, final
    assert not any(type(m) is Gemma3RMSNorm for m in lean.modules())
    assert isinstance(lean.norm, LeanGemmaRMSNorm)
    assert lean.state_dict().keys() == ref.state_dict().keys()
    assert use_lean_norms(nn.Sequential(nn.Linear(2, 2))) == 0
    ids = torch.randint(3, 50, (3, 7))
    mask = torch.ones_like(ids)
    inputs = {}
    def count(module, args, out):  # the normalized float32 output autograd no longer keeps
        inputs[id(module)] = out.numel()

    for m in norms:
        m.register_forward_hook(count)
    outs, saved = {}, {}
    for name, model in (("ref", ref), ("lean", lean)):
        embeds = model.embed_tokens(ids).detach().requires_grad_()
        out, saved[name] = _saved_bytes(
            lambda m=model, e=embeds: m(inputs_embeds=e, attention_mask=mask).last_hidden_state)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        outs[name] = out, embeds.grad, model.norm.weight.grad, model.layers[0].self_attn.q_norm
    assert torch.equal(outs["ref"][0], outs["lean"][0])  # bit-identical forward
    for r, q in zip(outs["ref"][1:3], outs["lean"][1:3]):
        torch.testing.assert_close(q, r, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs["lean"][3].weight.grad, outs["ref"][3].weight.grad,
                               rtol=1e-4, atol=1e-5)
    assert saved["ref"] - saved["lean"] >= 4 * sum(inputs.values())
