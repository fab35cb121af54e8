"""Checkers for the notebook exercises: each runs a learner's function on several inputs and
compares it with the package's implementation. ``[OK]`` on success, a hint on failure."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def _ok(name: str) -> bool:
    print(f"[OK] {name}")
    return True


def _inputs(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spiky = torch.randn(300, generator=g)
    spiky[7] = 40.0
    return [torch.randn(1000, generator=g), torch.randn(17, 33, generator=g) * 3, spiky,
            torch.zeros(64)]


def check_absmax_quantize(fn: Callable) -> bool:
    """Exercise 1.1: ``fn(x) -> (q, scale)`` with ``q`` int8 in [-127, 127] and
    ``x ~= q / scale`` where ``scale = 127 / max|x|``."""
    for x in _inputs():
        q, scale = fn(x)
        assert isinstance(q, torch.Tensor) and q.dtype == torch.int8, "q must be an int8 tensor"
        assert q.shape == x.shape, f"q has shape {tuple(q.shape)}, expected {tuple(x.shape)}"
        absmax = x.abs().max()
        expected_scale = 127.0 / absmax if absmax > 0 else torch.tensor(1.0)
        assert torch.isclose(torch.as_tensor(scale, dtype=torch.float32),
                             expected_scale.float(), rtol=1e-5), "scale should be 127 / max|x|"
        expected = torch.round(x * expected_scale).clamp(-127, 127).to(torch.int8)
        wrong = (q != expected).sum().item()
        assert wrong == 0, f"{wrong} values differ from round(x * scale): round, don't truncate"
    return _ok("Exercise 1.1: absmax quantization")


def check_dequantize_blockwise(fn: Callable) -> bool:
    """Exercise 1.2: ``fn(codes, absmax, code, block_size, shape) -> x`` (fp32) inverts
    :func:`lacos_helpers.quantization.quantize_blockwise`."""
    from lacos_helpers import quantization

    for x in _inputs(1):
        for block_size in (64, 256):
            state = quantization.quantize_blockwise(x.float(), block_size=block_size)
            got = fn(state.codes, state.absmax, state.code, state.block_size, state.shape)
            want = quantization.dequantize_blockwise(state).float()
            assert isinstance(got, torch.Tensor), "return a tensor"
            assert got.shape == want.shape, \
                f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            err = (got.float() - want).abs().max().item()
            assert err < 1e-6, (f"max difference {err:.3g} (block {block_size}): look up "
                                "code[codes], then multiply each block by its own absmax")
    return _ok("Exercise 1.2: blockwise dequantization")


def _lora_cases(seed: int = 0):
    """``(layer, x)`` pairs: LoRALinear layers with random (nonzero) A and B, and inputs."""
    from torch import nn

    from lacos_helpers import lora

    g = torch.Generator().manual_seed(seed)
    cases = []
    for in_features, out_features, r, alpha, leading in ((16, 24, 4, 8, (5,)),
                                                         (32, 8, 2, 16, (2, 3)),
                                                         (12, 12, 1, 1, (7,))):
        linear = nn.Linear(in_features, out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(out_features, in_features, generator=g))
            linear.bias.copy_(torch.randn(out_features, generator=g))
        layer = lora.LoRALinear(linear, r=r, alpha=alpha)
        with torch.no_grad():
            layer.lora_A.weight.copy_(torch.randn(r, in_features, generator=g))
            layer.lora_B.weight.copy_(torch.randn(out_features, r, generator=g))
        cases.append((layer, torch.randn(*leading, in_features, generator=g)))
    return cases


def _lora_hint(got: torch.Tensor, want: torch.Tensor, unscaled: torch.Tensor) -> str:
    if torch.allclose(got, unscaled, rtol=1e-4, atol=1e-4):
        return "the low-rank term must be multiplied by alpha / r"
    return "y = x W^T + b + (alpha / r) * (x A^T) B^T, with A (r, in) and B (out, r)"


def check_lora_forward(fn: Callable) -> bool:
    """Exercise 2.1: ``fn(x, weight, bias, A, B, alpha, r) -> y`` computes a LoRA layer:
    ``x W^T + b + (alpha / r) (x A^T) B^T`` for ``x`` (..., in), ``weight`` (out, in),
    ``A`` (r, in), ``B`` (out, r); compared with :class:`lacos_helpers.lora.LoRALinear`."""
    for layer, x in _lora_cases():
        weight, bias = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
        A, B = layer.lora_A.weight.detach(), layer.lora_B.weight.detach()
        with torch.no_grad():
            want = layer(x)
            got = fn(x, weight.clone(), bias.clone(), A.clone(), B.clone(), layer.alpha, layer.r)
            unscaled = x @ weight.T + bias + (x @ A.T) @ B.T
        assert isinstance(got, torch.Tensor), "return a tensor"
        assert got.shape == want.shape, (f"output shape {tuple(got.shape)}, expected "
                                         f"{tuple(want.shape)} (x has shape {tuple(x.shape)})")
        assert torch.allclose(got.float(), want, rtol=1e-4, atol=1e-4), _lora_hint(got, want,
                                                                                    unscaled)
    return _ok("Exercise 2.1: LoRA forward")


def check_lora_merge(fn: Callable) -> bool:
    """Exercise 2.2: ``fn(weight, A, B, alpha, r) -> merged`` (out, in) with
    ``merged = W + (alpha / r) B A``: one linear layer computing what the LoRA layer computes."""
    for layer, x in _lora_cases(1):
        weight = layer.base_layer.weight.detach()
        A, B = layer.lora_A.weight.detach(), layer.lora_B.weight.detach()
        with torch.no_grad():
            got = fn(weight.clone(), A.clone(), B.clone(), layer.alpha, layer.r)
            want = weight + layer.delta_weight()
            unscaled = weight + B @ A
        assert isinstance(got, torch.Tensor), "return a tensor"
        assert got.shape == weight.shape, (f"merged weight has shape {tuple(got.shape)}, "
                                           f"expected {tuple(weight.shape)} (out, in)")
        assert torch.allclose(got.float(), want, rtol=1e-4, atol=1e-4), (
            "the update must be multiplied by alpha / r" if torch.allclose(
                got.float(), unscaled, rtol=1e-4, atol=1e-4)
            else "merged = W + (alpha / r) * B @ A, shape (out, in)")
        y = x @ got.float().T + layer.base_layer.bias
        assert torch.allclose(y, layer(x), rtol=1e-4, atol=1e-3), "outputs differ from LoRA's"
    return _ok("Exercise 2.2: merging LoRA into the weight")


def _mnr_cases(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    for b, d, hard in ((2, 8, False), (6, 16, False), (5, 16, True), (16, 32, True)):
        a, p = torch.randn(b, d, generator=g) * 3, torch.randn(b, d, generator=g)
        n = torch.randn(b, d, generator=g) if hard else None
        yield a, p, n


def check_mnr_loss(fn: Callable) -> bool:
    """Exercise 3.1: ``fn(anchor, positive, hard_negative=None, scale=20.0) -> scalar`` equals
    :func:`lacos_helpers.losses.mnr_loss` (cosine similarity x scale, diagonal targets)."""
    from lacos_helpers.encoder.losses import mnr_loss

    for a, p, n in _mnr_cases():
        for scale in (20.0, 5.0):
            got = fn(a, p, n, scale=scale)
            want = mnr_loss(a, p, n, scale=scale)
            assert isinstance(got, torch.Tensor) and got.dim() == 0, "return a scalar tensor"
            unnormalized = torch.nn.functional.cross_entropy(
                scale * a @ (p if n is None else torch.cat([p, n])).T, torch.arange(len(a)))
            hint = (" normalize the embeddings first (cosine, not dot product)"
                    if torch.isclose(got, unnormalized, atol=1e-4) else
                    " hard negatives are extra columns: candidates = cat(positive, hard_negative)"
                    if n is not None else " scores = scale * cos(a_i, p_j); targets = arange(b)")
            assert torch.isclose(got.float(), want, atol=1e-4), \
                f"loss {got.item():.5f}, expected {want.item():.5f} (b={len(a)}):{hint}"
    return _ok("Exercise 3.1: MNR loss")


def check_last_token_pool(fn: Callable) -> bool:
    """Exercise 3.2: ``fn(hidden [b, t, d], attention_mask [b, t]) -> [b, d]``, the hidden
    vector of each row's last real token, for left and right padding."""
    from lacos_helpers.encoder.pooling import last_token_pool

    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([5, 2, 7, 1])
    hidden = torch.randn(4, 7, 6, generator=g)
    for side in ("right", "left"):
        positions = torch.arange(7).expand(4, 7)
        mask = (positions < lengths[:, None]) if side == "right" else \
            (positions >= 7 - lengths[:, None])
        got = fn(hidden, mask.long())
        want = last_token_pool(hidden, mask.long())
        assert got.shape == want.shape, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        assert torch.allclose(got, want), (f"wrong vectors with {side} padding: use the mask to "
                                           "find the last position where it is 1")
    return _ok("Exercise 3.2: last-token pooling")


def _mrr_cases(seed: int = 6):
    """``(ids [q, k], relevant sets)``: first-rank hits, later hits, misses, two relevant ids."""
    g = torch.Generator().manual_seed(seed)
    for q, k in ((24, 10), (7, 3), (1, 5)):
        ids = torch.stack([torch.randperm(60, generator=g)[:k] for _ in range(q)])
        relevant = []
        for i, row in enumerate(ids.tolist()):
            kind = i % 4
            if kind == 0:
                relevant.append({row[0]})                       # found first
            elif kind == 1:
                relevant.append({row[-1]})                      # found last
            elif kind == 2:
                relevant.append({100 + i})                      # not found
            else:
                relevant.append({row[min(2, k - 1)], 100 + i})  # two relevant, one found
        yield ids, relevant, k


def check_mrr(fn: Callable) -> bool:
    """Exercise 6.1: ``fn(ids [q, k], relevant: list[set[int]]) -> float``, MRR@k: the mean
    over queries of 1 / (1-based rank of the first relevant id in the row), 0 when none."""
    from lacos_helpers.evaluation.retrieval import retrieval_metrics

    for ids, relevant, k in _mrr_cases():
        got = float(fn(ids, relevant))
        want = retrieval_metrics(ids, relevant, ks=(1,), mrr_at=k)[f"mrr@{k}"]
        assert abs(got - want) < 1e-9, (
            f"MRR {got:.4f}, expected {want:.4f} ({len(ids)} queries, k={k}): ranks start at "
            "1, a query with no relevant id in its row adds 0, and with several relevant ids "
            "the first one found counts")
    return _ok("Exercise 6.1: MRR@k")


def check_bitext_accuracy(fn: Callable) -> bool:
    """Exercise 6.2: ``fn(source [n, d], target [m, d], gold: list[set[int]]) -> float``,
    accuracy@1: the share of source rows whose highest-scoring target row (inner product) is
    in ``gold[i]``."""
    from lacos_helpers.evaluation.retrieval import bitext_accuracy

    g = torch.Generator().manual_seed(7)
    for n, m, noise in ((40, 60, 0.5), (15, 15, 1.2), (30, 90, 0.9)):
        target = torch.nn.functional.normalize(torch.randn(m, 16, generator=g), dim=1)
        pick = torch.randperm(m, generator=g)[:n]
        source = torch.nn.functional.normalize(
            target[pick] + noise * torch.randn(n, 16, generator=g), dim=1)
        gold = [{int(j)} for j in pick]
        got = float(fn(source, target, gold))
        want = bitext_accuracy(source, target, gold)
        assert abs(got - want) < 1e-9, (
            f"accuracy {got:.4f}, expected {want:.4f} (n={n}, m={m}): score every target for "
            "each source row (source @ target.T), take the argmax over targets (dim=1) and "
            "check it is in that row's gold set")
    return _ok("Exercise 6.2: bitext accuracy@1")


def _spearman_cases(seed: int = 4):
    """``(predicted, gold)`` pairs with ties: STS-like gold (steps of 0.2 from 0 to 5), a small
    case with a three-way tie, predictions with ties of their own, and no ties at all."""
    g = torch.Generator().manual_seed(seed)
    gold = torch.randint(0, 26, (200,), generator=g).double() / 5
    yield gold + torch.randn(200, generator=g, dtype=torch.float64), gold
    yield torch.tensor([0.3, 0.1, 0.1, 0.9, 0.1, 0.5], dtype=torch.float64), \
        torch.tensor([2.0, 1.0, 1.0, 5.0, 1.0, 4.0], dtype=torch.float64)
    yield torch.round(gold * 2 + torch.randn(200, generator=g, dtype=torch.float64)), gold
    x = torch.randn(50, generator=g, dtype=torch.float64)
    yield x, x + torch.randn(50, generator=g, dtype=torch.float64)


def check_spearman(fn: Callable) -> bool:
    """Exercise 4.1: ``fn(predicted [n], gold [n]) -> float``, Spearman's rank correlation with
    ties: the Pearson correlation of the *average* ranks (tied values share the mean of the
    ranks they span), as :func:`lacos_helpers.evaluation.metrics.spearman`."""
    from lacos_helpers.evaluation.metrics import pearson, spearman

    def ordinal(v):
        return v.argsort(stable=True).argsort().double() + 1

    for predicted, gold in _spearman_cases():
        got = float(fn(predicted.clone(), gold.clone()))
        want = spearman(predicted, gold)
        no_ties = pearson(ordinal(predicted), ordinal(gold))
        hint = ("tied values must share the mean of the ranks they span (1, 2.5, 2.5, 4), "
                "not get consecutive ranks" if abs(got - no_ties) < 1e-9 else
                "rank both lists (average ranks for ties), then take the Pearson correlation "
                "of the ranks")
        assert abs(got - want) < 1e-9, f"Spearman {got:.6f}, expected {want:.6f}: {hint}"
    return _ok("Exercise 4.1: Spearman with ties")


def _crosslingual_case(seed: int = 5):
    """Aligned embeddings of sentence 1 and sentence 2 in three 'languages' and gold scores."""
    g = torch.Generator().manual_seed(seed)
    n, d = 40, 12
    gold = torch.randint(0, 11, (n,), generator=g).double() / 2
    base1, noise = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    base2 = gold[:, None].float() / 5 * base1 + (1 - gold[:, None].float() / 5) * noise
    first, second = {}, {}
    for k, lang in enumerate(("xx", "yy", "zz")):
        first[lang] = base1 + 0.3 * (k + 1) * torch.randn(n, d, generator=g)
        second[lang] = base2 * (k + 1) + 0.3 * torch.randn(n, d, generator=g)  # norms differ
    return first, second, gold


def check_crosslingual_matrix(fn: Callable) -> bool:
    """Exercise 4.2: ``fn(first, second, gold) -> {(x, y): Spearman}``: ``first[x]`` holds the
    embeddings [n, d] of sentence 1 of every pair in language x, ``second[y]`` those of
    sentence 2 in language y (row i is the same pair in every language); the value for
    ``(x, y)`` is the Spearman correlation of the row-wise cosine similarity
    ``cos(first[x][i], second[y][i])`` with ``gold``, for every ordered pair of languages."""
    from lacos_helpers.evaluation.metrics import spearman

    first, second, gold = _crosslingual_case()
    got = fn({k: v.clone() for k, v in first.items()}, {k: v.clone() for k, v in second.items()},
             gold.clone())
    assert isinstance(got, dict), "return a dict {(x, y): Spearman}"
    want_keys = {(x, y) for x in first for y in second}
    assert set(got) == want_keys, (f"keys {sorted(got)}, expected every ordered pair "
                                   f"{sorted(want_keys)} (the diagonal too)")
    for x, y in sorted(want_keys):
        cos = torch.nn.functional.cosine_similarity(first[x].double(), second[y].double(), dim=1)
        want = spearman(cos, gold)
        dot = spearman((first[x].double() * second[y].double()).sum(1), gold)
        value = float(got[(x, y)])
        hint = (" normalize: cosine similarity, not the dot product" if abs(value - dot) < 1e-9
                else " score row i of first[x] with row i of second[y] (cosine), then Spearman "
                     "against gold")
        assert abs(value - want) < 1e-9, f"({x}, {y}): {value:.6f}, expected {want:.6f}:{hint}"
    return _ok("Exercise 4.2: a cross-lingual table")


def check_ablation(variant, cfg, taken: Sequence[str] = ()) -> bool:
    """Exercise 5.1 (the choice): ``variant`` is an :class:`~lacos_helpers.experiments.Variant`
    that changes the recipe ``cfg`` (overrides that apply and change at least one recipe
    field), with a label not in ``taken``."""
    from lacos_helpers import config
    from lacos_helpers.experiments import Variant

    assert isinstance(variant, Variant), "make a Variant(label, {section: {field: value}})"
    assert variant.label and variant.label not in taken, \
        f"choose a new label: {variant.label!r} is taken ({list(taken)})"
    assert variant.overrides or variant.triplets is not None or variant.cfg is not None, \
        "a variant with no overrides is the recipe itself: change one thing"
    try:
        changed = (variant.cfg or cfg).replace(**variant.overrides)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"the overrides do not apply to the recipe: {exc}") from exc
    differences = config.recipe_differences(cfg, changed)
    assert differences or variant.triplets is not None, (
        "the overrides change nothing that trains the model (same values as the recipe, or "
        "only fields such as eval_every that do not change the result)")
    return _ok(f"Exercise 5.1: ablation {variant.label!r} changes "
               f"{', '.join(differences) or 'the training triplets'}")


def _verdict_cases():
    """``(comparison, expected)`` in the format of ``paired_bootstrap_difference``."""
    def case(delta, low, high, per_seed):
        return {"delta": delta, "low": low, "high": high, "seeds": len(per_seed),
                "per_seed": per_seed}

    yield case(0.05, 0.01, 0.09, [0.05]), "better"
    yield case(-0.04, -0.07, -0.01, [-0.04]), "worse"
    yield case(0.02, -0.01, 0.05, [0.02]), "not decided"
    yield case(-0.01, -0.03, 0.002, [-0.01]), "not decided"
    yield case(0.03, 0.005, 0.06, [0.07, -0.01]), "not decided"   # the seeds disagree
    yield case(0.03, 0.005, 0.06, [0.04, 0.02]), "better"
    yield case(0.0, 0.0, 0.0, [0.0]), "not decided"


def check_verdict(fn: Callable) -> bool:
    """Exercise 5.1 (the decision): ``fn(comparison) -> "better" | "worse" | "not decided"``
    for a comparison of a candidate with the recipe as
    :func:`~lacos_helpers.evaluation.metrics.paired_bootstrap_difference` returns it: decided
    when the 95% interval ``[low, high]`` excludes 0 and every seed's difference
    (``per_seed``) has the sign of ``delta``."""
    for comparison, expected in _verdict_cases():
        got = fn(dict(comparison))
        hint = ("every seed's difference must have the sign of delta" if
                len(set(d > 0 for d in comparison["per_seed"])) > 1 else
                "decide from the interval: it must exclude 0 (low > 0 or high < 0), not from "
                "delta alone")
        assert got == expected, (f"{got!r} for delta {comparison['delta']:+.3f} in "
                                 f"[{comparison['low']:+.3f}, {comparison['high']:+.3f}], "
                                 f"per seed {comparison['per_seed']}; expected {expected!r}: "
                                 f"{hint}")
    return _ok("Exercise 5.1: a decision from its interval")
