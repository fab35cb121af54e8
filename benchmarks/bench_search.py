"""What the embeddings are for, measured on full test sets for one run: untrained vs trained,
side by side (chapter 6's numbers at full size).

- semantic search in one language: all distinct STS-B (train, dev, test) and NLI sentences as
  the corpus, STS-B test sentence1 with a gold partner (score >= 4) as queries; recall@1/10,
  MRR@10 with the exact index, then exact vs IVF vs HNSW (build time, memory, queries/s,
  neighbour recall@10 against exact) on the trained embeddings;
- bitext mining on all aligned STS-B test rows: X -> en and en -> X accuracy@1 for every
  language of the run, and the mean of the full language x language matrix;
- clustering: STS-B test sentence1 of all rows in every language, k-means with k = 3 scored
  against the genre (V-measure, NMI) and with k = #languages against the language.

Prints markdown tables (and writes them to --out).

    python benchmarks/bench_search.py --run runs/cpu --lang de      # ~30 min on 2 cores (Gemma)
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path


def encoders(run: str):
    """``{"untrained": ..., "trained": ...}`` sharing one backbone load."""
    from lacos_helpers import lora, training

    untrained = training.load_encoder(run, trained=False)
    trained = copy.deepcopy(untrained)
    lora.load_adapter(trained.backbone, training.run_adapter_dir(run))
    return {"untrained": untrained, "trained": trained.eval()}


def search_table(caches, lang: str) -> tuple[str, str]:
    from lacos_helpers.evaluation import retrieval

    task = retrieval.stsb_search_task(lang)
    results = {name: retrieval.evaluate_search(cache.embed, task) for name, cache in caches.items()}
    head = (f"Semantic search, {lang}: {len(task.corpus):,} documents "
            f"({', '.join(f'{k} {v:,}' for k, v in task.parts.items())}), "
            f"{len(task.queries)} queries, exact inner-product index\n\n"
            "| model | recall@1 | recall@10 | MRR@10 | embedding sentences/s |\n"
            "|---|---:|---:|---:|---:|\n")
    rows = [f"| {name} | {100 * r['flat']['recall@1']:.1f} | {100 * r['flat']['recall@10']:.1f} "
            f"| {100 * r['flat']['mrr@10']:.1f} | {r['encode']['sentences_per_s']:.1f} |"
            for name, r in results.items()]
    trained = results["trained"]
    index_head = ("| index (trained embeddings) | build s | MB | queries/s | neighbour recall@10 "
                  "| recall@10 | speed vs exact |\n|---|---:|---:|---:|---:|---:|---:|\n")
    exact_qps = trained["flat"]["queries_per_s"]
    index_rows = [f"| {kind} | {r['build_s']:.3f} | {r['index_bytes'] / 2**20:.1f} | "
                  f"{r['queries_per_s']:,.0f} | {100 * r.get('neighbour_recall@10', 1.0):.1f} | "
                  f"{100 * r['recall@10']:.1f} | {r['queries_per_s'] / exact_qps:.2f}x |"
                  for kind, r in trained.items() if kind != "encode"]
    return head + "\n".join(rows), index_head + "\n".join(index_rows)


def bitext_table(caches, langs) -> str:
    from lacos_helpers.evaluation import retrieval

    others = [x for x in langs if x != "en"]
    scores = {name: {x: retrieval.bitext_scores(cache.embed, retrieval.bitext_task(x, "en"))
                     for x in others} for name, cache in caches.items()}
    matrix = {name: retrieval.bitext_matrix(cache.embed, langs) for name, cache in caches.items()}
    head = ("Bitext mining, all STS-B test rows (accuracy@1 x100; candidates: every distinct "
            "test sentence of the other language)\n\n| direction | model | "
            + " | ".join(others) + " | mean |\n|---|---|" + "---:|" * (len(others) + 1) + "\n")
    rows = []
    for key, label in (("forward", "X -> en"), ("backward", "en -> X")):
        for name in caches:
            values = [100 * scores[name][x][key] for x in others]
            rows.append(f"| {label} | {name} | " + " | ".join(f"{v:.1f}" for v in values)
                        + f" | {sum(values) / len(values):.1f} |")
    means = ", ".join(f"{name} {100 * sum(m.values()) / len(m):.1f}" for name, m in matrix.items())
    return head + "\n".join(rows) + f"\n\nAll {len(langs)} x {len(langs) - 1} ordered language " \
                                    f"pairs, mean accuracy@1 x100: {means}"


def clustering_table(caches, langs) -> str:
    from lacos_helpers.evaluation import clustering

    labelled = clustering.stsb_genre_set(langs)
    head = (f"Clustering, STS-B test sentence1 of all rows in {len(langs)} languages "
            f"({len(labelled):,} sentences), k-means (faiss, spherical), x100\n\n"
            "| model | genre within each language: V-measure (mean) | NMI (mean) | "
            + " | ".join(langs) + " | all languages pooled: V-measure genre (k=3) | V-measure "
            f"language (k={len(set(labelled.langs))}) |\n|---|" + "---:|" * (len(langs) + 4)
            + "\n")
    rows = []
    for name, cache in caches.items():
        x = cache.embed(labelled.sentences)
        per_lang = clustering.clustering_scores_by_group(x, labelled.labels, labelled.langs)
        genre = clustering.clustering_scores(x, labelled.labels)
        lang = clustering.clustering_scores(x, labelled.langs)
        rows.append(f"| {name} | {100 * per_lang['mean']['v_measure']:.1f} | "
                    f"{100 * per_lang['mean']['nmi']:.1f} | "
                    + " | ".join(f"{100 * per_lang[x]['v_measure']:.1f}" for x in langs)
                    + f" | {100 * genre['v_measure']:.1f} | {100 * lang['v_measure']:.1f} |")
    return head + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished run directory")
    parser.add_argument("--lang", default="de", help="language of the search corpus")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    parser.add_argument("--parts", default="search,bitext,clustering",
                        help="comma-separated subset of search,bitext,clustering")
    args = parser.parse_args()
    from lacos_helpers import evaluation, runtime, training

    runtime.show_logs()
    cfg = training.load_run_config(args.run)
    start = time.perf_counter()
    caches = {name: evaluation.EmbeddingCache(enc, batch_size=64, show_progress=False)
              for name, enc in encoders(args.run).items()}
    parts = [f"Run `{args.run}` (profile {cfg.name}, {cfg.model.label}, {cfg.train.steps} steps "
             f"x {cfg.train.batch_size}, pooling {cfg.encoder.pooling})"]
    chosen = set(args.parts.split(","))
    if "search" in chosen:
        parts += list(search_table(caches, args.lang))
    if "bitext" in chosen:
        parts.append(bitext_table(caches, cfg.eval.langs))
    if "clustering" in chosen:
        parts.append(clustering_table(caches, cfg.eval.langs))
    parts.append(f"({time.perf_counter() - start:.0f} s in all, "
                 f"{len(caches['trained'])} distinct sentences embedded per model)")
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
