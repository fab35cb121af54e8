"""Correlation metrics written out (average ranks for ties) and checked against ``scipy.stats``
by the tests; degenerate input is a ``ValueError``, never NaN."""

from __future__ import annotations

import torch

from lacos_helpers.checks import check_int


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


def _batched_average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of every row of ``values`` [b, n] at once, ties averaged (see
    :func:`average_ranks`)."""
    sorted_v, order = torch.sort(values, dim=1, stable=True)
    starts = torch.ones_like(sorted_v, dtype=torch.bool)
    starts[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    group = torch.cumsum(starts, dim=1) - 1  # [b, n] group id of each sorted position
    size = torch.zeros_like(sorted_v).scatter_add_(1, group, torch.ones_like(sorted_v))
    first = torch.cumsum(size, dim=1) - size  # 0-based start of each group
    group_rank = first + (size + 1) / 2
    ranks = torch.empty_like(sorted_v)
    ranks.scatter_(1, order, torch.gather(group_rank, 1, group))
    return ranks


def average_ranks(values) -> torch.Tensor:
    """1-based ranks, ties get the mean of the ranks they span (like scipy's rankdata
    "average"): [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]. Tensor[n] float64."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    return _batched_average_ranks(v.unsqueeze(0))[0]


def _batched_pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson of each row of ``x`` vs the same row of ``y`` [b, n]: [b] (NaN if constant)."""
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    denom = x.norm(dim=1) * y.norm(dim=1)
    return torch.where(denom > 0, (x * y).sum(dim=1) / denom.clamp(min=1e-300),
                       torch.full_like(denom, float("nan")))


def pearson(predicted, gold) -> float:
    """Pearson correlation of two equally long score lists (float64)."""
    x, y = _check_scores(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(x, y)
    return max(-1.0, min(1.0, float(_batched_pearson(x[None], y[None])[0])))


def spearman(predicted, gold) -> float:
    """Spearman rank correlation = Pearson on average ranks (ties averaged)."""
    x, y = _check_scores(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def sts_metrics(predicted, gold) -> dict:
    """{"spearman", "pearson", "n"} of predicted similarities vs gold scores."""
    return {"spearman": spearman(predicted, gold), "pearson": pearson(predicted, gold),
            "n": int(torch.as_tensor(gold).numel())}


# --------------------------------------------------------------------------- bootstrap

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95  # the intervals hold the central 95% of the resampled values


def _interval(values: torch.Tensor) -> tuple[float, float]:
    values = values[torch.isfinite(values)]
    tail = (1 - LEVEL) / 2
    lo, hi = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=values.dtype))
    return float(lo), float(hi)


def _resampled_spearman(runs: torch.Tensor, gold: torch.Tensor, resamples: int,
                        seed: int) -> torch.Tensor:
    """Spearman of each run [s, n] vs ``gold`` on the same ``resamples`` bootstrap draws of the
    n pairs: [s, resamples] (NaN where a draw is constant)."""
    check_int(resamples, "resamples", 100)
    n = gold.numel()
    index = torch.randint(n, (resamples, n), generator=torch.Generator().manual_seed(seed))
    gold_ranks = _batched_average_ranks(gold[index])
    return torch.stack([_batched_pearson(_batched_average_ranks(run[index]), gold_ranks)
                        for run in runs])


def bootstrap_spearman(predicted, gold, *, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval ``(low, high)`` of the Spearman correlation:
    ``resamples`` times, draw n pairs with replacement and recompute it (ranks redone, ties
    averaged). ``predicted`` may hold several seeds' runs [s, n]: then the interval is the
    seed-mean Spearman's (each resample averages the seeds on the same pairs)."""
    runs, y = _as_runs(predicted, "predicted scores"), _check_scores(gold, "gold scores")
    _check_same_length(runs[0], y)
    return _interval(_resampled_spearman(runs, y, resamples, seed).mean(dim=0))


def _as_runs(predicted, name: str) -> torch.Tensor:
    """Predictions of one run [n] or of several seeds [s, n] as [s, n] (each row checked)."""
    values = torch.as_tensor(predicted, dtype=torch.float64)
    if values.dim() == 1:
        return _check_scores(values, name).unsqueeze(0)
    if values.dim() != 2 or values.shape[0] < 1:
        raise ValueError(f"{name} must be [n] or [seeds, n], got shape {tuple(values.shape)}")
    return torch.stack([_check_scores(row, f"{name}, seed {i}") for i, row in enumerate(values)])


def paired_bootstrap_difference(predicted_a, predicted_b, gold, *,
                                resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Spearman(a) - Spearman(b) on the same pairs and its paired bootstrap 95% interval (each
    resample draws the same pairs for both systems, so what they share cancels).

    ``predicted_a`` / ``predicted_b``: predictions [n], or several seeds' [s, n] (as many for
    both: the difference is then the mean over seeds). Returns ``{"delta", "low", "high",
    "decided", "seeds", "per_seed"}``; ``decided``: the interval excludes 0 and every seed's
    difference has the sign of ``delta`` (> 0: a beats b)."""
    a = _as_runs(predicted_a, "predicted scores (a)")
    b = _as_runs(predicted_b, "predicted scores (b)")
    y = _check_scores(gold, "gold scores")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a has {a.shape[0]} seeds but b has {b.shape[0]}")
    for runs in (a, b):
        _check_same_length(runs[0], y)
    rho = _resampled_spearman(torch.cat([a, b]), y, resamples, seed)
    low, high = _interval((rho[:len(a)] - rho[len(a):]).mean(dim=0))
    per_seed = [spearman(run_a, y) - spearman(run_b, y) for run_a, run_b in zip(a, b)]
    delta = sum(per_seed) / len(per_seed)
    same_sign = all(d * delta > 0 for d in per_seed)
    return {"delta": delta, "low": low, "high": high,
            "decided": (low > 0 or high < 0) and same_sign, "seeds": len(per_seed),
            "per_seed": per_seed}


def paired_bootstrap_mean_difference(predicted_a, predicted_b, golds, *,
                                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Mean over k tasks of Spearman(a) - Spearman(b) and its paired bootstrap 95% interval,
    for tasks whose rows are aligned (row i is the same item in each: STS-B in 10 languages):
    each resample draws the same rows for both systems and every task.

    ``predicted_a`` / ``predicted_b`` / ``golds``: k sequences of [n] scores, n equal.
    Returns ``{"delta", "low", "high", "decided"}`` (``decided``: the interval excludes 0)."""
    if not len(predicted_a) == len(predicted_b) == len(golds) > 0:
        raise ValueError(f"need one a, b and gold per task, got {len(predicted_a)}, "
                         f"{len(predicted_b)}, {len(golds)}")
    deltas, rows = [], []
    for k, (a, b, gold) in enumerate(zip(predicted_a, predicted_b, golds)):
        a, b = _check_scores(a, f"task {k} (a)"), _check_scores(b, f"task {k} (b)")
        y = _check_scores(gold, f"task {k} gold")
        _check_same_length(a, y)
        _check_same_length(b, y)
        if y.numel() != len(golds[0]):
            raise ValueError(f"task {k} has {y.numel()} rows, task 0 {len(golds[0])}: not aligned")
        rho = _resampled_spearman(torch.stack([a, b]), y, resamples, seed)
        rows.append(rho[0] - rho[1])
        deltas.append(spearman(a, y) - spearman(b, y))
    low, high = _interval(torch.stack(rows).mean(dim=0))
    delta = sum(deltas) / len(deltas)
    return {"delta": delta, "low": low, "high": high, "decided": low > 0 or high < 0}
