"""Correlation metrics written out (average ranks for ties) and checked against ``scipy.stats``
by the tests; degenerate input is a ``ValueError``, never NaN."""

from __future__ import annotations

import torch


def _check_scores(values, name: str) -> torch.Tensor:
    """1-D float64 Tensor with >= 2 finite, not all equal values."""
    t = torch.as_tensor(values, dtype=torch.float64).detach().flatten().cpu()
    if t.numel() < 2:
        raise ValueError(f"need at least 2 {name} to correlate, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain {int((~torch.isfinite(t)).sum())} NaN/inf value(s)")
    if t.max() == t.min():
        raise ValueError(f"{name} are all equal ({float(t[0])!r}); a correlation with a "
                         "constant is undefined")
    return t


def _check_same_length(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.numel() != y.numel():
        raise ValueError(f"predicted and gold differ in length: {x.numel()} vs {y.numel()}")


def average_ranks(values) -> torch.Tensor:
    """1-based ranks, ties get the mean of the ranks they span (like scipy's rankdata
    "average"): [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]. Tensor[n] float64."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    order = torch.argsort(v, stable=True)
    sorted_v = v[order]
    starts_group = torch.ones_like(sorted_v, dtype=torch.bool)
    starts_group[1:] = sorted_v[1:] != sorted_v[:-1]
    group = torch.cumsum(starts_group, 0) - 1
    first_pos = starts_group.nonzero().flatten().double()  # 0-based start of each tie group
    size = torch.bincount(group).double()
    group_rank = first_pos + (size + 1) / 2  # mean of 1-based ranks start+1 .. start+size
    ranks = torch.empty_like(v)
    ranks[order] = group_rank[group]
    return ranks


def pearson(predicted, gold) -> float:
    """Pearson correlation of two equally long score lists (float64)."""
    x, y = _check_scores(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(x, y)
    x, y = x - x.mean(), y - y.mean()
    r = float((x * y).sum() / (x.norm() * y.norm()))
    return max(-1.0, min(1.0, r))


def spearman(predicted, gold) -> float:
    """Spearman rank correlation = Pearson on average ranks (ties averaged)."""
    x, y = _check_scores(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def sts_metrics(predicted, gold) -> dict:
    """{"spearman", "pearson", "n"} of predicted similarities vs gold scores."""
    return {"spearman": spearman(predicted, gold), "pearson": pearson(predicted, gold),
            "n": int(torch.as_tensor(gold).numel())}
