"""Where a model fails: anisotropy (:func:`random_pair_cosines`) and the pairs furthest from
gold (:func:`largest_errors`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lacos_helpers.checks import check_int
from lacos_helpers.evaluation.embeddings import EmbeddingCache, _check_sentences
from lacos_helpers.evaluation.metrics import average_ranks
from lacos_helpers.evaluation.sts import _pair_texts, _scored_pairs, cosine_scores


def random_pair_cosines(encoder_or_cache, sentences: Sequence[str], n_pairs: int = 1000,
                        seed: int = 0, *, batch_size: int = 64,
                        show_progress: bool = False) -> torch.Tensor:
    """Cosine similarity of ``n_pairs`` random pairs of distinct sentences: Tensor[n_pairs]
    float64. An isotropic space centres near 0; decoder LLM embeddings before training are
    often anisotropic (all cosines close to 1). Only sampled sentences are encoded."""
    unique = list(dict.fromkeys(_check_sentences(sentences)))
    if len(unique) < 2:
        raise ValueError(f"need at least 2 distinct sentences, got {len(unique)}")
    check_int(n_pairs, "n_pairs")
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(len(unique), (n_pairs,), generator=gen)
    offset = torch.randint(1, len(unique), (n_pairs,), generator=gen)
    second = (first + offset) % len(unique)  # never equal to first
    pairs = [(unique[i], unique[j]) for i, j in zip(first.tolist(), second.tolist())]
    return cosine_scores(encoder_or_cache, pairs, batch_size=batch_size,
                         show_progress=show_progress)


def _rank_rescale(cosines: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Map each cosine to the gold score of the same (average) rank: the prediction a perfect
    Spearman would need. Tensor[n] float64 on the gold scale."""
    positions = average_ranks(cosines) - 1  # 0 .. n-1, halves for ties
    sorted_gold = torch.sort(gold).values
    low, high = positions.floor().long(), positions.ceil().long()
    frac = positions - low
    return sorted_gold[low] + (sorted_gold[high] - sorted_gold[low]) * frac


def largest_errors(encoder, pairs, k: int = 5, *, cache: EmbeddingCache | None = None,
                   batch_size: int = 64, show_progress: bool = False) -> list[dict]:
    """The ``k`` pairs whose predicted similarity is furthest from gold, largest |error| first.

    Each dict: index, sentence1, sentence2, gold (0-5), cosine, predicted (0-5), error =
    predicted - gold (> 0: the model over-rates the pair). ``predicted`` is the gold score at
    the pair's cosine rank among all pairs (:func:`_rank_rescale`): only the ordering counts,
    like Spearman, so anisotropic cosines near 1 do not inflate the errors.
    """
    check_int(k, "k")
    pairs = list(pairs)
    cosines, gold = _scored_pairs(encoder, pairs, cache, batch_size, show_progress)
    predicted = _rank_rescale(cosines, gold)
    error = predicted - gold
    order = torch.argsort(error.abs(), descending=True, stable=True)[:k].tolist()
    first, second = _pair_texts(pairs)
    return [{"index": i, "sentence1": first[i], "sentence2": second[i],
             "gold": float(gold[i]), "cosine": float(cosines[i]),
             "predicted": float(predicted[i]), "error": float(error[i])} for i in order]
