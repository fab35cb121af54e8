import pytest
import torch
import torch.nn.functional as F

from lacos_helpers import bloom, quantization
from lacos_helpers.course import exercises


def good_dequantize(codes, absmax, code, block_size, shape):
    values = code[codes.long()]
    return (values * absmax.repeat_interleave(block_size)[: values.numel()]).reshape(shape)


def one_scale_dequantize(codes, absmax, code, block_size, shape):
    return (code[codes.long()] * absmax.max()).reshape(shape)


def test_checkers_accept_right_answers(capsys):
    assert exercises.check_dequantize_blockwise(good_dequantize)
    assert capsys.readouterr().out.count("[OK]") == 1


def test_checkers_reject_wrong_answers():
    with pytest.raises(AssertionError):
        exercises.check_dequantize_blockwise(one_scale_dequantize)


def good_lora_merge(weight, A, B, alpha, r):
    return weight + (alpha / r) * B @ A


def inverted_scaling_lora_merge(weight, A, B, alpha, r):
    return weight + (r / alpha) * B @ A


def test_lora_checkers_accept_right_answers(capsys):
    assert exercises.check_lora_merge(good_lora_merge)
    assert capsys.readouterr().out.count("[OK]") == 1


@pytest.mark.parametrize("check, wrong, hint", [
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


# ------------------------------------------------------------------------------------------
# New exercises; answers that delegate to the package; stubs that fall back
# ------------------------------------------------------------------------------------------
def good_quantize(x, code, block_size):
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % block_size
    blocks = torch.cat([flat, flat.new_zeros(pad)]).view(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    u = blocks / torch.where(absmax > 0, absmax, torch.ones_like(absmax))[:, None]
    nearest = (u[..., None] - code).abs().argmin(dim=-1)
    return nearest.reshape(-1)[: flat.numel()].to(torch.uint8), absmax


def rounding_quantize(x, code, block_size):
    """Rounds x / absmax onto 256 even steps: not the nearest code of the dynamic map."""
    codes, absmax = good_quantize(x, code, block_size)
    scale = absmax.repeat_interleave(block_size)[: x.numel()]
    u = x.reshape(-1) / torch.where(scale > 0, scale, torch.ones_like(scale))
    return ((u + 1) * 127.5).round().clamp(0, 255).to(torch.uint8), absmax


def good_lora_params(shape, r, targets):
    return shape.n_layer * sum(r * (i + o) * shape.hidden_size
                               for i, o in (bloom.LINEAR_SHAPES[t] for t in targets))


def good_gathered(anchors, positives, negatives, rank, scale=20.0):
    b = anchors[rank].shape[0]
    candidates = torch.cat(list(positives) + list(negatives or []))
    scores = F.normalize(anchors[rank], dim=-1) @ F.normalize(candidates, dim=-1).T * scale
    return F.cross_entropy(scores, torch.arange(b) + rank * b)


def unshifted_gathered(anchors, positives, negatives, rank, scale=20.0):
    return good_gathered(anchors, positives, negatives, 0, scale) if rank == 0 else \
        F.cross_entropy(F.normalize(anchors[rank], dim=-1) @ F.normalize(
            torch.cat(list(positives) + list(negatives or [])), dim=-1).T * scale,
            torch.arange(anchors[rank].shape[0]))


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: replace this line with your solution")


def test_new_checkers_accept_right_answers(capsys):
    assert exercises.check_quantize_blockwise(good_quantize) is good_quantize
    assert exercises.check_lora_param_count(good_lora_params) is good_lora_params
    assert exercises.check_gathered_mnr(good_gathered) is good_gathered
    assert capsys.readouterr().out.count("[OK]") == 3


@pytest.mark.parametrize("check, wrong, hint", [
    (exercises.check_quantize_blockwise, rounding_quantize, "nearest"),
    (exercises.check_lora_param_count,
     lambda shape, r, targets: good_lora_params(shape, r, targets) // shape.n_layer, "n_layer"),
    (exercises.check_gathered_mnr, unshifted_gathered, "rank 1"),
])
def test_new_checkers_reject_wrong_answers(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def delegating_answers():
    from lacos_helpers.encoder.losses import mnr_loss
    from lacos_helpers.encoder.pooling import last_token_pool
    from lacos_helpers.evaluation import metrics, retrieval
    from lacos_helpers.lora.report import lora_param_count

    def quantize(x, code, block_size):
        state = quantization.quantize_blockwise(x, block_size, code)
        return state.codes, state.absmax

    def dequantize(codes, absmax, code, block_size, shape):
        return quantization.dequantize_blockwise(quantization.BlockwiseQuantState(
            codes, absmax, shape, torch.float32, block_size, code))

    def gathered(anchors, positives, negatives, rank, scale=20.0):
        return mnr_loss(torch.cat(anchors), torch.cat(positives),
                        None if negatives is None else torch.cat(negatives), scale=scale)

    return [
        (exercises.check_quantize_blockwise, quantize),
        (exercises.check_dequantize_blockwise, dequantize),
        (exercises.check_lora_param_count,
         lambda shape, r, targets: lora_param_count(shape.hidden_size, shape.n_layer, r,
                                                    targets)),
        (exercises.check_mnr_loss, lambda a, p, n=None, scale=20.0: mnr_loss(a, p, n, scale)),
        (exercises.check_last_token_pool, last_token_pool),
        (exercises.check_spearman, metrics.spearman),
        (exercises.check_mrr, lambda ids, relevant: retrieval.retrieval_metrics(
            ids, relevant, ks=(1,), mrr_at=ids.shape[1])[f"mrr@{ids.shape[1]}"]),
        (exercises.check_bitext_accuracy, retrieval.bitext_accuracy),
        (exercises.check_gathered_mnr, gathered),
    ]


@pytest.mark.parametrize("index", range(9))
def test_an_answer_that_calls_the_package_is_rejected(index):
    check, answer = delegating_answers()[index]
    with pytest.raises(exercises.DelegatedError, match="write the computation yourself"):
        check(answer)


def test_the_trap_is_lifted_after_the_check():
    from lacos_helpers.encoder.losses import mnr_loss
    with pytest.raises(exercises.DelegatedError):
        exercises.check_mnr_loss(lambda a, p, n=None, scale=20.0: mnr_loss(a, p, n, scale))
    a, p = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.isfinite(mnr_loss(a, p))   # the package works again


@pytest.mark.parametrize("check", [
    exercises.check_quantize_blockwise, exercises.check_dequantize_blockwise,
    exercises.check_lora_param_count, exercises.check_lora_merge, exercises.check_mnr_loss,
    exercises.check_last_token_pool, exercises.check_spearman,
    exercises.check_crosslingual_matrix, exercises.check_verdict, exercises.check_mrr,
    exercises.check_bitext_accuracy, exercises.check_gathered_mnr,
])
def test_a_stub_falls_back_to_the_reference(check, capsys):
    reference = check(stub)
    assert reference is not stub and callable(reference)
    assert "not solved yet" in capsys.readouterr().out
    assert getattr(reference, "__module__", "").startswith("lacos_helpers")  # the package's


def test_ablation_stub_falls_back_to_a_variant(capsys):
    from lacos_helpers import config
    from lacos_helpers.experiments import Variant

    cfg = config.load_profile("ci")
    chosen = exercises.check_ablation(stub, cfg)
    assert isinstance(chosen, Variant) and "no ablation chosen yet" in capsys.readouterr().out
    assert exercises.check_ablation(chosen, cfg) is chosen
    assert exercises.check_ablation(lambda: chosen, cfg) is chosen
