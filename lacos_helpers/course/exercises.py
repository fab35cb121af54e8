"""Checkers for the notebook exercises (``my_fn = exercises.check_x(my_fn)``): each compares a
learner's function with the package's on several inputs, ``[OK]`` or a hint; the package
functions it is checked against raise meanwhile (:func:`_forbidden`). A stub still raising
``NotImplementedError`` gives back the package's reference, so the notebook goes on."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from lacos_helpers import bloom, config, lora, quantization
from lacos_helpers.encoder import pooling
from lacos_helpers.encoder.losses import mnr
from lacos_helpers.evaluation import metrics, retrieval
from lacos_helpers.experiments import Variant

_MARK = "lacos-exercise: delegated"


class DelegatedError(AssertionError):
    """The answer called the package function the exercise is checked against."""


def _trap(*args, **kwargs):
    # runs with the *trapped* function's globals: builtins only
    raise AssertionError("lacos-exercise: delegated")


@contextlib.contextmanager
def _forbidden(functions: Iterable[Callable]):
    """While inside, each of ``functions`` (plain Python functions, every alias of them) raises
    :class:`DelegatedError`: their code object is swapped for :func:`_trap`'s."""
    swapped = []
    try:
        for fn in functions:
            fn = getattr(fn, "__func__", fn)
            if getattr(fn, "__closure__", None) or not hasattr(fn, "__code__"):
                continue  # a closure's code cannot be swapped; no such function is checked
            swapped.append((fn, fn.__code__))
            fn.__code__ = _trap.__code__
        yield
    except AssertionError as exc:
        if exc.args != (_MARK,):
            raise
        names = ", ".join(f"{fn.__module__}.{fn.__qualname__}" for fn, _ in swapped)
        raise DelegatedError(
            f"your answer calls the package function this exercise is checked against (one "
            f"of {names}): write the computation yourself") from None
    finally:
        for fn, code in swapped:
            fn.__code__ = code


def _exercise(title: str, fn: Callable, reference: Callable, forbidden: Sequence[Callable],
              checks: Callable[[Callable], None]) -> Callable:
    """Run ``checks`` on ``fn``, which must not call ``forbidden``; returns ``fn`` when it
    passes, ``reference`` (with a note) when ``fn`` is still the stub; a wrong answer raises
    ``AssertionError`` (:class:`DelegatedError` when it calls one of ``forbidden``)."""
    def answer(*args, **kwargs):
        with _forbidden(forbidden):
            return fn(*args, **kwargs)

    try:
        checks(answer)
    except NotImplementedError:
        print(f"[--] {title}: not solved yet (the stub raises NotImplementedError); the "
              "cells below use the package's answer instead")
        return reference
    print(f"[OK] {title}")
    return fn


def _inputs(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spiky = torch.randn(300, generator=g)
    spiky[7] = 40.0
    return [torch.randn(1000, generator=g), torch.randn(17, 33, generator=g) * 3, spiky,
            torch.zeros(64)]


def check_dequantize_blockwise(fn: Callable) -> Callable:
    """Exercise 1.2: ``fn(codes, absmax, code, block_size, shape) -> x`` (fp32) inverts
    :func:`lacos_helpers.quantization.quantize_blockwise`."""
    def reference(codes, absmax, code, block_size, shape):
        return quantization.dequantize_blockwise(quantization.BlockwiseQuantState(
            codes, absmax, shape, torch.float32, block_size, code))

    def checks(answer):
        for x in _inputs(1):
            for block_size in (64, 256):
                state = quantization.quantize_blockwise(x.float(), block_size=block_size)
                want = quantization.dequantize_blockwise(state).float()
                got = answer(state.codes, state.absmax, state.code, state.block_size,
                             state.shape)
                assert isinstance(got, torch.Tensor), "return a tensor"
                assert got.shape == want.shape, \
                    f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                err = (got.float() - want).abs().max().item()
                assert err < 1e-6, (f"max difference {err:.3g} (block {block_size}): look up "
                                    "code[codes], then multiply each block by its own absmax")

    return _exercise("Exercise 1.2: blockwise dequantization", fn, reference,
                     (quantization.dequantize_blockwise,), checks)


def check_quantize_blockwise(fn: Callable) -> Callable:
    """Exercise 1.1: ``fn(x, code, block_size) -> (codes, absmax)`` as
    :func:`lacos_helpers.quantization.quantize_blockwise`: ``absmax`` (float32, one per block of
    the flattened ``x``), ``codes`` (uint8, flat) the index of the code nearest to ``x / absmax``
    (a code as near as the package's is accepted: a near-tie may round either way)."""
    def reference(x, code, block_size):
        state = quantization.quantize_blockwise(x, block_size, code)
        return state.codes, state.absmax

    def checks(answer):
        for signed in (True, False):
            code = quantization.create_dynamic_map(signed=signed)
            for x in _inputs(8):
                x = x.float() if signed else x.float().abs()
                for block_size in (64, 256):
                    state = quantization.quantize_blockwise(x, block_size, code)
                    got = answer(x.clone(), code.clone(), block_size)
                    assert isinstance(got, tuple) and len(got) == 2, "return (codes, absmax)"
                    codes, absmax = got
                    assert torch.equal(absmax.float(), state.absmax), (
                        "absmax: the largest |x| of each block of the *flattened* x (the last "
                        "block may be shorter), one float per block")
                    assert codes.dtype == torch.uint8 and codes.numel() == x.numel(), \
                        "codes: a flat uint8 tensor with one code per element"
                    scale = state.absmax.repeat_interleave(block_size)[: x.numel()]
                    u = x.reshape(-1) / torch.where(scale > 0, scale, torch.ones_like(scale))
                    mine = (code[codes.reshape(-1).long()] - u).abs()
                    best = (code[state.codes.long()] - u).abs()
                    bad = int((mine > best + 1e-7).sum())   # float32 rounding of a near-tie
                    assert bad == 0, (f"{bad} codes are not the nearest to x / absmax "
                                      f"({'signed' if signed else 'unsigned'} map, block "
                                      f"{block_size}): search the code map, don't round u")

    return _exercise("Exercise 1.1: blockwise quantization with a code map", fn, reference,
                     (quantization.quantize_blockwise,), checks)


def _lora_cases(seed: int = 0):
    """``(layer, x)`` pairs: LoRALinear layers with random (nonzero) A and B, and inputs."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for in_features, out_features, r, alpha, leading in ((16, 24, 4, 8, (5,)),
                                                         (32, 8, 2, 16, (2, 3)),
                                                         (12, 12, 1, 1, (7,))):
        linear = nn.Linear(in_features, out_features)
        layer = lora.LoRALinear(linear, r=r, alpha=alpha)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(out_features, in_features, generator=g))
            linear.bias.copy_(torch.randn(out_features, generator=g))
            layer.lora_A.weight.copy_(torch.randn(r, in_features, generator=g))
            layer.lora_B.weight.copy_(torch.randn(out_features, r, generator=g))
        cases.append((layer, torch.randn(*leading, in_features, generator=g)))
    return cases


def check_lora_merge(fn: Callable) -> Callable:
    """Exercise 2.2: ``fn(weight, A, B, alpha, r) -> merged`` (out, in): one linear layer
    computing what the LoRA layer computes, ``W + (alpha / r) B A``."""
    def reference(weight, A, B, alpha, r):
        return weight + (alpha / r) * B @ A

    def checks(answer):
        for layer, x in _lora_cases(1):
            weight = layer.base_layer.weight.detach()
            A, B = layer.lora_A.weight.detach(), layer.lora_B.weight.detach()
            with torch.no_grad():
                want = weight + layer.delta_weight()
                unscaled = weight + B @ A
                got = answer(weight.clone(), A.clone(), B.clone(), layer.alpha, layer.r)
            assert isinstance(got, torch.Tensor), "return a tensor"
            assert got.shape == weight.shape, (f"merged weight has shape {tuple(got.shape)}, "
                                               f"expected {tuple(weight.shape)} (out, in)")
            assert torch.allclose(got.float(), want, rtol=1e-4, atol=1e-4), (
                "the update must be multiplied by alpha / r" if torch.allclose(
                    got.float(), unscaled, rtol=1e-4, atol=1e-4)
                else "merged = W + (alpha / r) * B @ A, shape (out, in)")
            with torch.no_grad():
                y = x @ got.float().T + layer.base_layer.bias
                assert torch.allclose(y, layer(x), rtol=1e-4, atol=1e-3), \
                    "outputs differ from LoRA's"

    return _exercise("Exercise 2.2: merging LoRA into the weight", fn, reference,
                     (lora.LoRALinear.delta_weight, lora.LoRALinear.merge), checks)


def check_lora_param_count(fn: Callable) -> Callable:
    """Exercise 2.1: ``fn(shape: BloomShape, r, targets) -> int``, the LoRA parameters at rank
    ``r`` on the linear layers ``targets`` (names of :data:`~lacos_helpers.bloom.LINEAR_SHAPES`)."""
    def reference(shape, r, targets):
        return lora.report.lora_param_count(shape.hidden_size, shape.n_layer, r, targets)

    def checks(answer):
        for size, shape in bloom.SHAPES.items():
            for r in (1, 8, 64):
                for targets in (bloom.LORA_TARGETS, bloom.ALL_LINEARS):
                    want = reference(shape, r, targets)
                    got = answer(shape, r, tuple(targets))
                    per_block = want // shape.n_layer
                    hint = ("count every block: multiply by n_layer" if got == per_block else
                            "A is (r, in) and B is (out, r): r * (in + out) per layer, with "
                            "in and out from LINEAR_SHAPES times hidden_size")
                    assert int(got) == want, (f"bloom-{size}, r={r}, {list(targets)}: {got:,}, "
                                              f"expected {want:,}: {hint}")

    return _exercise("Exercise 2.1: LoRA parameters of a BLOOM", fn, reference,
                     (lora.report.lora_param_count, lora.report.bloom_lora_table), checks)


def _mnr_cases(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    for b, d, hard in ((2, 8, False), (6, 16, False), (5, 16, True), (16, 32, True)):
        a, p = torch.randn(b, d, generator=g) * 3, torch.randn(b, d, generator=g)
        n = torch.randn(b, d, generator=g) if hard else None
        yield a, p, n


def check_mnr_loss(fn: Callable) -> Callable:
    """Exercise 3.1: ``fn(anchor, positive, hard_negative=None, scale=20.0) -> scalar`` equals
    :func:`lacos_helpers.encoder.losses.mnr_loss` (cosine similarity x scale, diagonal targets)."""
    def checks(answer):
        for a, p, n in _mnr_cases():
            for scale in (20.0, 5.0):
                want = mnr.mnr_loss(a, p, n, scale=scale)
                got = answer(a, p, n, scale=scale)
                assert isinstance(got, torch.Tensor) and got.dim() == 0, \
                    "return a scalar tensor"
                unnormalized = torch.nn.functional.cross_entropy(
                    scale * a @ (p if n is None else torch.cat([p, n])).T,
                    torch.arange(len(a)))
                hint = (" normalize the embeddings first (cosine, not dot product)"
                        if torch.isclose(got, unnormalized, atol=1e-4) else
                        " hard negatives are extra columns: candidates = cat(positive, "
                        "hard_negative)" if n is not None else
                        " scores = scale * cos(a_i, p_j); targets = arange(b)")
                assert torch.isclose(got.float(), want, atol=1e-4), \
                    f"loss {got.item():.5f}, expected {want.item():.5f} (b={len(a)}):{hint}"

    return _exercise("Exercise 3.1: MNR loss", fn, mnr.mnr_loss,
                     (mnr.mnr_loss, mnr.similarity_matrix), checks)


def check_last_token_pool(fn: Callable) -> Callable:
    """Exercise 3.2: ``fn(hidden [b, t, d], attention_mask [b, t]) -> [b, d]``, the hidden
    vector of each row's last real token, for left and right padding."""
    def checks(answer):
        g = torch.Generator().manual_seed(3)
        lengths = torch.tensor([5, 2, 7, 1])
        hidden = torch.randn(4, 7, 6, generator=g)
        for side in ("right", "left"):
            positions = torch.arange(7).expand(4, 7)
            mask = (positions < lengths[:, None]) if side == "right" else \
                (positions >= 7 - lengths[:, None])
            want = pooling.last_token_pool(hidden, mask.long())
            got = answer(hidden, mask.long())
            assert got.shape == want.shape, \
                f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            assert torch.allclose(got, want), (f"wrong vectors with {side} padding: use the "
                                               "mask to find the last position where it is 1")

    return _exercise("Exercise 3.2: last-token pooling", fn, pooling.last_token_pool,
                     (pooling.last_token_pool, pooling.pool), checks)


def _mrr_cases(seed: int = 6):
    """``(ids [q, k], relevant sets)``: first-rank hits, later hits, misses, two relevant ids."""
    g = torch.Generator().manual_seed(seed)
    for q, k in ((24, 10), (7, 3), (1, 5)):
        ids = torch.stack([torch.randperm(60, generator=g)[:k] for _ in range(q)])
        relevant = []
        for i, row in enumerate(ids.tolist()):
            # in turn: found first, found last, not found, two relevant of which one is found
            kinds = ({row[0]}, {row[-1]}, {100 + i}, {row[min(2, k - 1)], 100 + i})
            relevant.append(kinds[i % 4])
        yield ids, relevant, k


def check_mrr(fn: Callable) -> Callable:
    """Exercise 6.1: ``fn(ids [q, k], relevant: list[set[int]]) -> float``, MRR@k: the mean
    over queries of 1 / (1-based rank of the first relevant id in the row), 0 when none."""
    def reference(ids, relevant):
        k = ids.shape[1]
        return retrieval.retrieval_metrics(ids, relevant, ks=(1,), mrr_at=k)[f"mrr@{k}"]

    def checks(answer):
        for ids, relevant, k in _mrr_cases():
            want = reference(ids, relevant)
            got = float(answer(ids, relevant))
            assert abs(got - want) < 1e-9, (
                f"MRR {got:.4f}, expected {want:.4f} ({len(ids)} queries, k={k}): ranks start "
                "at 1, a query with no relevant id in its row adds 0, and with several "
                "relevant ids the first one found counts")

    return _exercise("Exercise 6.1: MRR@k", fn, reference, (retrieval.retrieval_metrics,),
                     checks)


def check_bitext_accuracy(fn: Callable) -> Callable:
    """Exercise 6.2: ``fn(source [n, d], target [m, d], gold: list[set[int]]) -> float``, the
    share of source rows whose highest-scoring target row (inner product) is in ``gold[i]``."""
    def checks(answer):
        g = torch.Generator().manual_seed(7)
        for n, m, noise in ((40, 60, 0.5), (15, 15, 1.2), (30, 90, 0.9)):
            target = torch.nn.functional.normalize(torch.randn(m, 16, generator=g), dim=1)
            pick = torch.randperm(m, generator=g)[:n]
            source = torch.nn.functional.normalize(
                target[pick] + noise * torch.randn(n, 16, generator=g), dim=1)
            gold = [{int(j)} for j in pick]
            want = retrieval.bitext_accuracy(source, target, gold)
            got = float(answer(source, target, gold))
            assert abs(got - want) < 1e-9, (
                f"accuracy {got:.4f}, expected {want:.4f} (n={n}, m={m}): score every target "
                "for each source row (source @ target.T), take the argmax over targets "
                "(dim=1) and check it is in that row's gold set")

    return _exercise("Exercise 6.2: bitext accuracy@1", fn, retrieval.bitext_accuracy,
                     (retrieval.bitext_accuracy,), checks)


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


def check_spearman(fn: Callable) -> Callable:
    """Exercise 4.1: ``fn(predicted [n], gold [n]) -> float``, Spearman with ties (Pearson of the
    *average* ranks) as :func:`lacos_helpers.evaluation.metrics.spearman`."""
    def ordinal(v):
        return v.argsort(stable=True).argsort().double() + 1

    def checks(answer):
        for predicted, gold in _spearman_cases():
            want = metrics.spearman(predicted, gold)
            no_ties = metrics.pearson(ordinal(predicted), ordinal(gold))
            got = float(answer(predicted.clone(), gold.clone()))
            hint = ("tied values must share the mean of the ranks they span (1, 2.5, 2.5, 4), "
                    "not get consecutive ranks" if abs(got - no_ties) < 1e-9 else
                    "rank both lists (average ranks for ties), then take the Pearson "
                    "correlation of the ranks")
            assert abs(got - want) < 1e-9, f"Spearman {got:.6f}, expected {want:.6f}: {hint}"

    forbidden = [metrics.spearman]
    with contextlib.suppress(ImportError):
        from scipy import stats
        forbidden.append(stats.spearmanr)
    return _exercise("Exercise 4.1: Spearman with ties", fn, metrics.spearman, forbidden,
                     checks)


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


def check_crosslingual_matrix(fn: Callable) -> Callable:
    """Exercise 4.2: ``fn(first, second, gold) -> {(x, y): Spearman}``: for every ordered pair
    of languages, Spearman of ``cos(first[x][i], second[y][i])`` (sentences 1 and 2 of pair i,
    [n, d] per language) with ``gold``."""
    def reference(first, second, gold):
        return {(x, y): metrics.spearman(torch.nn.functional.cosine_similarity(
            first[x].double(), second[y].double(), dim=1), gold)
            for x in first for y in second}

    def checks(answer):
        first, second, gold = _crosslingual_case()
        got = answer({k: v.clone() for k, v in first.items()},
                     {k: v.clone() for k, v in second.items()}, gold.clone())
        assert isinstance(got, dict), "return a dict {(x, y): Spearman}"
        want_keys = {(x, y) for x in first for y in second}
        assert set(got) == want_keys, (f"keys {sorted(got)}, expected every ordered pair "
                                       f"{sorted(want_keys)} (the diagonal too)")
        for (x, y), want in sorted(reference(first, second, gold).items()):
            dot = metrics.spearman((first[x].double() * second[y].double()).sum(1), gold)
            value = float(got[(x, y)])
            hint = (" normalize: cosine similarity, not the dot product"
                    if abs(value - dot) < 1e-9 else
                    " score row i of first[x] with row i of second[y] (cosine), then Spearman "
                    "against gold")
            assert abs(value - want) < 1e-9, \
                f"({x}, {y}): {value:.6f}, expected {want:.6f}:{hint}"

    return _exercise("Exercise 4.2: a cross-lingual table", fn, reference, (), checks)


def check_ablation(variant, cfg, taken: Sequence[str] = ()):
    """Exercise 5.1 (the choice): ``variant``, a :class:`~lacos_helpers.experiments.Variant` (or
    a function returning one) labelled outside ``taken``, must change a recipe field of ``cfg``.
    Returns it; a stub raising ``NotImplementedError`` gives the reference, LoRA dropout 0.1."""
    if callable(variant) and not isinstance(variant, Variant):
        try:
            variant = variant()
        except NotImplementedError:
            print("[--] Exercise 5.1: no ablation chosen yet; the cells below train the "
                  "reference choice, LoRA dropout 0.1, instead")
            return Variant("LoRA dropout 0.1", {"lora": {"dropout": 0.1}})
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
    print(f"[OK] Exercise 5.1: ablation {variant.label!r} changes "
          f"{', '.join(differences) or 'the training triplets'}")
    return variant


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


def check_verdict(fn: Callable) -> Callable:
    """Exercise 5.1 (the decision): ``fn(comparison) -> "better" | "worse" | "not decided"``
    for a :func:`~lacos_helpers.evaluation.metrics.paired_bootstrap_difference` result, as
    :func:`reference_verdict` decides."""
    def checks(answer):
        for comparison, expected in _verdict_cases():
            got = answer(dict(comparison))
            hint = ("every seed's difference must have the sign of delta" if
                    len(set(d > 0 for d in comparison["per_seed"])) > 1 else
                    "decide from the interval: it must exclude 0 (low > 0 or high < 0), not "
                    "from delta alone")
            assert got == expected, (f"{got!r} for delta {comparison['delta']:+.3f} in "
                                     f"[{comparison['low']:+.3f}, {comparison['high']:+.3f}], "
                                     f"per seed {comparison['per_seed']}; expected "
                                     f"{expected!r}: {hint}")

    return _exercise("Exercise 5.1: a decision from its interval", fn, reference_verdict, (),
                     checks)


def reference_verdict(comparison: dict) -> str:
    """Exercise 5.1's rule: "better" / "worse" when the interval excludes 0 and every seed
    agrees in sign with ``delta``, else "not decided"."""
    low, high, delta = comparison["low"], comparison["high"], comparison["delta"]
    if (low > 0 or high < 0) and all(d * delta > 0 for d in comparison["per_seed"]):
        return "better" if delta > 0 else "worse"
    return "not decided"


def _gathered_cases(seed: int = 9):
    g = torch.Generator().manual_seed(seed)
    for processes, b, d, hard in ((2, 3, 8, True), (4, 2, 16, True), (3, 4, 8, False)):
        parts = [[torch.randn(b, d, generator=g) for _ in range(processes)] for _ in range(3)]
        yield parts[0], parts[1], (parts[2] if hard else None)


def check_gathered_mnr(fn: Callable) -> Callable:
    """Exercise 7.1: ``fn(anchors, positives, hard_negatives, rank, scale) -> scalar``, the MNR
    loss of process ``rank`` (lists of [b, d] per process; ``hard_negatives`` may be None): its
    anchors against every process's positives, then hard negatives, targets ``rank * b + i``."""
    def reference(anchors, positives, hard_negatives, rank, scale=20.0):
        b = anchors[rank].shape[0]
        candidates = torch.cat(list(positives) + list(hard_negatives or []))
        scores = mnr.similarity_matrix(anchors[rank], candidates, scale)
        return torch.nn.functional.cross_entropy(scores, torch.arange(b) + rank * b)

    def checks(answer):
        for anchors, positives, negatives in _gathered_cases():
            whole = mnr.mnr_loss(torch.cat(anchors), torch.cat(positives),
                                 None if negatives is None else torch.cat(negatives), scale=20.0)
            wants = [reference(anchors, positives, negatives, k) for k in range(len(anchors))]
            gots = [answer(anchors, positives, negatives, k, 20.0)
                    for k in range(len(anchors))]
            for k, (got, want) in enumerate(zip(gots, wants)):
                assert isinstance(got, torch.Tensor) and got.dim() == 0, \
                    "return a scalar tensor"
                assert torch.isclose(got.float(), want, atol=1e-5), (
                    f"rank {k} of {len(anchors)}: loss {got.item():.5f}, expected "
                    f"{want.item():.5f}: candidates are all processes' positives (then their "
                    "hard negatives), and anchor i of rank k is row k * b + i's positive")
            # float32 means of a few losses: a few eps of their size
            mean = torch.stack(gots).float().mean()
            assert math.isclose(mean.item(), whole.item(), rel_tol=1e-5), \
                "the mean over ranks should equal the MNR loss of the whole batch"

    return _exercise("Exercise 7.1: the gathered MNR loss", fn, reference,
                     (mnr.mnr_loss, mnr.similarity_matrix), checks)
