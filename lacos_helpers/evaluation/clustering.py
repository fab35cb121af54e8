"""What sentence embeddings are for, part 2: clustering, and a 2-D picture of the space.

Spherical k-means (faiss) clusters are scored against labels with homogeneity
``1 - H(C|K) / H(C)``, completeness ``1 - H(K|C) / H(K)`` and V-measure, their harmonic mean
(= NMI with the arithmetic mean), checked against scikit-learn by the tests. A good
multilingual encoder groups :func:`stsb_genre_set` by genre (meaning), not by language.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lacos_helpers.checks import check_int
from lacos_helpers.evaluation.retrieval import as_float_matrix

log = logging.getLogger(__name__)

# (genre, rows) of the STS-B test split in file order (Cer et al. 2017, table 3); stsb_multi_mt
# keeps that order in every language
STSB_TEST_GENRES = (("captions", 625), ("forum", 254), ("news", 500))


# --------------------------------------------------------------------------- labels

def _label_ids(labels: Sequence) -> np.ndarray:
    """Labels of any hashable type -> int ids 0..c-1 (first-seen order), checked non-empty."""
    labels = list(labels)
    if not labels:
        raise ValueError("no labels: nothing to score")
    ids: dict = {}
    return np.array([ids.setdefault(x, len(ids)) for x in labels], dtype=np.int64)


def contingency(true: Sequence, pred: Sequence) -> np.ndarray:
    """Counts [classes, clusters]: how many items of class i are in cluster j (rows and
    columns in the order the labels are first seen)."""
    t, p = _label_ids(true), _label_ids(pred)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true labels but {len(p)} predicted labels")
    table = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)
    np.add.at(table, (t, p), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a vector of counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(true: Sequence, pred: Sequence) -> float:
    """I(C; K) in nats from the contingency table, >= 0: rounding of a sum that is 0 in exact
    arithmetic (labelings independent) is clipped to 0, as scikit-learn does."""
    table = contingency(true, pred).astype(np.float64)
    n = table.sum()
    joint = table / n
    outer = joint.sum(axis=1, keepdims=True) @ joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return max(0.0, float((joint[nz] * np.log(joint[nz] / outer[nz])).sum()))


def homogeneity_completeness_v_measure(true: Sequence,
                                       pred: Sequence) -> tuple[float, float, float]:
    """``(homogeneity, completeness, v_measure)`` of a clustering ``pred`` against classes
    ``true`` (Rosenberg & Hirschberg 2007); 1.0 by convention when an entropy is 0."""
    table = contingency(true, pred)
    h_c, h_k = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    mi = mutual_information(true, pred)
    homogeneity = mi / h_c if h_c > 0 else 1.0
    completeness = mi / h_k if h_k > 0 else 1.0
    if homogeneity + completeness == 0:
        return homogeneity, completeness, 0.0
    return homogeneity, completeness, 2 * homogeneity * completeness / (homogeneity + completeness)


def normalized_mutual_information(true: Sequence, pred: Sequence) -> float:
    """``I(C; K) / ((H(C) + H(K)) / 2)`` (1.0 when both labelings are constant)."""
    table = contingency(true, pred)
    h_c, h_k = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    if h_c == 0 and h_k == 0:
        return 1.0
    return mutual_information(true, pred) / ((h_c + h_k) / 2)


# ----------------------------------------------------------------- k-means and the 2-D projection

def kmeans(embeddings, k: int, *, seed: int = 0, niter: int = 25, nredo: int = 3) -> np.ndarray:
    """Cluster ids [n] (int64) of spherical k-means (faiss) on ``embeddings`` [n, d]: the best
    of ``nredo`` runs of ``niter`` iterations, seeded."""
    import faiss

    x = as_float_matrix(embeddings, "embeddings")
    check_int(k, "k", 1, x.shape[0], why="the number of points")
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=nredo, seed=seed, spherical=True,
                      min_points_per_centroid=1, verbose=False)
    km.train(x)
    _, assignment = km.index.search(x, 1)
    return assignment[:, 0].astype(np.int64)


def clustering_scores(embeddings, labels: Sequence, k: int | None = None, *,
                      seed: int = 0) -> dict[str, float]:
    """k-means with ``k`` clusters (default: the number of distinct labels) scored against
    ``labels``: ``{"v_measure", "nmi", "homogeneity", "completeness", "k"}``."""
    labels = list(labels)
    x = as_float_matrix(embeddings, "embeddings")
    if len(labels) != x.shape[0]:
        raise ValueError(f"{len(labels)} labels for {x.shape[0]} embeddings")
    k = len(set(labels)) if k is None else k
    pred = kmeans(x, k, seed=seed)
    h, c, v = homogeneity_completeness_v_measure(labels, pred)
    return {"v_measure": v, "nmi": normalized_mutual_information(labels, pred),
            "homogeneity": h, "completeness": c, "k": k}


def clustering_scores_by_group(embeddings, labels: Sequence, groups: Sequence, *,
                               seed: int = 0) -> dict[str, dict[str, float]]:
    """:func:`clustering_scores` within each group (e.g. each language) separately:
    ``{group: scores}`` plus ``"mean"`` (each score averaged over the groups)."""
    x = as_float_matrix(embeddings, "embeddings")
    labels, groups = list(labels), list(groups)
    if not len(labels) == len(groups) == x.shape[0]:
        raise ValueError(f"{len(labels)} labels and {len(groups)} groups for {x.shape[0]} "
                         "embeddings")
    out: dict[str, dict[str, float]] = {}
    for group in dict.fromkeys(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        out[str(group)] = clustering_scores(x[rows], [labels[i] for i in rows], seed=seed)
    keys = ("v_measure", "nmi", "homogeneity", "completeness")
    out["mean"] = {k: float(np.mean([s[k] for s in out.values()])) for k in keys}
    return out


def pca_2d(embeddings) -> torch.Tensor:
    """The first two principal components [n, 2] (float32) of ``embeddings`` [n, d], each
    axis's sign fixed so that its largest loading is positive (the same picture every run)."""
    x = torch.from_numpy(as_float_matrix(embeddings, "embeddings")).double()
    if x.shape[0] < 2:
        raise ValueError("PCA needs at least 2 points")
    centered = x - x.mean(dim=0)
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)
    axes = vh[:2]
    if axes.shape[0] < 2:
        axes = torch.cat([axes, torch.zeros(2 - axes.shape[0], x.shape[1], dtype=x.dtype)])
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    axes = axes * torch.where(signs == 0, 1.0, signs)
    return (centered @ axes.T).float()


# --------------------------------------------------------------------------- the labelled set

@dataclass
class LabelledSet:
    """``sentences[i]`` with its class ``labels[i]`` and its language ``langs[i]``."""

    sentences: list[str]
    labels: list[str]
    langs: list[str]

    def __len__(self) -> int:
        return len(self.sentences)


def stsb_test_genres(rows) -> list[str]:
    """The genre of each STS-B test row (:data:`STSB_TEST_GENRES`, by position). ``rows``
    must be the whole test split in file order, nothing skipped."""
    expected = sum(n for _, n in STSB_TEST_GENRES)
    skipped = sum(getattr(rows, "skipped", {}).values())
    if len(rows) != expected or skipped:
        raise ValueError(f"genres are known by row position in the whole STS-B test split "
                         f"({expected} rows); got {len(rows)} rows ({skipped} skipped)")
    return [genre for genre, n in STSB_TEST_GENRES for _ in range(n)]


def stsb_genre_set(langs: Sequence[str], per_genre: int | None = None) -> LabelledSet:
    """STS-B test sentence1 of each row with its genre, in every language of ``langs``
    (aligned rows: the same meanings in each language); ``per_genre`` = the first N rows of
    each genre (None: all 1,379 rows). Generated data: labelled by the meaning's place."""
    from lacos_helpers import data
    from lacos_helpers.data.generated import generated_sts_meanings

    if not langs:
        raise ValueError("need at least one language")
    sentences, labels, codes = [], [], []
    for lang in dict.fromkeys(langs):
        rows = data.read_sts(lang, "test")
        if rows.source == "generated":
            genres = [f"place {m1[3]}" for m1, _, _ in generated_sts_meanings("test")]
        else:
            genres = stsb_test_genres(rows)
        taken: Counter[str] = Counter()
        for row, genre in zip(rows, genres):
            taken[genre] += 1
            if per_genre is not None and taken[genre] > per_genre:
                continue
            sentences.append(row.sentence1)
            labels.append(genre)
            codes.append(lang)
    log.info("[cluster] %d sentences, %d labels, languages %s", len(sentences),
             len(set(labels)), ",".join(dict.fromkeys(codes)))
    return LabelledSet(sentences, labels, codes)
