"""STS evaluation: cosine similarity of sentence embeddings vs gold scores, per language
(:func:`sts_table`), cross-lingually (:func:`crosslingual_table`, :func:`crosslingual_matrix`)
and before vs after (:func:`compare_tables`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch

from lacos_helpers import data
from lacos_helpers.data.layout import STS_LANGS
from lacos_helpers.evaluation.embeddings import EmbeddingCache, _as_cache, _check_sentences
from lacos_helpers.evaluation.metrics import (
    bootstrap_spearman,
    paired_bootstrap_difference,
    sts_metrics,
)
from lacos_helpers.evaluation.tables import STSTable

log = logging.getLogger(__name__)

CROSSLINGUAL_LANGS = tuple(lang for lang in STS_LANGS if lang != "en")

def _pair_texts(pairs) -> tuple[list[str], list[str]]:
    """(sentence1s, sentence2s) of STSPair-like rows (attributes or a (s1, s2, ...) tuple)."""
    first, second = [], []
    for i, p in enumerate(pairs):
        try:
            s1, s2 = (p.sentence1, p.sentence2) if hasattr(p, "sentence1") else (p[0], p[1])
        except (TypeError, IndexError) as exc:
            raise TypeError(f"pair {i} is not an STSPair or (sentence1, sentence2, score): "
                            f"{p!r}") from exc
        first.append(s1)
        second.append(s2)
    return _check_sentences(first), _check_sentences(second)


def cosine_scores(encoder_or_cache, pairs, *, batch_size: int = 64,
                  show_progress: bool = False) -> torch.Tensor:
    """Cosine similarity of sentence1 and sentence2 embeddings for each pair: Tensor[n] float64,
    in [-1, 1]. ``encoder_or_cache``: an encoder (see module doc) or an :class:`EmbeddingCache`."""
    first, second = _pair_texts(pairs)
    cache = _as_cache(encoder_or_cache, None, batch_size, show_progress)
    if not first:
        return torch.empty(0, dtype=torch.float64)
    emb = cache.embed(first + second).double()
    a, b = emb[: len(first)], emb[len(first):]
    norms = a.norm(dim=1) * b.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"{int((norms == 0).sum())} pair(s) contain a zero embedding; "
                         "cosine similarity is undefined")
    return (a * b).sum(dim=1) / norms


def _scored_pairs(encoder, pairs, cache: EmbeddingCache | None = None, batch_size: int = 64,
                 show_progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cosines, gold)`` of at least 2 ``pairs`` (gold: STSPair.score or item 2): Tensor[n]
    float64 each."""
    pairs = list(pairs)
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to evaluate, got {len(pairs)}")
    try:
        gold = torch.tensor([float(p.score if hasattr(p, "score") else p[2]) for p in pairs],
                            dtype=torch.float64)
    except (TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"every pair needs a numeric gold score ({exc})") from exc
    return cosine_scores(_as_cache(encoder, cache, batch_size, show_progress), pairs), gold


def evaluate_sts(encoder, pairs, batch_size: int = 64, cache: EmbeddingCache | None = None, *,
                 show_progress: bool = False) -> dict:
    """``{"spearman", "pearson", "n"}`` (correlations in [-1, 1]) of cosine(sentence1,
    sentence2) vs gold over ``pairs``; ``cache``: an :class:`EmbeddingCache` of the same
    ``encoder``. Fewer than 2 pairs, constant predictions or gold, NaN/inf -> ``ValueError``."""
    return sts_metrics(*_scored_pairs(encoder, pairs, cache, batch_size, show_progress))


def _check_langs(langs, valid: Sequence[str]) -> tuple[str, ...]:
    langs = (langs,) if isinstance(langs, str) else tuple(langs)
    if not langs:
        raise ValueError("langs is empty")
    unknown = [lang for lang in langs if lang not in valid]
    if unknown:
        raise ValueError(f"unknown STS language(s) {unknown}; valid: {', '.join(valid)}")
    if len(set(langs)) != len(langs):
        raise ValueError(f"duplicate languages in {langs}")
    return langs


def _table_from_pairs(pairs_by_label: Mapping[str, list], cache: EmbeddingCache, kind: str,
                      **meta) -> STSTable:
    """Embed every sentence of every row once (one encode call), then score each row."""
    meta["source"] = ", ".join(sorted({rows.source for rows in pairs_by_label.values()}))
    title = f"STS-B {meta['split']}{kind} ({meta['source']} data)"
    all_pairs = [p for pairs in pairs_by_label.values() for p in pairs]
    log.info("[eval] %s: %d rows (%s), %d pairs", title, len(pairs_by_label),
             ", ".join(pairs_by_label), len(all_pairs))
    cache.embed(data.sts_sentences(all_pairs))
    rows, scores = [], {}
    for label, pairs in pairs_by_label.items():
        predicted, gold = _scored_pairs(cache, pairs)
        low, high = bootstrap_spearman(predicted, gold)
        rows.append({"lang": label, **sts_metrics(predicted, gold), "spearman_low": low,
                     "spearman_high": high})
        scores[label] = (predicted, gold)
    first = next(iter(pairs_by_label.values()))
    meta = {**meta, "n_of": getattr(first, "total", len(first)),
            "sample_seed": getattr(first, "sample_seed", None),
            "interval": "95% percentile bootstrap, 1000 resamples"}
    return STSTable(rows, title=title, meta=meta, scores=scores)


def sts_table(encoder, langs: str | Sequence[str] = STS_LANGS, split: str = "test",
              limit: int | None = None, *, data_dir: str | os.PathLike | None = None,
              source: str | None = None, cache: EmbeddingCache | None = None,
              batch_size: int = 64, show_progress: bool = True) -> STSTable:
    """Monolingual STS-B (stsb_multi_mt) table: one row per language with Spearman, Pearson
    (raw, in [-1, 1]), n and the Spearman's 95% bootstrap interval. ``limit``: at most N pairs
    per language, the same stratified sample in every language (:func:`data.load_sts`);
    ``source`` / ``data_dir`` as there. Pass a ``cache`` to share embeddings with other
    tables."""
    langs = _check_langs(langs, STS_LANGS)
    cache = _as_cache(encoder, cache, batch_size, show_progress)
    pairs = {lang: data.read_sts(lang, split, limit, source=source, data_dir=data_dir)
             for lang in langs}
    return _table_from_pairs(pairs, cache, "", split=split)


def crosslingual_table(encoder, langs: str | Sequence[str] = CROSSLINGUAL_LANGS,
                       split: str = "test", limit: int | None = None, *,
                       data_dir: str | os.PathLike | None = None, source: str | None = None,
                       cache: EmbeddingCache | None = None, batch_size: int = 64,
                       show_progress: bool = True) -> STSTable:
    """Cross-lingual STS-B: sentence1 in language X, sentence2 (row i) in English, same gold
    score. One row per X labelled "X-en" (Spearman, Pearson raw, n)."""
    langs = _check_langs(langs, STS_LANGS)
    cache = _as_cache(encoder, cache, batch_size, show_progress)
    pairs = {f"{lang}-en": data.read_sts((lang, "en"), split, limit, source=source,
                                         data_dir=data_dir)
             for lang in langs}
    return _table_from_pairs(pairs, cache, " cross-lingual X-en", split=split)


def crosslingual_matrix(encoder, langs: str | Sequence[str] = STS_LANGS,
                        split: str = "test", limit: int | None = None, *,
                        data_dir: str | os.PathLike | None = None, source: str | None = None,
                        cache: EmbeddingCache | None = None, batch_size: int = 64,
                        show_progress: bool = True) -> dict[tuple[str, str], float]:
    """{(x, y): Spearman} for every ordered language pair (diagonal = monolingual): sentence1
    in x, sentence2 in y. Each sentence is encoded once; feed to ``plot_crosslingual_heatmap``."""
    langs = _check_langs(langs, STS_LANGS)
    cache = _as_cache(encoder, cache, batch_size, show_progress)
    pairs = {(x, y): data.read_sts((x, y) if x != y else x, split, limit, source=source,
                                   data_dir=data_dir)
             for x in langs for y in langs}
    cache.embed(data.sts_sentences(p for rows in pairs.values() for p in rows))
    return {key: evaluate_sts(None, rows, cache=cache)["spearman"] for key, rows in pairs.items()}


def compare_tables(before: STSTable, after: STSTable, *, title: str = "") -> STSTable:
    """Spearman before/after: columns lang, before, after, delta (= after - before, raw) and n;
    both tables must cover the same rows with the same n. When both tables hold their per-pair
    scores (tables from :func:`sts_table` / :func:`crosslingual_table`), the delta gets a
    paired bootstrap 95% interval (``delta_low``, ``delta_high``) and ``decided`` (the interval
    excludes 0)."""
    if before.labels != after.labels:
        raise ValueError(f"tables cover different rows: {before.labels} vs {after.labels}")
    rows = []
    for label in before.labels:
        b, a = before[label], after[label]
        if "n" in b and "n" in a and b["n"] != a["n"]:
            raise ValueError(f"row {label!r}: n={b['n']} before but n={a['n']} after; "
                             "compare on the same pairs")
        if "spearman" not in b or "spearman" not in a:
            raise KeyError(f"metric 'spearman' missing; columns: {before.columns}")
        row = {"lang": label, "before": b["spearman"], "after": a["spearman"],
               "delta": a["spearman"] - b["spearman"]}
        if label in before.scores and label in after.scores:
            (pred_b, gold_b), (pred_a, gold_a) = before.scores[label], after.scores[label]
            if not torch.equal(gold_a, gold_b):
                raise ValueError(f"row {label!r}: the two tables scored different pairs")
            paired = paired_bootstrap_difference(pred_a, pred_b, gold_a)
            row.update(delta_low=paired["low"], delta_high=paired["high"],
                       decided=paired["decided"])
        rows.append({**row, **({"n": a["n"]} if "n" in a else {})})
    return STSTable(rows, title=title or "spearman: before vs after",
                    score_columns=("before", "after", "delta"), primary="after",
                    meta={"interval": "95% paired bootstrap, 1000 resamples"})
