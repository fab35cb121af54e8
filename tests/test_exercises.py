import pytest
import torch

from lacos_helpers import quantization
from lacos_helpers.course import exercises


def good_absmax(x):
    absmax = x.abs().max()
    scale = 127.0 / absmax if absmax > 0 else torch.tensor(1.0)
    return torch.round(x * scale).clamp(-127, 127).to(torch.int8), scale


def truncating_absmax(x):
    q, scale = good_absmax(x)
    return (x * scale).trunc().to(torch.int8), scale


def good_dequantize(codes, absmax, code, block_size, shape):
    state = quantization.BlockwiseQuantState(codes, absmax, shape, torch.float32, block_size, code)
    return quantization.dequantize_blockwise(state)


def one_scale_dequantize(codes, absmax, code, block_size, shape):
    return (code[codes.long()] * absmax.max()).reshape(shape)


def test_checkers_accept_right_answers(capsys):
    assert exercises.check_absmax_quantize(good_absmax)
    assert exercises.check_dequantize_blockwise(good_dequantize)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize("check, wrong", [
    (exercises.check_absmax_quantize, truncating_absmax),
    (exercises.check_dequantize_blockwise, one_scale_dequantize),
])
def test_checkers_reject_wrong_answers(check, wrong):
    with pytest.raises(AssertionError):
        check(wrong)


def good_lora_forward(x, weight, bias, A, B, alpha, r):
    return x @ weight.T + bias + (alpha / r) * (x @ A.T) @ B.T


def unscaled_lora_forward(x, weight, bias, A, B, alpha, r):
    return x @ weight.T + bias + (x @ A.T) @ B.T


def inverted_scaling_lora_forward(x, weight, bias, A, B, alpha, r):
    return x @ weight.T + bias + (r / alpha) * (x @ A.T) @ B.T


def good_lora_merge(weight, A, B, alpha, r):
    return weight + (alpha / r) * B @ A


def inverted_scaling_lora_merge(weight, A, B, alpha, r):
    return weight + (r / alpha) * B @ A


def test_lora_checkers_accept_right_answers(capsys):
    assert exercises.check_lora_forward(good_lora_forward)
    assert exercises.check_lora_merge(good_lora_merge)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize("check, wrong, hint", [
    (exercises.check_lora_forward, unscaled_lora_forward, "alpha / r"),
    (exercises.check_lora_forward, inverted_scaling_lora_forward, "x W"),
    (exercises.check_lora_merge, inverted_scaling_lora_merge, "B @ A"),
    (exercises.check_lora_merge, lambda weight, A, B, alpha, r: weight + B @ A, "alpha / r"),
])
def test_lora_checkers_reject_wrong_answers(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def good_mnr(anchor, positive, hard_negative=None, scale=20.0):
    import torch.nn.functional as F

    cand = positive if hard_negative is None else torch.cat([positive, hard_negative])
    scores = scale * F.normalize(anchor, dim=-1) @ F.normalize(cand, dim=-1).T
    return F.cross_entropy(scores, torch.arange(len(anchor)))


def dot_product_mnr(anchor, positive, hard_negative=None, scale=20.0):
    import torch.nn.functional as F

    cand = positive if hard_negative is None else torch.cat([positive, hard_negative])
    return F.cross_entropy(scale * anchor @ cand.T, torch.arange(len(anchor)))


def good_last_token(hidden, mask):
    last = (torch.arange(mask.shape[1]).expand_as(mask) * mask).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0]), last]


def right_padding_only_last_token(hidden, mask):
    return hidden[torch.arange(hidden.shape[0]), mask.sum(dim=1) - 1]


def test_chapter3_checkers(capsys):
    assert exercises.check_mnr_loss(good_mnr)
    assert exercises.check_last_token_pool(good_last_token)
    assert capsys.readouterr().out.count("[OK]") == 2
    with pytest.raises(AssertionError, match="normalize"):
        exercises.check_mnr_loss(dot_product_mnr)
    with pytest.raises(AssertionError, match="left padding"):
        exercises.check_last_token_pool(right_padding_only_last_token)


def good_spearman(predicted, gold):
    from lacos_helpers.evaluation.metrics import average_ranks, pearson

    return pearson(average_ranks(predicted), average_ranks(gold))


def ordinal_rank_spearman(predicted, gold):
    from lacos_helpers.evaluation.metrics import pearson

    def rank(v):
        return v.argsort(stable=True).argsort().double() + 1

    return pearson(rank(predicted), rank(gold))


def good_crosslingual(first, second, gold):
    from lacos_helpers.evaluation.metrics import spearman

    return {(x, y): spearman(torch.nn.functional.cosine_similarity(first[x], second[y], dim=1),
                             gold) for x in first for y in second}


def dot_crosslingual(first, second, gold):
    from lacos_helpers.evaluation.metrics import spearman

    return {(x, y): spearman((first[x] * second[y]).sum(1), gold) for x in first for y in second}


def off_diagonal_crosslingual(first, second, gold):
    return {k: v for k, v in good_crosslingual(first, second, gold).items() if k[0] != k[1]}


def good_verdict(c):
    agree = all(d * c["delta"] > 0 for d in c["per_seed"])
    if (c["low"] > 0 or c["high"] < 0) and agree:
        return "better" if c["delta"] > 0 else "worse"
    return "not decided"


def delta_verdict(c):
    return "better" if c["delta"] > 0 else "worse"


def interval_only_verdict(c):
    return "better" if c["low"] > 0 else "worse" if c["high"] < 0 else "not decided"


def test_evaluation_checkers_accept_right_answers(capsys):
    assert exercises.check_spearman(good_spearman)
    assert exercises.check_crosslingual_matrix(good_crosslingual)
    assert exercises.check_verdict(good_verdict)
    assert capsys.readouterr().out.count("[OK]") == 3


@pytest.mark.parametrize("check, wrong, hint", [
    (exercises.check_spearman, ordinal_rank_spearman, "mean of the ranks"),
    (exercises.check_crosslingual_matrix, dot_crosslingual, "cosine similarity, not the dot"),
    (exercises.check_crosslingual_matrix, off_diagonal_crosslingual, "diagonal too"),
    (exercises.check_verdict, delta_verdict, "from the interval"),
    (exercises.check_verdict, interval_only_verdict, "every seed"),
])
def test_evaluation_checkers_reject_wrong_answers(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_check_ablation():
    from lacos_helpers import config
    from lacos_helpers.experiments import Variant

    cfg = config.load_profile("ci")
    assert exercises.check_ablation(Variant("dropout 0.1", {"lora": {"dropout": 0.1}}), cfg)
    with pytest.raises(AssertionError, match="taken"):
        exercises.check_ablation(Variant("LACoS recipe", {"lora": {"dropout": 0.1}}), cfg,
                                 taken=["LACoS recipe"])
    with pytest.raises(AssertionError, match="change one thing"):
        exercises.check_ablation(Variant("same"), cfg)
    with pytest.raises(AssertionError, match="do not apply"):
        exercises.check_ablation(Variant("typo", {"lora": {"rank": 4}}), cfg)
    with pytest.raises(AssertionError, match="change nothing"):
        exercises.check_ablation(Variant("no-op", {"lora": {"r": cfg.lora.r}}), cfg)
    with pytest.raises(AssertionError, match="Variant"):
        exercises.check_ablation({"lora": {"r": 4}}, cfg)
