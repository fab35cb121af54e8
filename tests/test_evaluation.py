"""lacos_helpers.evaluation: metrics vs scipy, degenerate input, the embedding cache, STS tables,
diagnostics and the evaluation plots (with a deterministic bag-of-character-n-grams encoder)."""

from __future__ import annotations

import csv
import math
import zlib

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from scipy import stats

from lacos_helpers import config, evaluation
from lacos_helpers.course import plotting
from lacos_helpers.data import STSPair
from lacos_helpers.evaluation import EmbeddingCache, STSTable, diagnostics


class NgramEncoder:
    """Hashed bag of character 3-grams (crc32, so the same in every process), Tensor[n, dim].
    Counts every call and every sentence it encodes."""

    def __init__(self, dim: int = 512, n: int = 3):
        self.dim, self.n = dim, n
        self.calls = 0
        self.encoded: list[str] = []

    def vector(self, text: str) -> torch.Tensor:
        padded = f" {text.lower()} "
        v = torch.zeros(self.dim)
        for i in range(max(1, len(padded) - self.n + 1)):
            v[zlib.crc32(padded[i:i + self.n].encode()) % self.dim] += 1.0
        return v

    def encode(self, sentences, batch_size=32, normalize=True, show_progress=True):
        self.calls += 1
        self.encoded += list(sentences)
        out = torch.stack([self.vector(s) for s in sentences])
        return torch.nn.functional.normalize(out, dim=1) if normalize else out


def random_encoder(sentences: list[str]) -> torch.Tensor:
    """A plain callable: one pseudo-random vector per sentence text (no meaning at all)."""
    rows = []
    for s in sentences:
        gen = torch.Generator().manual_seed(zlib.crc32(s.encode()))
        rows.append(torch.randn(64, generator=gen))
    return torch.stack(rows)


def scipy_pair(predicted, gold) -> tuple[float, float]:
    return (float(stats.spearmanr(predicted, gold).statistic),
            float(stats.pearsonr(predicted, gold).statistic))


GENERATED = "generated"  # the data source of the tests that use the ``generated`` fixture


PAIRS = [
    STSPair("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    STSPair("A woman is slicing an onion.", "A woman cuts an onion.", 4.2),
    STSPair("A dog runs in the park.", "A cat sleeps on the sofa.", 0.6),
    STSPair("Kids are playing football.", "Children play soccer.", 3.8),
    STSPair("The stock market fell today.", "A man is playing a guitar.", 0.0),
    STSPair("A man is playing a guitar.", "A man is playing a flute.", 2.4),
]


# --------------------------------------------------------------------------- metrics

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scipy_with_ties(seed):
    gen = torch.Generator().manual_seed(seed)
    gold = torch.randint(0, 11, (300,), generator=gen).double() / 2  # many ties, 0-5
    predicted = (gold / 5 + 0.5 * torch.randn(300, generator=gen, dtype=torch.float64)).round(
        decimals=1)  # ties in the predictions too
    rho, r = scipy_pair(predicted.numpy(), gold.numpy())
    assert evaluation.spearman(predicted, gold) == pytest.approx(rho, abs=1e-12)
    assert evaluation.pearson(predicted, gold) == pytest.approx(r, abs=1e-12)
    assert 0.1 < rho < 0.99  # a non-trivial case


def test_average_ranks_match_scipy():
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]
    assert evaluation.average_ranks(values).tolist() == stats.rankdata(values).tolist()
    assert evaluation.average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_is_rank_based_and_signed():
    x = torch.arange(1.0, 21.0)
    assert evaluation.spearman(x, x ** 3) == pytest.approx(1.0)
    assert evaluation.pearson(x, x ** 3) < 0.99
    assert evaluation.spearman(x, -x) == pytest.approx(-1.0)


@pytest.mark.parametrize("predicted,gold,match", [
    ([0.5, 0.5, 0.5], [1.0, 2.0, 3.0], "predicted scores are all equal"),
    ([0.1, 0.2, 0.3], [2.0, 2.0, 2.0], "gold scores are all equal"),
    ([0.1], [1.0], "at least 2"),
    ([0.1, float("nan"), 0.3], [1.0, 2.0, 3.0], "NaN"),
    ([0.1, 0.2, 0.3], [1.0, float("inf"), 3.0], "NaN/inf"),
    ([0.1, 0.2, 0.3], [1.0, 2.0], "differ in length"),
])
def test_degenerate_scores_are_errors(predicted, gold, match):
    for metric in (evaluation.spearman, evaluation.pearson):
        with pytest.raises(ValueError, match=match):
            metric(predicted, gold)


# --------------------------------------------------------------------------- evaluate_sts

def test_evaluate_sts_matches_scipy_on_cosines():
    enc = NgramEncoder()
    result = evaluation.evaluate_sts(enc, PAIRS)
    a = torch.stack([enc.vector(p.sentence1) for p in PAIRS])
    b = torch.stack([enc.vector(p.sentence2) for p in PAIRS])
    cosines = evaluation.cosine_scores(enc, PAIRS)
    reference = torch.nn.functional.cosine_similarity(a, b).double()  # float32 reference
    assert torch.allclose(cosines, reference, atol=1e-6)
    rho, r = scipy_pair(cosines.numpy(), [p.score for p in PAIRS])
    assert result["n"] == len(PAIRS)
    assert result["spearman"] == pytest.approx(rho, abs=1e-12)
    assert result["pearson"] == pytest.approx(r, abs=1e-12)
    assert result["spearman"] > 0.3


def test_evaluate_sts_accepts_a_plain_callable_and_tuples():
    pairs = [tuple(p) for p in PAIRS]
    result = evaluation.evaluate_sts(random_encoder, pairs)
    assert -1 <= result["spearman"] <= 1 and result["n"] == len(PAIRS)


def test_evaluate_sts_bad_input():
    enc = NgramEncoder()
    with pytest.raises(ValueError, match="at least 2 pairs"):
        evaluation.evaluate_sts(enc, PAIRS[:1])
    with pytest.raises(ValueError, match="gold scores are all equal"):
        evaluation.evaluate_sts(enc, [STSPair(p.sentence1, p.sentence2, 3.0) for p in PAIRS])
    with pytest.raises(ValueError, match="predicted scores are all equal"):
        evaluation.evaluate_sts(lambda s: torch.ones(len(s), 4), PAIRS)
    with pytest.raises(ValueError, match="NaN/inf embeddings"):
        evaluation.evaluate_sts(lambda s: torch.full((len(s), 4), float("nan")), PAIRS)
    with pytest.raises(ValueError, match="zero embedding"):
        evaluation.evaluate_sts(lambda s: torch.zeros(len(s), 4), PAIRS)
    with pytest.raises(ValueError, match="shape"):
        evaluation.evaluate_sts(lambda s: torch.ones(len(s) + 1, 4), PAIRS)
    with pytest.raises(TypeError, match="encode"):
        evaluation.evaluate_sts(42, PAIRS)
    with pytest.raises(ValueError, match="another encoder"):
        evaluation.evaluate_sts(enc, PAIRS, cache=EmbeddingCache(NgramEncoder()))


def test_encode_kwargs_are_filtered_to_what_the_encoder_accepts():
    class Minimal:
        def encode(self, sentences):
            return torch.eye(len(sentences)) + 1

    assert evaluation.cosine_scores(Minimal(), PAIRS[:2]).shape == (2,)


# --------------------------------------------------------------------------- cache

def test_cache_encodes_each_sentence_once():
    enc = NgramEncoder()
    cache = EmbeddingCache(enc, show_progress=False)
    first = cache.embed(["a b", "c d", "a b"])
    assert first.shape == (3, enc.dim) and torch.equal(first[0], first[2])
    cache.embed(["c d", "e f"])
    assert enc.encoded == ["a b", "c d", "e f"] and enc.calls == 2
    assert cache.stats() == {"sentences": 3, "hits": 2, "misses": 3, "encode_calls": 2}
    cache.embed(["a b"])
    assert enc.calls == 2  # all hits: no encoder call
    cache.clear()
    cache.embed(["a b"])
    assert enc.calls == 3 and cache.stats()["misses"] == 1


def test_cache_rejects_a_changed_dimension_and_bad_sentences():
    dims = iter([4, 8])
    cache = EmbeddingCache(lambda s: torch.ones(len(s), next(dims)), show_progress=False)
    cache.embed(["x"])
    with pytest.raises(ValueError, match="same encoder"):
        cache.embed(["y"])
    with pytest.raises(TypeError, match="single string"):
        cache.embed("a sentence")
    with pytest.raises(TypeError, match="strings"):
        cache.embed(["ok", 3])


def test_tables_share_one_cache_and_never_reencode(generated):
    enc = NgramEncoder()
    cache = EmbeddingCache(enc, show_progress=False)
    langs = config.STS_LANGS
    mono = evaluation.sts_table(enc, langs, limit=40, source=GENERATED, cache=cache)
    cross = evaluation.crosslingual_table(enc, limit=40, source=GENERATED, cache=cache)
    assert len(enc.encoded) == len(set(enc.encoded))  # no sentence encoded twice
    assert enc.calls == 1  # the English sentence2s were already cached by sts_table
    assert len(mono) == 10 and len(cross) == 9 and cross.labels[0] == "de-en"
    matrix = evaluation.crosslingual_matrix(enc, ("en", "de"), limit=40, source=GENERATED,
                                            cache=cache)
    assert enc.calls == 1 and set(matrix) == {("en", "en"), ("en", "de"), ("de", "en"),
                                              ("de", "de")}
    assert matrix[("en", "en")] == pytest.approx(mono["en"]["spearman"])
    assert matrix[("de", "en")] == pytest.approx(cross["de-en"]["spearman"])


# --------------------------------------------------------------------------- tables

def test_sts_table_on_generated_data_beats_a_meaningless_encoder(generated):
    table = evaluation.sts_table(NgramEncoder(), ("en", "de", "zh"), source=GENERATED,
                                 show_progress=False)
    noise = evaluation.sts_table(random_encoder, ("en", "de", "zh"), source=GENERATED,
                                 show_progress=False)
    for row, noise_row in zip(table, noise):
        assert -1 <= row["spearman"] <= 1 and row["n"] == 500
        assert row["spearman"] > 0.3, row  # lexical overlap tracks shared meaning slots
        assert abs(noise_row["spearman"]) < 0.15, noise_row
    assert table.meta["source"] == "generated" and "generated" in table.title


def test_sts_table_bad_languages(generated):
    with pytest.raises(ValueError, match="valid: en, de"):
        evaluation.sts_table(NgramEncoder(), ("en", "xx"), source=GENERATED)
    with pytest.raises(ValueError, match="duplicate"):
        evaluation.sts_table(NgramEncoder(), ("en", "en"), source=GENERATED)
    with pytest.raises(ValueError, match="unknown STS split"):
        evaluation.sts_table(NgramEncoder(), "en", split="validation", source=GENERATED)


def test_sts_table_on_real_english(shared_data):
    table = evaluation.sts_table(NgramEncoder(), "en", limit=200, data_dir=shared_data,
                                 source="local", show_progress=False)
    row = table["en"]
    assert row["n"] == 200 and table.meta["source"] == "local"
    assert 0.3 < row["spearman"] < 0.95, row


def _table() -> STSTable:
    return STSTable([{"lang": "en", "spearman": 0.81234567891, "pearson": 0.8, "n": 100},
                     {"lang": "de", "spearman": 0.7, "pearson": -0.05, "n": 90}], title="demo")


def test_table_markdown_csv_and_mean(tmp_path):
    table = _table()
    assert table.mean() == pytest.approx((0.81234567891 + 0.7) / 2)
    assert table.mean("pearson") == pytest.approx(0.375)
    md = table.to_markdown()
    assert "| en " in md and "81.23" in md and "-5.00" in md and "**mean**" in md
    assert "75.62" in md  # mean spearman x100
    assert str(table) == md == table._repr_markdown_()
    assert "mean spearman x100 = 75.62" in repr(table)
    csv_path, md_path = table.save(tmp_path / "sub" / "table")
    assert md_path.read_text(encoding="utf-8") == md
    with open(csv_path, encoding="utf-8", newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert float(raw[0]["spearman"]) == 0.81234567891 and raw[1]["n"] == "90"
    assert table.to_dict()["de"] == {"spearman": 0.7, "pearson": -0.05, "n": 90}


def test_table_rejects_bad_rows():
    with pytest.raises(ValueError, match="at least one row"):
        STSTable([])
    with pytest.raises(ValueError, match="duplicate"):
        STSTable([{"lang": "en", "spearman": 0.1}, {"lang": "en", "spearman": 0.2}])
    with pytest.raises(ValueError, match="columns"):
        STSTable([{"lang": "en", "spearman": 0.1}, {"lang": "de", "pearson": 0.2}])
    with pytest.raises(KeyError, match="rows: en, de"):
        _table()["fr"]


def test_compare_tables_delta():
    before = _table()
    after = STSTable([{**r, "spearman": r["spearman"] + 0.1} for r in before.rows])
    diff = evaluation.compare_tables(before, after)
    assert diff.columns == ["lang", "before", "after", "delta", "n"]
    assert diff.column("delta") == pytest.approx([0.1, 0.1])
    assert diff.mean() == pytest.approx(after.mean()) and diff.mean("delta") == pytest.approx(0.1)
    assert "+10.00" in diff.to_markdown()
    assert "-10.00" in evaluation.compare_tables(after, before).to_markdown()
    with pytest.raises(ValueError, match="different rows"):
        evaluation.compare_tables(before, STSTable(before.rows[:1]))
    with pytest.raises(ValueError, match="same pairs"):
        evaluation.compare_tables(before, STSTable([{**r, "n": 1} for r in before.rows]))


def test_published_numbers_are_only_the_quoted_ones():
    assert evaluation.PUBLISHED_MULTILINGUAL_MPNET == {"en": 86.8, "zh": 82.0}
    assert sorted(evaluation.PUBLISHED_STSB_TEST.values()) == [77.03, 79.23]


# --------------------------------------------------------------------------- diagnostics

def test_random_pair_cosines():
    enc = NgramEncoder()
    sentences = [p.sentence1 for p in PAIRS] + [p.sentence2 for p in PAIRS]
    cos = evaluation.random_pair_cosines(enc, sentences, n_pairs=200, seed=1)
    assert cos.shape == (200,) and bool(((cos >= -1 - 1e-9) & (cos < 1 - 1e-6)).all())
    assert torch.equal(cos, evaluation.random_pair_cosines(enc, sentences, n_pairs=200, seed=1))
    assert not torch.equal(cos, evaluation.random_pair_cosines(enc, sentences, 200, seed=2))
    with pytest.raises(ValueError, match="2 distinct"):
        evaluation.random_pair_cosines(enc, ["same", "same"])


def test_largest_errors_sorted_and_consistent():
    enc = NgramEncoder()
    errors = evaluation.largest_errors(enc, PAIRS, k=3)
    sizes = [abs(e["error"]) for e in errors]
    assert len(errors) == 3 and sizes == sorted(sizes, reverse=True)
    for e in errors:
        pair = PAIRS[e["index"]]
        assert (e["sentence1"], e["sentence2"], e["gold"]) == tuple(pair)
        assert e["error"] == pytest.approx(e["predicted"] - e["gold"])
        assert 0 <= e["predicted"] <= 5
    ranked = evaluation.largest_errors(enc, PAIRS, k=len(PAIRS))
    assert sorted(e["predicted"] for e in ranked) == sorted(p.score for p in PAIRS)


def test_rank_rescale_is_perfect_for_a_perfect_ordering():
    gold = torch.tensor([0.0, 1.0, 2.5, 2.5, 5.0], dtype=torch.float64)
    assert torch.equal(diagnostics._rank_rescale(gold / 10, gold), gold)


# --------------------------------------------------------------------------- plots

def test_plots_return_figures():
    enc = NgramEncoder()
    cosines = evaluation.cosine_scores(enc, PAIRS)
    gold = [p.score for p in PAIRS]
    table = _table()
    figures = [
        plotting.plot_sts_scatter(cosines, gold, "toy"),
        plotting.plot_language_bars({"before": table, "after": {"en": 0.9, "de": 0.75}},
                                    reference=evaluation.PUBLISHED_MULTILINGUAL_MPNET),
        plotting.plot_crosslingual_heatmap({("de", "en"): 0.5, ("en", "en"): 0.8,
                                            ("en", "de"): 0.45}),
        plotting.plot_crosslingual_heatmap(STSTable([{"lang": "de-en", "spearman": 0.4},
                                                     {"lang": "fr-en", "spearman": 0.5}])),
        plotting.plot_cosine_histograms({"before": torch.rand(100) * 0.2 + 0.8,
                                         "after": torch.rand(100) * 2 - 1}),
    ]
    rho = 100 * evaluation.spearman(cosines, gold)
    assert f"{rho:.2f}" in figures[0].axes[0].get_title()
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    for f in figures:
        plt.close(f)
    with pytest.raises(ValueError):
        plotting.plot_language_bars({})
    with pytest.raises(ValueError, match="differ in length"):
        plotting.plot_sts_scatter([0.1, 0.2], [1.0])
    assert math.isfinite(rho)
