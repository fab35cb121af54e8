"""Evaluation a reader can trust: subsets are seeded samples stratified by gold score (the same
rows in every language), every Spearman has a bootstrap interval, and a comparison of two
systems on the same pairs has a paired one."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy import stats

from lacos_helpers import data, evaluation
from lacos_helpers.data.sts import SCORE_STRATA, stratified_sample
from lacos_helpers.evaluation import metrics


def _bin(score: float) -> int:
    return sum(score >= edge for edge in SCORE_STRATA)


def test_batched_ranks_match_scipy():
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 2.0, 2.0], [5.0, 4.0, 3.0, 2.0, 1.0, 1.0]],
                          dtype=torch.float64)
    got = metrics._batched_average_ranks(values)
    for row, ranks in zip(values, got):
        assert ranks.tolist() == stats.rankdata(row.numpy()).tolist()


def _correlated(n: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def test_bootstrap_interval_covers_the_true_spearman():
    """Bivariate normal samples with Pearson 0.6: the population Spearman is
    (6/pi) asin(0.3) = 0.5822; the 95% intervals of 20 fixed samples cover it 19 or 20 times
    (binomial(20, 0.95): fewer than 17 would point to a broken interval)."""
    rho, truth = 0.6, 6 / math.pi * math.asin(0.3)
    covered, widths = 0, []
    for seed in range(20):
        x, y = _correlated(400, rho, seed)
        low, high = metrics.bootstrap_spearman(x, y, seed=seed)
        assert low < metrics.spearman(x, y) < high
        covered += low <= truth <= high
        widths.append(high - low)
    assert covered >= 17, covered
    # width ~ 2 * 1.96 * sd of Spearman at n=400 (~0.035): neither degenerate nor vacuous
    assert 0.08 < sum(widths) / len(widths) < 0.2


def test_paired_bootstrap_decides_only_real_differences():
    x, gold = _correlated(500, 0.7, 1)
    noise = torch.randn(500, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    better, worse = x, x + 1.5 * noise
    clear = metrics.paired_bootstrap_difference(better, worse, gold)
    assert clear["decided"] and clear["low"] > 0 and clear["delta"] > clear["low"]
    same = metrics.paired_bootstrap_difference(x, x.clone(), gold)
    assert same["delta"] == 0 and not same["decided"] and same["low"] <= 0 <= same["high"]
    tiny = metrics.paired_bootstrap_difference(x, x + 1e-3 * noise, gold)
    assert not tiny["decided"]  # a difference inside the noise is not a win
    with pytest.raises(ValueError, match="resamples"):
        metrics.bootstrap_spearman(x, gold, resamples=10)


def test_paired_bootstrap_over_seeds_needs_every_seed_to_agree():
    x, gold = _correlated(500, 0.7, 1)
    gen = torch.Generator().manual_seed(5)
    noise = [torch.randn(500, generator=gen, dtype=torch.float64) for _ in range(4)]
    better = torch.stack([x + 0.2 * noise[0], x + 0.2 * noise[1]])
    worse = torch.stack([x + 1.5 * noise[2], x + 1.5 * noise[3]])
    both = metrics.paired_bootstrap_difference(better, worse, gold)
    assert both["decided"] and both["seeds"] == 2 and len(both["per_seed"]) == 2
    assert both["delta"] == pytest.approx(sum(both["per_seed"]) / 2)
    assert both["low"] < both["delta"] < both["high"]
    # one seed says a > b, the other b > a: never decided, whatever the mean says
    split = metrics.paired_bootstrap_difference(torch.stack([better[0], worse[1]]),
                                                torch.stack([worse[0], better[1] + 0.01]), gold)
    assert split["per_seed"][0] > 0 > split["per_seed"][1] and not split["decided"]
    with pytest.raises(ValueError, match="seeds"):
        metrics.paired_bootstrap_difference(better, worse[:1], gold)


def test_paired_mean_over_aligned_tasks_draws_the_same_rows_for_every_task():
    x, gold = _correlated(500, 0.7, 1)
    noise = torch.randn(500, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    better, worse = x, x + 1.5 * noise
    one = metrics.paired_bootstrap_difference(better, worse, gold)
    alone = metrics.paired_bootstrap_mean_difference([better], [worse], [gold])
    assert (alone["delta"], alone["low"], alone["high"]) == pytest.approx(
        (one["delta"], one["low"], one["high"]))
    # a task twice: the same draws give the same interval (independent draws would narrow it)
    twice = metrics.paired_bootstrap_mean_difference([better] * 2, [worse] * 2, [gold] * 2)
    assert (twice["low"], twice["high"]) == pytest.approx((one["low"], one["high"]))
    # the gain in one task of two: half the delta, and a tie task pulls the interval to 0
    half = metrics.paired_bootstrap_mean_difference([better, x], [worse, x], [gold, gold])
    assert half["delta"] == pytest.approx(one["delta"] / 2)
    assert half["low"] == pytest.approx(one["low"] / 2) and half["decided"]
    with pytest.raises(ValueError, match="one a, b and gold per task"):
        metrics.paired_bootstrap_mean_difference([better], [worse, x], [gold])
    with pytest.raises(ValueError, match="not aligned"):
        metrics.paired_bootstrap_mean_difference([better, x[:400]], [worse, x[:400]],
                                                 [gold, gold[:400]])


def test_stratified_sample_keeps_the_score_mix_and_the_seed():
    scores = [i % 51 / 10 for i in range(1000)]  # 0.0 ... 5.0
    picked = stratified_sample(scores, 200, seed=3)
    assert len(picked) == 200 == len(set(picked)) and picked == sorted(picked)
    want = Counter(_bin(s) for s in scores)
    got = Counter(_bin(scores[i]) for i in picked)
    for b, count in want.items():
        assert abs(got[b] - 200 * count / 1000) <= 1, (b, got[b])
    assert stratified_sample(scores, 200, seed=3) == picked
    assert stratified_sample(scores, 200, seed=4) != picked
    assert stratified_sample(scores, 2000, seed=3) == list(range(1000))


def test_sts_subsets_are_the_same_rows_in_every_language(shared_data):
    en = data.load_sts("en", "test", limit=250)
    de = data.load_sts("de", "test", limit=250)
    cross = data.load_sts(("de", "en"), "test", limit=250)
    assert len(en) == 250 and en.total == 1379 and en.sample_seed == 0
    assert [p.score for p in de] == [p.score for p in en]
    assert [p.sentence1 for p in cross] == [p.sentence1 for p in de]
    assert [p.sentence2 for p in cross] == [p.sentence2 for p in en]
    full = data.load_sts("en", "test")
    first = full[:250]  # 0.1's "limit": the easy image captions at the top of the file
    assert [p.score for p in en] != [p.score for p in first]
    mean = sum(p.score for p in full) / len(full)
    assert abs(sum(p.score for p in en) / 250 - mean) < 0.15  # the sample keeps the mix


def test_tables_say_what_was_sampled_and_show_intervals(shared_data):
    def encoder(sentences):
        return torch.stack([torch.tensor([len(s), s.count(" "), s.count("a"), 1.0])
                            for s in sentences]).float()

    table = evaluation.sts_table(encoder, ["en", "de"], limit=120, show_progress=False)
    row = table["en"]
    assert row["spearman_low"] < row["spearman"] < row["spearman_high"]
    text = table.to_markdown()
    assert "n of 1379 pairs" in text and "seed 0" in text and "bootstrap" in text
    assert "spearman_low" not in text and " [" in text

