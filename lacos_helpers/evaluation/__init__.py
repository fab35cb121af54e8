"""STS evaluation: cosine similarity of sentence embeddings vs gold scores (Spearman, Pearson).

Also search and bitext mining (``retrieval``), clustering (``clustering``) and the MTEB harness
(``mteb_harness``), imported on their own (they need faiss / mteb).
"""

from lacos_helpers.evaluation.diagnostics import largest_errors, random_pair_cosines
from lacos_helpers.evaluation.embeddings import EmbeddingCache
from lacos_helpers.evaluation.metrics import average_ranks, pearson, spearman, sts_metrics
from lacos_helpers.evaluation.reference import PUBLISHED_MULTILINGUAL_MPNET, PUBLISHED_STSB_TEST
from lacos_helpers.evaluation.sts import (
    CROSSLINGUAL_LANGS,
    compare_tables,
    cosine_scores,
    crosslingual_matrix,
    crosslingual_table,
    evaluate_sts,
    sts_table,
)
from lacos_helpers.evaluation.tables import METRICS, STSTable

__all__ = [
    "CROSSLINGUAL_LANGS",
    "METRICS",
    "PUBLISHED_MULTILINGUAL_MPNET",
    "PUBLISHED_STSB_TEST",
    "EmbeddingCache",
    "STSTable",
    "average_ranks",
    "compare_tables",
    "cosine_scores",
    "crosslingual_matrix",
    "crosslingual_table",
    "evaluate_sts",
    "largest_errors",
    "pearson",
    "random_pair_cosines",
    "spearman",
    "sts_metrics",
    "sts_table",
]
