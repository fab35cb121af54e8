"""MNR loss: equal to a naive per-row loop, to F.cross_entropy and to sentence-transformers'
MultipleNegativesRankingLoss / MultipleNegativesSymmetricRankingLoss formulas (written out here,
the package is not installed), gradients included; bad input is a clear error."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lacos_helpers.encoder.losses import mnr_loss, similarity_matrix

TOL = 1e-5


def embeddings(b: int, d: int = 16, m: int | None = None, seed: int = 0):
    """Random anchors, correlated positives and hard negatives (float32, requires grad)."""
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randn(b, d, generator=g)
    positive = anchor + 0.8 * torch.randn(b, d, generator=g)
    negative = torch.randn(b if m is None else m, d, generator=g)
    return [x.requires_grad_() for x in (anchor, positive, negative)]


# ---- references ---------------------------------------------------------------------------

def naive_mnr(anchor, positive, negative=None, scale=20.0, symmetric=False):
    """Per-row Python loop: cosine by hand, log-softmax by hand (float64)."""
    def cos(u, v):
        return (u * v).sum() / (u.norm() * v.norm())

    def row_loss(query, candidates, target):
        logits = torch.stack([scale * cos(query, c) for c in candidates])
        return -(logits[target] - torch.log(torch.exp(logits).sum()))

    a, p = anchor.double(), positive.double()
    cands = list(p) + ([] if negative is None else list(negative.double()))
    forward = sum(row_loss(a[i], cands, i) for i in range(len(a))) / len(a)
    if not symmetric:
        return forward
    backward = sum(row_loss(p[j], list(a), j) for j in range(len(p))) / len(p)
    return (forward + backward) / 2


def cross_entropy_mnr(anchor, positive, negative=None, scale=20.0):
    cands = positive if negative is None else torch.cat([positive, negative])
    scores = F.cosine_similarity(anchor[:, None, :], cands[None, :, :], dim=-1) * scale
    return F.cross_entropy(scores, torch.arange(len(anchor)))


def st_cos_sim(a, b):
    """sentence_transformers.util.cos_sim."""
    return torch.mm(F.normalize(a, p=2, dim=1), F.normalize(b, p=2, dim=1).transpose(0, 1))


def st_mnr(anchor, positive, negative=None, scale=20.0):
    """sentence-transformers' MultipleNegativesRankingLoss.forward, written out."""
    candidates = torch.cat([positive] + ([] if negative is None else [negative]))
    scores = st_cos_sim(anchor, candidates) * scale
    labels = torch.arange(0, scores.size(0), dtype=torch.long, device=scores.device)
    return nn.CrossEntropyLoss()(scores, labels)


def st_mnr_symmetric(anchor, positive, negative=None, scale=20.0):
    """sentence-transformers' MultipleNegativesSymmetricRankingLoss.forward, written out."""
    candidates = torch.cat([positive] + ([] if negative is None else [negative]))
    scores = st_cos_sim(anchor, candidates) * scale
    labels = torch.arange(len(scores), dtype=torch.long, device=scores.device)
    anchor_positive_scores = scores[:, 0:len(positive)]
    forward_loss = nn.CrossEntropyLoss()(scores, labels)
    backward_loss = nn.CrossEntropyLoss()(anchor_positive_scores.transpose(0, 1), labels)
    return (forward_loss + backward_loss) / 2


# ---- parity -------------------------------------------------------------------------------

CASES = [(b, neg, scale) for b in (2, 7) for neg in (False, True) for scale in (1.0, 20.0)]


@pytest.mark.parametrize("b,with_negative,scale", CASES)
def test_mnr_equals_naive_cross_entropy_and_sentence_transformers(b, with_negative, scale):
    a, p, n = embeddings(b, seed=b)
    n = n if with_negative else None
    ours = mnr_loss(a, p, n, scale=scale)
    assert ours.dim() == 0 and ours.dtype == torch.float32
    assert abs(ours.item() - naive_mnr(a, p, n, scale).item()) < TOL
    assert abs(ours.item() - cross_entropy_mnr(a, p, n, scale).item()) < TOL
    assert abs(ours.item() - st_mnr(a, p, n, scale).item()) < TOL


@pytest.mark.parametrize("b,with_negative,scale", CASES)
def test_symmetric_mnr_equals_naive_and_sentence_transformers(b, with_negative, scale):
    a, p, n = embeddings(b, seed=10 + b)
    n = n if with_negative else None
    ours = mnr_loss(a, p, n, scale=scale, symmetric=True)
    assert abs(ours.item() - naive_mnr(a, p, n, scale, symmetric=True).item()) < TOL
    assert abs(ours.item() - st_mnr_symmetric(a, p, n, scale).item()) < TOL
    assert abs(ours.item() - mnr_loss(a, p, n, scale=scale).item()) > 1e-4  # really differs


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_negative", [False, True])
def test_gradients_equal_the_naive_loop(with_negative, symmetric):
    a, p, n = embeddings(5, seed=3)
    inputs = [a, p, n] if with_negative else [a, p]
    ours = torch.autograd.grad(mnr_loss(*inputs, symmetric=symmetric), inputs)
    ref = torch.autograd.grad(naive_mnr(*inputs, symmetric=symmetric), inputs)
    for g_ours, g_ref in zip(ours, ref):
        assert g_ours.abs().max() > 1e-4
        assert (g_ours.double() - g_ref).abs().max().item() < TOL


def test_more_hard_negatives_than_pairs_and_low_precision_inputs():
    a, p, n = embeddings(4, m=9, seed=5)
    assert abs(mnr_loss(a, p, n).item() - naive_mnr(a, p, n).item()) < TOL
    half = mnr_loss(a.bfloat16(), p.bfloat16(), n.bfloat16())
    assert half.dtype == torch.float32 and abs(half.item() - mnr_loss(a, p, n).item()) < 0.2


# ---- properties ---------------------------------------------------------------------------

def test_identical_embeddings_give_log_of_the_candidate_count():
    x = torch.randn(1, 8).repeat(6, 1)
    assert mnr_loss(x, x).item() == pytest.approx(math.log(6), abs=1e-5)
    assert mnr_loss(x, x, x[:3]).item() == pytest.approx(math.log(9), abs=1e-5)


def test_perfect_pairs_give_a_small_loss_and_permuting_pairs_changes_nothing():
    eye = torch.eye(5)
    assert mnr_loss(eye, 3 * eye, scale=20.0).item() < 1e-6
    a, p, n = embeddings(6, seed=7)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    assert abs(mnr_loss(a, p, n).item() - mnr_loss(a[perm], p[perm], n[perm]).item()) < TOL
    assert abs(mnr_loss(a, p).item() - mnr_loss(a, p[perm]).item()) > 1e-2  # pairs matter


def test_similarity_matrix_is_scaled_cosine():
    a, b = torch.randn(3, 5), torch.randn(4, 5)
    expected = F.cosine_similarity(a[:, None], b[None], dim=-1)
    assert torch.allclose(similarity_matrix(a, b), expected, atol=1e-6)
    assert torch.allclose(similarity_matrix(a, b, scale=20.0), 20 * expected, atol=1e-5)
    zero = similarity_matrix(torch.zeros(1, 5), b)
    assert torch.equal(zero, torch.zeros(1, 4))


# ---- bad input ----------------------------------------------------------------------------

def test_batch_of_one_without_negatives_is_an_error():
    a, p, n = embeddings(1)
    with pytest.raises(ValueError, match="at least 2 candidates"):
        mnr_loss(a, p)
    assert torch.isfinite(mnr_loss(a, p, n))  # a hard negative is a negative


@pytest.mark.parametrize("args,error,match", [
    ((torch.randn(4, 8), torch.randn(3, 8)), ValueError, "same number of rows"),
    ((torch.randn(4, 8), torch.randn(4, 6)), ValueError, "dimension 6, expected 8"),
    ((torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 5)), ValueError, "hard_negative"),
    ((torch.randn(8), torch.randn(8)), ValueError, "2-D"),
    ((torch.randn(2, 4, 8), torch.randn(2, 4, 8)), ValueError, "2-D"),
    ((torch.randn(0, 8), torch.randn(0, 8)), ValueError, "empty"),
    (([[1.0, 2.0]], torch.randn(1, 2)), TypeError, "torch.Tensor"),
    ((torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4)), TypeError, "floating"),
])
def test_bad_shapes_and_types_are_clear_errors(args, error, match):
    with pytest.raises(error, match=match):
        mnr_loss(*args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_embeddings_are_an_error(bad):
    a, p, n = (x.detach() for x in embeddings(3))
    for i, name in enumerate(["anchor", "positive", "hard_negative"]):
        xs = [a.clone(), p.clone(), n.clone()]
        xs[i][1, 2] = bad
        with pytest.raises(ValueError, match=f"{name} holds NaN or inf"):
            mnr_loss(*xs)


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf"), "20", True])
def test_bad_scale_is_an_error(scale):
    a, p, _ = embeddings(3)
    with pytest.raises(ValueError, match="scale must be"):
        mnr_loss(a, p, scale=scale)
