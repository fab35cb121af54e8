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
