"""Multiple Negatives Ranking (MNR) loss: in-batch negatives for contrastive sentence embeddings.

For a batch of b (anchor, positive) pairs, every anchor must pick its own positive among all b
positives (and any hard negatives, appended as extra candidates): a b-way classification whose
logits are the scaled cosine similarities,

    loss = mean_i  -log softmax_j(scale * cos(anchor_i, candidate_j))[j = i].

This is sentence-transformers' ``MultipleNegativesRankingLoss`` (scale 20, cosine similarity);
``symmetric=True`` is its ``MultipleNegativesSymmetricRankingLoss``: the average of that loss and
the backward one in which every positive picks its anchor among the b anchors (hard negatives take
no part in the backward direction).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_SCALE = 20.0


def _check_embeddings(name: str, x, dim: int | None = None) -> None:
    """A 2-D, non-empty, floating, finite tensor [n, d] (with ``d == dim`` when given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [batch, dim], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [batch, dim], got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, expected {dim} like the "
                         "first embeddings")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or inf values")


def similarity_matrix(a: Tensor, b: Tensor, scale: float = 1.0) -> Tensor:
    """Cosine similarities ``scale * cos(a_i, b_j)``: [n, d], [m, d] -> [n, m] (float32).
    A zero vector has similarity 0 with everything (never NaN)."""
    _check_embeddings("a", a)
    _check_embeddings("b", b, a.shape[1])
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    a_unit = F.normalize(a.float(), p=2, dim=-1)
    b_unit = F.normalize(b.float(), p=2, dim=-1)
    return a_unit @ b_unit.T * float(scale)


def mnr_loss(anchor: Tensor, positive: Tensor, hard_negative: Tensor | None = None,
             scale: float = DEFAULT_SCALE, symmetric: bool = False) -> Tensor:
    """MNR loss (scalar, float32) of raw embeddings: ``anchor`` and ``positive`` [b, d] (row i of
    each is a pair), ``hard_negative`` [m, d] (any m; usually row i is anchor i's contradiction)
    extra candidates for every anchor. Cosine similarity times ``scale`` is computed here.
    Needs at least two candidates per anchor (one pair alone has no negative)."""
    _check_embeddings("anchor", anchor)
    _check_embeddings("positive", positive, anchor.shape[1])
    if positive.shape[0] != anchor.shape[0]:
        raise ValueError(f"anchor and positive must have the same number of rows (pairs), got "
                         f"{anchor.shape[0]} and {positive.shape[0]}")
    candidates = positive
    if hard_negative is not None:
        _check_embeddings("hard_negative", hard_negative, anchor.shape[1])
        candidates = torch.cat([positive, hard_negative.to(positive.dtype)], dim=0)
    batch = anchor.shape[0]
    if candidates.shape[0] < 2:
        raise ValueError("MNR needs at least 2 candidates per anchor: a batch of one pair "
                         "without hard negatives has no negative (loss 0, no gradient); use "
                         "batch_size >= 2")
    scores = similarity_matrix(anchor, candidates, scale)  # [b, b + m]
    labels = torch.arange(batch, device=scores.device)
    loss = F.cross_entropy(scores, labels)
    if symmetric:
        backward = F.cross_entropy(scores[:, :batch].T, labels)  # positive_j -> anchor_j
        loss = (loss + backward) / 2
    return loss


__all__ = ["DEFAULT_SCALE", "mnr_loss", "similarity_matrix"]
