"""What sentence embeddings are for, part 1: semantic search on a faiss index of unit vectors
(inner product = cosine: exact flat, or approximate IVF / HNSW measured by their recall against
the exact top k) and bitext mining, on tasks built from the course data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from lacos_helpers.checks import check_int

if TYPE_CHECKING:  # pragma: no cover
    import faiss

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")


# --------------------------------------------------------------------------- input checks

def as_float_matrix(values, name: str) -> np.ndarray:
    """``values`` (Tensor / array [n, d]) as a C-contiguous float32 numpy array, checked:
    two dimensions, at least one row and one column, every value finite."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float32).numpy()
    array = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    if array.ndim != 2:
        raise ValueError(f"{name} must be a matrix [n, d], got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows): nothing to search")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns: embeddings need a dimension d >= 1")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(f"{name} has NaN/inf values in {len(rows)} rows (first: {rows[0]})")
    return array


def _check_k(k: int, n: int, what: str = "the corpus") -> None:
    check_int(k, "k")
    if k > n:
        raise ValueError(f"k={k} is larger than {what} ({n} documents): ask for at most {n}")


def _check_same_dim(queries: np.ndarray, d: int) -> None:
    if queries.shape[1] != d:
        raise ValueError(f"queries have d={queries.shape[1]} but the corpus has d={d}: "
                         "embed both with the same encoder")


# --------------------------------------------------------------------------- indexes

def flat_index(corpus) -> faiss.IndexFlatIP:
    """Exact inner-product index of ``corpus`` [n, d] (unit vectors: cosine similarity)."""
    import faiss

    vectors = as_float_matrix(corpus, "corpus")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def default_nlist(n: int) -> int:
    """IVF cells for ``n`` documents: about ``4 * sqrt(n)`` (faiss' rule of thumb), at most
    ``n // 39`` so that k-means has its 39 training points per cell, at least 1."""
    return max(1, min(int(4 * n ** 0.5), n // 39))


def ivf_index(corpus, nlist: int | None = None, nprobe: int = 8, seed: int = 0):
    """IVF index: k-means (``nlist`` cells, default :func:`default_nlist`) on ``corpus``
    [n, d]; a query scans the ``nprobe`` nearest cells. Inner product metric."""
    import faiss

    vectors = as_float_matrix(corpus, "corpus")
    n, d = vectors.shape
    nlist = default_nlist(n) if nlist is None else int(nlist)
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be in 1..{n} (the corpus size), got {nlist}")
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.min_points_per_centroid = 1  # small corpora: no warning, same cells
    index.train(vectors)
    index.add(vectors)
    index.nprobe = min(int(nprobe), nlist)
    return index


def hnsw_index(corpus, m: int = 32, ef_construction: int = 64, ef_search: int = 64):
    """HNSW graph index (``m`` neighbours per node) of ``corpus`` [n, d], inner product;
    ``ef_search`` candidates are kept while searching (more: slower, higher recall)."""
    import faiss

    vectors = as_float_matrix(corpus, "corpus")
    index = faiss.IndexHNSWFlat(vectors.shape[1], int(m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(ef_construction)
    index.hnsw.efSearch = int(ef_search)
    index.add(vectors)
    return index


def _timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), wall-clock seconds it took)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def build_index(kind: str, corpus, **options):
    """``(index, seconds)``: a ``kind`` index (:data:`INDEX_KINDS`) of ``corpus`` [n, d] and
    the wall-clock seconds it took to build (training included)."""
    builders: dict[str, Callable] = {"flat": flat_index, "ivf": ivf_index, "hnsw": hnsw_index}
    if kind not in builders:
        raise ValueError(f"unknown index kind {kind!r}; valid: {', '.join(INDEX_KINDS)}")
    return _timed(builders[kind], corpus, **options)


def index_bytes(index) -> int:
    """Bytes of the index serialized by faiss (vectors, graph or cells: its memory size)."""
    import faiss

    return int(faiss.serialize_index(index).nbytes)


# --------------------------------------------------------------------------- search

def search(index, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` documents of each query [q, d]: ``(scores [q, k] float32, ids [q, k]
    int64)``, best first. ``k`` larger than the corpus or a dimension mismatch is an error."""
    q = as_float_matrix(queries, "queries")
    _check_same_dim(q, index.d)
    if index.ntotal == 0:
        raise ValueError("the index is empty (0 documents): nothing to search")
    _check_k(k, index.ntotal)
    scores, ids = index.search(q, k)
    return torch.from_numpy(scores), torch.from_numpy(ids.astype(np.int64))


def torch_search(queries, corpus, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact search of :func:`search` in plain torch (``topk`` of ``queries @ corpus.T``):
    ``(scores [q, k], ids [q, k])``, the reference for faiss."""
    q = torch.from_numpy(as_float_matrix(queries, "queries"))
    c = torch.from_numpy(as_float_matrix(corpus, "corpus"))
    _check_same_dim(q.numpy(), c.shape[1])
    _check_k(k, c.shape[0])
    scores, ids = torch.topk(q @ c.T, k, dim=1)
    return scores, ids.long()


def search_excluding(index, queries, k: int, exclude: Sequence[int | None]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`search` where query i never returns document ``exclude[i]`` (itself, when the
    query text is also in the corpus). Searches ``k + 1`` and drops that id."""
    if len(exclude) != len(queries):
        raise ValueError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
    _check_k(k, index.ntotal - (1 if any(e is not None for e in exclude) else 0),
             "the corpus without the query itself")
    scores, ids = search(index, queries, min(k + 1, index.ntotal))
    skip = torch.tensor([-2 if e is None else e for e in exclude], dtype=torch.long)
    keep = ids != skip.unsqueeze(1)
    keep &= keep.cumsum(dim=1) <= k  # the first k ids that are not the query itself
    return scores[keep].view(-1, k), ids[keep].view(-1, k)


# --------------------------------------------------------------------------- metrics

def _check_relevant(ids: torch.Tensor, relevant: Sequence) -> list[set[int]]:
    if ids.dim() != 2:
        raise ValueError(f"ids must be [queries, k], got shape {tuple(ids.shape)}")
    if len(relevant) != ids.shape[0]:
        raise ValueError(f"{len(relevant)} relevant sets for {ids.shape[0]} queries")
    sets = [set(int(x) for x in r) if not isinstance(r, int) else {r} for r in relevant]
    empty = [i for i, r in enumerate(sets) if not r]
    if empty:
        raise ValueError(f"queries {empty[:5]} have no relevant document: recall is undefined")
    return sets


def first_relevant_rank(ids: torch.Tensor, relevant: Sequence) -> torch.Tensor:
    """1-based rank [q] (long) of each query's first relevant id in ``ids`` [q, k]; 0 when
    none of the k is relevant. ``relevant``: one id or a set of ids per query."""
    ranks = [next((r for r, doc in enumerate(row, start=1) if doc in rel), 0)
             for row, rel in zip(ids.tolist(), _check_relevant(ids, relevant))]
    return torch.tensor(ranks, dtype=torch.long)


def retrieval_metrics(ids: torch.Tensor, relevant: Sequence, ks: Sequence[int] = (1, 10),
                      mrr_at: int = 10) -> dict[str, float]:
    """``{"recall@k" for k in ks, "mrr@<mrr_at>", "queries"}`` from ranked ``ids`` [q, >= k].

    recall@k: the share of each query's relevant documents among its first k results, averaged
    over queries; MRR@k: mean of 1 / rank of the first relevant result (0 if not in the first
    k). ``ks`` and ``mrr_at`` must not exceed the number of ranked results."""
    sets = _check_relevant(ids, relevant)
    width = ids.shape[1]
    for k in (*ks, mrr_at):
        if k < 1 or k > width:
            raise ValueError(f"cut-off {k} needs 1..{width} ranked results per query")
    rows = ids.tolist()
    out: dict[str, float] = {}
    for k in ks:
        found = [len(sets[i] & set(row[:k])) / len(sets[i]) for i, row in enumerate(rows)]
        out[f"recall@{k}"] = float(np.mean(found))
    ranks = first_relevant_rank(ids[:, :mrr_at], sets)
    reciprocal = torch.where(ranks > 0, 1.0 / ranks.clamp(min=1).double(), 0.0)
    out[f"mrr@{mrr_at}"] = float(reciprocal.mean())
    out["queries"] = len(sets)
    return out


def score_tolerance(queries, corpus) -> float:
    """How far two float32 computations of the same inner products ``queries [q, d] @ corpus
    [n, d].T`` may differ (another summation order, another kernel): ``2 d eps max|q| max|x|``
    (each result is within ``d eps`` times ``sum |q_i x_i| <= |q| |x|`` of the exact value)."""
    q = torch.as_tensor(as_float_matrix(queries, "queries"))
    x = torch.as_tensor(as_float_matrix(corpus, "corpus"))
    eps = torch.finfo(torch.float32).eps
    return float(2 * q.shape[1] * eps * q.norm(dim=1).max() * x.norm(dim=1).max())


def _ids_and_scores(result) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(result, tuple):
        scores, ids = result
        return torch.as_tensor(ids), torch.as_tensor(scores)
    return torch.as_tensor(result), None


def neighbour_recall(approx, exact, tolerance: float = 0.0) -> float:
    """Share of the exact top-k neighbours that an approximate index also returned in its top k.
    ``approx`` and ``exact``: ids [q, k], or the ``(scores, ids)`` of :func:`search`; with
    scores on both sides, a returned id scoring at least the exact k-th score (less
    ``tolerance``, e.g. :func:`score_tolerance`) counts too: ties make ids arbitrary."""
    approx_ids, approx_scores = _ids_and_scores(approx)
    exact_ids, exact_scores = _ids_and_scores(exact)
    if approx_ids.shape != exact_ids.shape:
        raise ValueError(f"approximate ids {tuple(approx_ids.shape)} and exact ids "
                         f"{tuple(exact_ids.shape)} must have the same shape [queries, k]")
    ties = approx_scores is not None and exact_scores is not None
    found = []
    for row, (a, e) in enumerate(zip(approx_ids.tolist(), exact_ids.tolist())):
        hits = set(a) & set(e)
        if ties:
            kth = float(exact_scores[row].min()) - tolerance
            hits |= {i for i, s in zip(a, approx_scores[row].tolist()) if i >= 0 and s >= kth}
        found.append(min(len(hits), len(e)) / len(e))
    return float(np.mean(found))


def queries_per_second(index, queries, k: int, repeats: int = 3) -> float:
    """Search throughput: queries [q, d] / the best of ``repeats`` timed searches."""
    q = as_float_matrix(queries, "queries")
    best = min(_timed(search, index, q, k)[1] for _ in range(max(1, repeats)))
    return len(q) / max(best, 1e-9)


# ---------------------------- the search task: STS-B queries in a corpus of STS-B + NLI sentences

@dataclass
class SearchTask:
    """``corpus`` (distinct sentences), ``queries`` (distinct texts), ``relevant[i]`` = corpus
    ids of query i's relevant documents, ``exclude[i]`` = corpus id of the query's own text
    (never a result). ``parts``: how many corpus sentences each source contributed."""

    lang: str
    corpus: list[str]
    queries: list[str]
    relevant: list[set[int]]
    exclude: list[int | None]
    parts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if not self.corpus:
            raise ValueError("the search corpus is empty")
        if len(self.relevant) != len(self.queries) or len(self.exclude) != len(self.queries):
            raise ValueError("queries, relevant and exclude must have the same length")

    def __repr__(self) -> str:
        return (f"SearchTask({self.lang}: {len(self.corpus)} documents, {len(self.queries)} "
                f"queries, parts {self.parts})")


def search_queries(pairs, min_score: float = 4.0) -> dict[str, list[str]]:
    """``{sentence1: [its partners with score >= min_score]}`` over STS pairs (first-seen
    order; pairs whose two sentences are identical are left out)."""
    out: dict[str, dict[str, None]] = {}
    for p in pairs:
        if p.score >= min_score and p.sentence1 != p.sentence2:
            out.setdefault(p.sentence1, {})[p.sentence2] = None
    return {query: list(partners) for query, partners in out.items()}


def stsb_search_task(lang: str = "en", *, corpus_limit: int | None = None,
                     query_limit: int | None = None) -> SearchTask:
    """The search task of one language: corpus = distinct sentences of STS-B test, then STS-B
    train and dev, then the NLI triplets of ``lang`` (dev + test: premises, entailment and
    contradiction hypotheses), cut at ``corpus_limit`` (the test sentences always stay);
    queries = STS-B test sentence1 with a partner of score >= 4 (first ``query_limit``)."""
    from lacos_helpers import data

    test = data.load_sts(lang, "test")
    queries = search_queries(test)
    if query_limit is not None:
        queries = dict(list(queries.items())[:query_limit])
    parts: dict[str, list[str]] = {"stsb-test": data.sts_sentences(test)}
    for split in ("train", "dev"):
        parts[f"stsb-{split}"] = data.sts_sentences(data.load_sts(lang, split))
    triplets = data.load_nli_triplets(lang, split="devtest")
    parts["nli"] = [s for t in triplets for s in (t.anchor, t.positive, t.hard_negative) if s]
    corpus: dict[str, int] = {}
    counts: dict[str, int] = {}
    for name, sentences in parts.items():
        before = len(corpus)
        for s in sentences:
            if corpus_limit is not None and len(corpus) >= corpus_limit and name != "stsb-test":
                break
            corpus.setdefault(s, len(corpus))
        counts[name] = len(corpus) - before
    texts = list(queries)
    task = SearchTask(lang=lang, corpus=list(corpus), queries=texts,
                      relevant=[{corpus[s] for s in queries[q]} for q in texts],
                      exclude=[corpus.get(q) for q in texts], parts=counts)
    log.info("[search] %s", task)
    return task


def evaluate_search(embed: Callable[[list[str]], torch.Tensor], task: SearchTask, *,
                    kinds: Sequence[str] = ("flat", "ivf", "hnsw"), k: int = 10) -> dict[str, dict]:
    """Run ``task`` with each index kind. ``embed``: sentences -> unit vectors [n, d] (e.g.
    ``EmbeddingCache.embed``). Per kind: recall@1/10 and MRR@10, search queries/s, build
    seconds, index bytes, and (approximate kinds) neighbour recall@k against the exact index.
    Also ``"encode"``: corpus and query embedding seconds and sentences/s."""
    corpus, corpus_seconds = _timed(embed, task.corpus)
    queries, query_seconds = _timed(embed, task.queries)
    results: dict[str, dict] = {}
    exact = None
    for kind in ("flat", *[x for x in kinds if x != "flat"]):
        index, seconds = build_index(kind, corpus)
        scores, ids = search_excluding(index, queries, k, task.exclude)
        row = {**retrieval_metrics(ids, task.relevant, ks=(1, k), mrr_at=k),
               "queries_per_s": queries_per_second(index, queries, k),
               "build_s": seconds, "index_bytes": index_bytes(index)}
        if kind == "flat":
            exact = (scores, ids)
        else:
            row[f"neighbour_recall@{k}"] = neighbour_recall(
                (scores, ids), exact, score_tolerance(queries, corpus))
        if kind in kinds:
            results[kind] = row
    results["encode"] = {"corpus": len(task.corpus), "queries": len(task.queries),
                         "corpus_s": corpus_seconds, "queries_s": query_seconds,
                         "sentences_per_s": (len(task.corpus) + len(task.queries))
                         / max(corpus_seconds + query_seconds, 1e-9)}
    return results


# ------------------------------------------------ bitext mining on the aligned stsb_multi_mt rows

@dataclass
class BitextTask:
    """Find each ``source`` sentence's translation among all ``target`` sentences:
    ``gold[i]`` = target ids that are a translation of source i (a set: two rows can share a
    sentence in one language and not in the other)."""

    source_lang: str
    target_lang: str
    source: list[str]
    target: list[str]
    gold: list[set[int]]

    def reversed(self) -> BitextTask:
        """The same rows, the other direction."""
        gold: list[set[int]] = [set() for _ in self.target]
        for i, targets in enumerate(self.gold):
            for j in targets:
                gold[j].add(i)
        return BitextTask(self.target_lang, self.source_lang, self.target, self.source, gold)


def aligned_sentences(source_rows, target_rows, langs: tuple[str, str]) -> list[tuple[str, str]]:
    """``(source sentence, target sentence)`` of aligned STS rows (sentence1 and sentence2 of
    row i in both languages). Rows of different count are not aligned: an error."""
    if langs[0] == langs[1]:
        raise ValueError(f"bitext mining needs two different languages, got {langs[0]!r} twice")
    if len(source_rows) != len(target_rows):
        raise ValueError(f"{langs[0]} has {len(source_rows)} rows but {langs[1]} has "
                         f"{len(target_rows)}: bitext mining needs aligned rows (row i of one "
                         "language is the translation of row i of the other)")
    out = []
    for a, b in zip(source_rows, target_rows):
        if abs(a.score - b.score) > 1e-6:
            raise ValueError(f"rows are not aligned: scores {a.score} ({langs[0]}) and "
                             f"{b.score} ({langs[1]}) in the same row")
        out += [(a.sentence1, b.sentence1), (a.sentence2, b.sentence2)]
    return out


def bitext_task(source_lang: str, target_lang: str = "en", split: str = "test",
                limit: int | None = None) -> BitextTask:
    """Bitext mining between two languages of stsb_multi_mt (first ``limit`` rows): every
    distinct sentence of the rows in ``source_lang`` is a query, every distinct sentence in
    ``target_lang`` a candidate."""
    from lacos_helpers import data

    pairs = aligned_sentences(data.read_sts(source_lang, split, limit),
                              data.read_sts(target_lang, split, limit),
                              (source_lang, target_lang))
    s_id = {s: i for i, s in enumerate(dict.fromkeys(s for s, _ in pairs))}
    t_id = {t: i for i, t in enumerate(dict.fromkeys(t for _, t in pairs))}
    gold: list[set[int]] = [set() for _ in s_id]
    for s, t in pairs:
        gold[s_id[s]].add(t_id[t])
    return BitextTask(source_lang, target_lang, list(s_id), list(t_id), gold)


def bitext_accuracy(source_emb, target_emb, gold: Sequence[set[int]]) -> float:
    """accuracy@1: share of source rows [n, d] whose nearest target row [m, d] (inner
    product) is one of its translations ``gold[i]``."""
    src = as_float_matrix(source_emb, "source embeddings")
    tgt = as_float_matrix(target_emb, "target embeddings")
    if len(gold) != src.shape[0]:
        raise ValueError(f"{len(gold)} gold sets for {src.shape[0]} source sentences: source "
                         "and gold do not belong together")
    _, ids = search(flat_index(tgt), src, 1)
    return float(np.mean([int(ids[i, 0]) in g for i, g in enumerate(gold)]))


def bitext_scores(embed: Callable[[list[str]], torch.Tensor], task: BitextTask) -> dict:
    """accuracy@1 in both directions: ``{"pair", "forward" (source -> target),
    "backward", "sentences" (source, target counts)}``."""
    src, tgt = embed(task.source), embed(task.target)
    back = task.reversed()
    return {"pair": f"{task.source_lang}-{task.target_lang}",
            "forward": bitext_accuracy(src, tgt, task.gold),
            "backward": bitext_accuracy(tgt, src, back.gold),
            "sentences": (len(task.source), len(task.target))}


def bitext_matrix(embed: Callable[[list[str]], torch.Tensor], langs: Sequence[str],
                  split: str = "test", limit: int | None = None) -> dict[tuple[str, str], float]:
    """accuracy@1 for every ordered pair of different languages: ``{(query language,
    candidate language): accuracy}`` (the heatmap of :func:`plot_crosslingual_heatmap`)."""
    out: dict[tuple[str, str], float] = {}
    langs = list(dict.fromkeys(langs))
    for i, x in enumerate(langs):
        for y in langs[i + 1:]:
            scores = bitext_scores(embed, bitext_task(x, y, split, limit))
            out[(x, y)], out[(y, x)] = scores["forward"], scores["backward"]
    return out
