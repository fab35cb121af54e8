"""lacos_helpers.evaluation.clustering: V-measure / NMI against scikit-learn, faiss k-means on
separable data, PCA against scikit-learn, the labelled STS-B genre set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import decomposition, metrics

from lacos_helpers.evaluation import clustering


def random_labels(n: int, classes: int, seed: int, prefix: str = "") -> list:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, classes, n)
    return [f"{prefix}{v}" for v in values] if prefix else values.tolist()


@pytest.mark.parametrize("n,classes,clusters,seed", [(200, 3, 3, 0), (500, 5, 8, 1),
                                                     (50, 2, 10, 2), (1000, 10, 4, 3)])
def test_v_measure_and_nmi_match_scikit_learn(n, classes, clusters, seed):
    true = random_labels(n, classes, seed, prefix="class-")
    # a clustering that follows the classes part of the time: scores well inside (0, 1)
    pred = [int(t.split("-")[1]) % clusters if i % 3 else i % clusters
            for i, t in enumerate(true)]
    h, c, v = clustering.homogeneity_completeness_v_measure(true, pred)
    ref_h, ref_c, ref_v = metrics.homogeneity_completeness_v_measure(true, pred)
    assert (h, c, v) == pytest.approx((ref_h, ref_c, ref_v), abs=1e-12)
    assert clustering.normalized_mutual_information(true, pred) == pytest.approx(
        metrics.normalized_mutual_info_score(true, pred), abs=1e-12)
    assert clustering.mutual_information(true, pred) == pytest.approx(
        metrics.mutual_info_score(true, pred), abs=1e-12)
    assert 0 < v < 1


@pytest.mark.parametrize("true,pred", [([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [0, 0, 0]),
                                       ([0, 0, 1], [5, 5, 7]), (["a", "b"], ["x", "y"])])
def test_degenerate_labelings_follow_scikit_learn(true, pred):
    ours = clustering.homogeneity_completeness_v_measure(true, pred)
    assert ours == pytest.approx(metrics.homogeneity_completeness_v_measure(true, pred))
    assert clustering.normalized_mutual_information(true, pred) == pytest.approx(
        metrics.normalized_mutual_info_score(true, pred))


def test_independent_labelings_score_zero_not_below():
    """Each genre split 1/5/94 over three clusters: I = 0 exactly, a sum of -2.2e-16 in floats
    (chapter 6's `0 <= V <= 1` failed on such a pooled clustering). Clipped, as scikit-learn."""
    true = np.repeat(np.arange(3), 100)
    pred = np.tile(np.repeat(np.arange(3), [1, 5, 94]), 3)
    assert clustering.mutual_information(true, pred) == 0.0
    h, c, v = clustering.homogeneity_completeness_v_measure(true, pred)
    assert (h, c, v) == (0.0, 0.0, 0.0) and metrics.v_measure_score(true, pred) == 0.0
    assert clustering.normalized_mutual_information(true, pred) == 0.0


def test_contingency_by_hand_and_bad_input():
    table = clustering.contingency(["a", "a", "b", "b", "b"], [1, 0, 0, 0, 2])
    assert table.tolist() == [[1, 1, 0], [0, 2, 1]]  # columns: clusters 1, 0, 2 (first seen)
    with pytest.raises(ValueError, match="3 true labels but 2 predicted"):
        clustering.contingency([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no labels"):
        clustering.contingency([], [])


def blobs(per: int = 60, centers: int = 4, d: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    middle = torch.nn.functional.normalize(torch.randn(centers, d, generator=gen), dim=1) * 5
    labels = [i for i in range(centers) for _ in range(per)]
    x = middle[labels] + 0.3 * torch.randn(len(labels), d, generator=gen)
    return torch.nn.functional.normalize(x, dim=1), labels


def test_kmeans_recovers_separated_blobs():
    x, labels = blobs()
    pred = clustering.kmeans(x, 4, seed=1)
    assert pred.shape == (240,) and pred.dtype == np.int64
    assert metrics.v_measure_score(labels, pred) == pytest.approx(1.0)
    scores = clustering.clustering_scores(x, labels)
    assert scores["k"] == 4 and scores["v_measure"] == pytest.approx(1.0)
    assert np.array_equal(clustering.kmeans(x, 4, seed=1), pred)  # seeded: the same clusters


def test_clustering_scores_of_noise_are_low():
    gen = torch.Generator().manual_seed(3)
    x = torch.nn.functional.normalize(torch.randn(400, 16, generator=gen), dim=1)
    scores = clustering.clustering_scores(x, random_labels(400, 4, 9))
    assert scores["v_measure"] < 0.1


def test_clustering_bad_input():
    x, labels = blobs(per=5, centers=2)
    with pytest.raises(ValueError, match=r"k must be an int in 1..10"):
        clustering.kmeans(x, 11)
    with pytest.raises(ValueError, match="9 labels for 10 embeddings"):
        clustering.clustering_scores(x, labels[:9])
    with pytest.raises(ValueError, match="empty"):
        clustering.kmeans(torch.empty(0, 4), 1)


def test_pca_2d_matches_scikit_learn_up_to_sign():
    x, _ = blobs(per=30, centers=3, d=12, seed=5)
    ours = clustering.pca_2d(x)
    ref = decomposition.PCA(n_components=2).fit_transform(x.numpy().astype(np.float64))
    assert ours.shape == (90, 2)
    for axis in range(2):
        sign = np.sign(np.dot(ours[:, axis].numpy(), ref[:, axis]))
        np.testing.assert_allclose(ours[:, axis].numpy(), sign * ref[:, axis], atol=1e-5)
    assert torch.equal(clustering.pca_2d(x), ours)


def test_stsb_test_genres_by_row_blocks(shared_data):
    from lacos_helpers import data

    rows = data.read_sts("fr", "test")
    genres = clustering.stsb_test_genres(rows)
    assert [genres.count(g) for g in ("captions", "forum", "news")] == [625, 254, 500]
    english = data.read_sts("en", "test")
    assert genres[624] == "captions" and english[624].sentence1.startswith("A group of teen")
    assert genres[625] == "forum" and genres[879] == "news"
    with pytest.raises(ValueError, match="whole STS-B test split"):
        clustering.stsb_test_genres(data.read_sts("en", "test", limit=100))


def test_stsb_genre_set_in_several_languages(shared_data):
    labelled = clustering.stsb_genre_set(["en", "de"], per_genre=10)
    assert len(labelled) == 60
    assert labelled.langs.count("en") == 30 and labelled.labels[:10] == ["captions"] * 10
    assert labelled.labels[:30] == labelled.labels[30:]  # the same rows in each language


def test_generated_data_is_labelled_by_place(generated):
    labelled = clustering.stsb_genre_set(["en", "zh"], per_genre=5)
    assert all(label.startswith("place ") for label in labelled.labels)
    assert len(set(labelled.labels)) > 3 and set(labelled.langs) == {"en", "zh"}


def test_clustering_scores_by_group_scores_each_group_alone():
    x1, labels = blobs(per=20, centers=3, seed=11)
    x2, _ = blobs(per=20, centers=3, seed=12)
    groups = ["a"] * 60 + ["b"] * 60
    scores = clustering.clustering_scores_by_group(torch.cat([x1, x2]), labels + labels, groups)
    assert set(scores) == {"a", "b", "mean"}
    assert scores["a"]["v_measure"] == pytest.approx(1.0)
    assert scores["mean"]["v_measure"] == pytest.approx(1.0)
    # pooled, the two groups' blobs are different places: k=3 cannot follow the labels alone
    assert clustering.clustering_scores(torch.cat([x1, x2]), labels + labels)["v_measure"] < 1
    with pytest.raises(ValueError, match="59 groups for 120"):
        clustering.clustering_scores_by_group(torch.cat([x1, x2]), labels + labels, groups[:59])
