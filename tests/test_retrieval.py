"""lacos_helpers.evaluation.retrieval: faiss indexes against torch top-k, the metrics against a
brute-force reference, the search and bitext tasks on the data, and clear errors for bad
input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lacos_helpers.data import STSPair
from lacos_helpers.evaluation import retrieval


def unit_vectors(n: int, d: int = 32, seed: int = 0, centers: int = 0) -> torch.Tensor:
    """n random unit vectors [n, d]; with ``centers`` > 0, grouped around that many centres
    (the shape real embeddings have: clusters)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    if centers:
        middle = torch.randn(centers, d, generator=gen) * 3
        x = x + middle[torch.randint(0, centers, (n,), generator=gen)]
    return torch.nn.functional.normalize(x, dim=1)


# -- exact search ------------------------------------------------------------------------------

@pytest.mark.parametrize("n,k", [(500, 10), (64, 64), (1000, 1)])
def test_faiss_exact_index_equals_torch_topk(n, k):
    corpus, queries = unit_vectors(n, seed=1), unit_vectors(40, seed=2)
    scores, ids = retrieval.search(retrieval.flat_index(corpus), queries, k)
    ref_scores, ref_ids = retrieval.torch_search(queries, corpus, k)
    assert ids.dtype == torch.long and ids.shape == (40, k)
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(scores, ref_scores, rtol=0, atol=1e-5)


def test_search_excluding_drops_the_query_itself():
    corpus = unit_vectors(200, seed=3)
    queries = corpus[:20]  # each query is also a document: its own best hit
    exclude = list(range(20))
    index = retrieval.flat_index(corpus)
    _, plain = retrieval.search(index, queries, 5)
    assert plain[:, 0].tolist() == exclude
    _, ids = retrieval.search_excluding(index, queries, 5, exclude)
    sims = queries @ corpus.T
    sims[range(20), exclude] = -float("inf")
    assert torch.equal(ids, sims.topk(5, dim=1).indices)
    _, none_excluded = retrieval.search_excluding(index, queries, 5, [None] * 20)
    assert torch.equal(none_excluded, plain)


# -- metrics against a brute-force reference ---------------------------------------------------

def brute_force_metrics(queries, corpus, relevant, exclude, k=10):
    """Rank every document for every query with plain Python; recall@1, recall@k, MRR@k."""
    recall1, recallk, rr = [], [], []
    for i, q in enumerate(queries.tolist()):
        sims = [(sum(a * b for a, b in zip(q, doc)), j) for j, doc in enumerate(corpus.tolist())
                if j != exclude[i]]
        order = [j for _, j in sorted(sims, key=lambda t: -t[0])]
        rank = {doc: r for r, doc in enumerate(order, start=1)}
        ranks = sorted(rank[doc] for doc in relevant[i])
        recall1.append(sum(r <= 1 for r in ranks) / len(ranks))
        recallk.append(sum(r <= k for r in ranks) / len(ranks))
        rr.append(1 / ranks[0] if ranks[0] <= k else 0.0)
    return {"recall@1": np.mean(recall1), f"recall@{k}": np.mean(recallk),
            f"mrr@{k}": np.mean(rr)}


def test_retrieval_metrics_match_a_brute_force_reference():
    corpus = unit_vectors(150, d=16, seed=4, centers=6)
    queries = corpus[:30] + 0.3 * unit_vectors(30, d=16, seed=6)
    exclude = [i if i % 3 else None for i in range(30)]
    sims = queries @ corpus.T
    for i, skip in enumerate(exclude):
        if skip is not None:
            sims[i, skip] = -float("inf")
    order = sims.argsort(dim=1, descending=True)
    gen = torch.Generator().manual_seed(5)
    relevant = []
    for i in range(30):  # a document at rank 1..12, sometimes with a second, random one
        docs = {int(order[i, i % 12])}
        if i % 4 == 0:
            docs.add(int(order[i, int(torch.randint(0, 140, (1,), generator=gen))]))
        relevant.append(docs)
    _, ids = retrieval.search_excluding(retrieval.flat_index(corpus), queries, 10, exclude)
    ours = retrieval.retrieval_metrics(ids, relevant, ks=(1, 10), mrr_at=10)
    reference = brute_force_metrics(queries, corpus, relevant, exclude)
    assert ours["queries"] == 30
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert 0 < ours["recall@1"] < ours["recall@10"] < 1  # the set is neither trivial nor hopeless


def test_first_relevant_rank_by_hand():
    ids = torch.tensor([[4, 2, 9], [1, 2, 3], [7, 8, 5]])
    ranks = retrieval.first_relevant_rank(ids, [{9, 2}, 5, {5}])
    assert ranks.tolist() == [2, 0, 3]
    metrics = retrieval.retrieval_metrics(ids, [{9, 2}, 5, {5}], ks=(1, 3), mrr_at=3)
    assert metrics["recall@1"] == 0
    assert metrics["recall@3"] == pytest.approx((2 / 2 + 0 + 1) / 3)
    assert metrics["mrr@3"] == pytest.approx((1 / 2 + 0 + 1 / 3) / 3)


# -- approximate indexes -----------------------------------------------------------------------

def test_ivf_scanning_every_cell_is_exact_and_fewer_cells_lose_little():
    corpus, queries = unit_vectors(2000, seed=7, centers=20), unit_vectors(50, seed=8, centers=20)
    _, exact = retrieval.search(retrieval.flat_index(corpus), queries, 10)
    nlist = retrieval.default_nlist(2000)
    _, all_cells = retrieval.search(retrieval.ivf_index(corpus, nlist, nprobe=nlist), queries, 10)
    assert retrieval.neighbour_recall(all_cells, exact) == 1.0
    _, one_cell = retrieval.search(retrieval.ivf_index(corpus, nlist, nprobe=1), queries, 10)
    assert 0.2 < retrieval.neighbour_recall(one_cell, exact) < 1.0


def test_hnsw_recall_grows_with_ef_search():
    corpus, queries = unit_vectors(3000, seed=9, centers=30), unit_vectors(100, seed=10)
    _, exact = retrieval.search(retrieval.flat_index(corpus), queries, 10)
    recalls = []
    for ef in (10, 200):
        index = retrieval.hnsw_index(corpus, m=8, ef_search=ef)
        recalls.append(retrieval.neighbour_recall(retrieval.search(index, queries, 10)[1], exact))
    assert recalls[0] < recalls[1] and recalls[1] >= 0.95


def test_neighbour_recall_by_hand():
    exact = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = torch.tensor([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert retrieval.neighbour_recall(approx, exact) == pytest.approx((2 / 4 + 1) / 2)


def test_build_index_reports_time_and_memory():
    corpus = unit_vectors(400, d=24, seed=11)
    flat, seconds = retrieval.build_index("flat", corpus)
    assert seconds >= 0 and flat.ntotal == 400
    assert retrieval.index_bytes(flat) >= 400 * 24 * 4  # the vectors themselves, float32
    hnsw, _ = retrieval.build_index("hnsw", corpus, m=16)
    assert retrieval.index_bytes(hnsw) > retrieval.index_bytes(flat)  # vectors + graph
    assert retrieval.queries_per_second(flat, corpus[:50], 5) > 0


# -- bad input ---------------------------------------------------------------------------------

def test_empty_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="corpus is empty"):
        retrieval.flat_index(torch.empty(0, 8))
    with pytest.raises(ValueError, match="empty"):
        retrieval.SearchTask("en", corpus=[], queries=[], relevant=[], exclude=[])


def test_k_larger_than_the_corpus_is_a_clear_error():
    corpus = unit_vectors(5, d=8)
    with pytest.raises(ValueError, match=r"k=6 is larger than the corpus \(5 documents\)"):
        retrieval.search(retrieval.flat_index(corpus), corpus[:1], 6)
    with pytest.raises(ValueError, match="k=6 is larger"):
        retrieval.torch_search(corpus[:1], corpus, 6)
    with pytest.raises(ValueError, match="without the query itself"):
        retrieval.search_excluding(retrieval.flat_index(corpus), corpus[:1], 5, [0])
    with pytest.raises(ValueError, match="positive int"):
        retrieval.search(retrieval.flat_index(corpus), corpus[:1], 0)


def test_other_bad_input_is_named():
    corpus = unit_vectors(10, d=8)
    index = retrieval.flat_index(corpus)
    with pytest.raises(ValueError, match="queries have d=4 but the corpus has d=8"):
        retrieval.search(index, unit_vectors(2, d=4), 3)
    bad = corpus.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf values in 1 rows"):
        retrieval.flat_index(bad)
    with pytest.raises(ValueError, match="matrix"):
        retrieval.flat_index(torch.ones(8))
    with pytest.raises(ValueError, match="no relevant document"):
        retrieval.retrieval_metrics(torch.tensor([[1, 2]]), [set()], ks=(1,), mrr_at=2)
    with pytest.raises(ValueError, match="cut-off 10 needs 1..2"):
        retrieval.retrieval_metrics(torch.tensor([[1, 2]]), [{1}])
    with pytest.raises(ValueError, match="unknown index kind 'lsh'"):
        retrieval.build_index("lsh", corpus)


def test_mismatched_languages_are_clear_errors():
    rows = [STSPair("a", "b", 1.0), STSPair("c", "d", 2.0)]
    with pytest.raises(ValueError, match="de has 2 rows but en has 1: .*aligned"):
        retrieval.aligned_sentences(rows, rows[:1], ("de", "en"))
    with pytest.raises(ValueError, match="two different languages"):
        retrieval.aligned_sentences(rows, rows, ("en", "en"))
    with pytest.raises(ValueError, match="not aligned"):
        retrieval.aligned_sentences(rows, [rows[1], rows[0]], ("de", "en"))
    with pytest.raises(ValueError, match="3 gold sets for 2 source sentences"):
        retrieval.bitext_accuracy(unit_vectors(2), unit_vectors(4), [{0}, {1}, {2}])
    with pytest.raises(ValueError, match="unknown STS language|STS language"):
        retrieval.bitext_task("xx", "en")


# -- the tasks on the data ---------------------------------------------------------------------

def test_search_queries_group_partners_and_skip_identical_pairs():
    pairs = [STSPair("q1", "d1", 4.5), STSPair("q1", "d2", 4.0), STSPair("q2", "d3", 3.9),
             STSPair("q3", "q3", 5.0), STSPair("q1", "d1", 4.8)]
    assert retrieval.search_queries(pairs) == {"q1": ["d1", "d2"]}


@pytest.mark.parametrize("source", ["local", "generated"])
def test_stsb_search_task_links_queries_to_their_partners(source, request):
    request.getfixturevalue("shared_data" if source == "local" else "generated")
    from lacos_helpers import data

    task = retrieval.stsb_search_task("de", corpus_limit=3000, query_limit=50)
    test = data.load_sts("de", "test")
    partners = retrieval.search_queries(test)
    assert len(task.corpus) == len(set(task.corpus))
    assert len(task.queries) == min(50, len(partners)) and task.queries[0] == next(iter(partners))
    for query, docs, own in zip(task.queries, task.relevant, task.exclude):
        assert {task.corpus[j] for j in docs} == set(partners[query])
        assert task.corpus[own] == query
    assert task.parts["stsb-test"] == len(data.sts_sentences(test))
    assert len(task.corpus) <= max(3000, task.parts["stsb-test"])


def test_full_german_search_corpus_has_tens_of_thousands_of_sentences(shared_data):
    task = retrieval.stsb_search_task("de")
    assert len(task.corpus) > 20_000 and task.parts["nli"] > 5_000
    assert len(task.queries) > 250


def row_encoder(task: retrieval.BitextTask):
    """An oracle: a sentence's embedding is the one-hot of its (first) aligned position, in
    either language, so translations coincide exactly."""
    position = {}
    for i, s in enumerate(task.source):
        position.setdefault(s, i)
    for i, targets in enumerate(task.gold):
        for j in targets:
            position.setdefault(task.target[j], i)
    size = len(task.source)

    def embed(sentences):
        return torch.nn.functional.one_hot(torch.tensor([position[s] for s in sentences]),
                                           size).float()

    return embed


def test_bitext_task_and_accuracy(generated):
    task = retrieval.bitext_task("de", "en", limit=40)
    assert len(task.gold) == len(task.source) and all(task.gold)
    back = task.reversed()
    assert back.source == task.target and back.reversed().gold == task.gold
    scores = retrieval.bitext_scores(row_encoder(task), task)
    assert scores["pair"] == "de-en" and scores["forward"] == 1.0 and scores["backward"] == 1.0
    noise = torch.nn.functional.normalize(torch.randn(len(task.target), 8), dim=1)
    chance = retrieval.bitext_accuracy(
        torch.nn.functional.normalize(torch.randn(len(task.source), 8), dim=1), noise, task.gold)
    assert chance < 0.3


def test_bitext_matrix_covers_every_ordered_pair(generated):
    def embed(sentences):  # meaningless but deterministic
        gen = torch.Generator().manual_seed(len(sentences))
        return torch.nn.functional.normalize(torch.randn(len(sentences), 16, generator=gen),
                                             dim=1)

    matrix = retrieval.bitext_matrix(embed, ["en", "de", "fr"], limit=20)
    assert set(matrix) == {(x, y) for x in ("en", "de", "fr") for y in ("en", "de", "fr")
                           if x != y}
    assert all(0 <= v <= 1 for v in matrix.values())


def test_evaluate_search_reports_every_index(generated):
    task = retrieval.stsb_search_task("en", corpus_limit=800, query_limit=40)
    gen = torch.Generator().manual_seed(0)
    table = {s: torch.randn(16, generator=gen) for s in task.corpus}

    def embed(sentences):
        return torch.nn.functional.normalize(torch.stack([table[s] for s in sentences]), dim=1)

    results = retrieval.evaluate_search(embed, task, kinds=("flat", "ivf", "hnsw"), k=10)
    assert set(results) == {"flat", "ivf", "hnsw", "encode"}
    _, ids = retrieval.search_excluding(retrieval.flat_index(embed(task.corpus)),
                                        embed(task.queries), 10, task.exclude)
    reference = retrieval.retrieval_metrics(ids, task.relevant)
    for key in ("recall@1", "recall@10", "mrr@10"):
        assert results["flat"][key] == pytest.approx(reference[key])
    for kind in ("ivf", "hnsw"):
        assert 0 <= results[kind]["neighbour_recall@10"] <= 1
        assert results[kind]["build_s"] >= 0 and results[kind]["index_bytes"] > 0
    assert results["encode"]["corpus"] == len(task.corpus)


# -- the chapter-6 exercise checkers -----------------------------------------------------------

def good_mrr(ids, relevant):
    total = 0.0
    for row, rel in zip(ids.tolist(), relevant):
        total += next((1 / r for r, doc in enumerate(row, start=1) if doc in rel), 0.0)
    return total / len(relevant)


def zero_based_mrr(ids, relevant):
    total = 0.0
    for row, rel in zip(ids.tolist(), relevant):
        total += next((1 / (r + 1.5) for r, doc in enumerate(row) if doc in rel), 0.0)
    return total / len(relevant)


def good_bitext(source, target, gold):
    best = (source @ target.T).argmax(dim=1).tolist()
    return sum(b in g for b, g in zip(best, gold)) / len(gold)


def transposed_bitext(source, target, gold):
    best = (source @ target.T).argmax(dim=0).tolist()
    return sum(b in g for b, g in zip(best, gold)) / len(gold)


def test_exercise_checkers_accept_solutions_and_explain_mistakes():
    from lacos_helpers.course import exercises

    assert exercises.check_mrr(good_mrr)
    assert exercises.check_bitext_accuracy(good_bitext)
    with pytest.raises(AssertionError, match="ranks start at 1"):
        exercises.check_mrr(zero_based_mrr)
    with pytest.raises(AssertionError, match="argmax over targets"):
        exercises.check_bitext_accuracy(transposed_bitext)


# -- the chapter-6 figures ---------------------------------------------------------------------

def test_chapter6_figures_draw_and_reject_bad_input():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lacos_helpers.course import plotting

    fig = plotting.plot_grouped_bars({"untrained": {"recall@1": 0.2, "mrr@10": 0.3},
                                      "LACoS": {"recall@1": 0.5, "mrr@10": 0.6}}, "score")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["recall@1", "mrr@10"]
    assert len(fig.axes[0].patches) == 4
    fig = plotting.plot_recall_speed({"IVF": [(1, 0.5, 1e5), (8, 0.99, 2e4)]}, exact_qps=1e4)
    assert fig.axes[0].get_xscale() == "log"
    fig = plotting.plot_heatmaps({"a": {("de", "en"): 0.5, ("en", "de"): 0.25}})
    image = fig.axes[0].images[0].get_array()
    assert image[0, 1] == 50 and image[1, 0] == 25 and image.mask[0, 0]
    xy = torch.randn(6, 2)
    fig = plotting.plot_projections({"m": xy}, {"genre": list("aabbcc"), "lang": list("xyxyxy")})
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="3 labels for 6 points"):
        plotting.plot_projections({"m": xy}, {"genre": list("abc")})
    with pytest.raises(ValueError, match="at least one"):
        plotting.plot_grouped_bars({}, "score")
    plt.close("all")


def test_neighbour_recall_counts_ties_when_scores_are_given():
    """Equal embeddings (the generated data has many) tie: the ids an index returns among equal
    scores are arbitrary, so an exhaustive IVF scan may return other ids than the flat index."""
    exact = (torch.tensor([[0.9, 0.5, 0.5]]), torch.tensor([[1, 2, 3]]))
    other_tie = (torch.tensor([[0.9, 0.5, 0.5]]), torch.tensor([[1, 2, 4]]))
    assert retrieval.neighbour_recall(other_tie[1], exact[1]) == pytest.approx(2 / 3)
    assert retrieval.neighbour_recall(other_tie, exact) == 1.0
    below = (torch.tensor([[0.9, 0.5, 0.4]]), torch.tensor([[1, 2, 4]]))
    assert retrieval.neighbour_recall(below, exact) == pytest.approx(2 / 3)
    assert retrieval.neighbour_recall(below, exact, tolerance=0.2) == 1.0


def test_exhaustive_ivf_on_duplicated_documents_is_exact_up_to_ties():
    base = unit_vectors(300, seed=12, centers=10)
    corpus = torch.cat([base, base, base])  # every document three times: ties everywhere
    queries = unit_vectors(40, seed=13, centers=10)
    exact = retrieval.search(retrieval.flat_index(corpus), queries, 10)
    nlist = retrieval.default_nlist(len(corpus))
    found = retrieval.search(retrieval.ivf_index(corpus, nlist, nprobe=nlist), queries, 10)
    tolerance = retrieval.score_tolerance(queries, corpus)
    torch.testing.assert_close(found[0], exact[0], rtol=0, atol=tolerance)
    assert retrieval.neighbour_recall(found, exact, tolerance) == 1.0


def test_score_tolerance_is_the_float32_summation_bound():
    q, x = np.ones((2, 100), np.float32), np.full((3, 100), 0.5, np.float32)
    eps = float(np.finfo(np.float32).eps)
    assert retrieval.score_tolerance(q, x) == pytest.approx(2 * 100 * eps * 10 * 5)
