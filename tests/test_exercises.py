import pytest
import torch

from lacos_helpers import exercises, quantization


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
