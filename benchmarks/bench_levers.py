"""Two trained runs compared on dev, paired (issue 28: each lever chosen on dev).

    python benchmarks/bench_levers.py --reference runs/base --candidate runs/xling [--split dev]

For each run: STS-B Spearman in every STS language, cross-lingual X-en, and bitext accuracy@1
X -> en, all on the same rows. Every delta (candidate - reference) gets a paired bootstrap
95% interval; so do the two means (10 languages, X-en), drawing the *same* rows for every
language in each resample (the rows are aligned across languages). Test splits only once a
lever is chosen: model selection reads dev.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lacos_helpers import evaluation, training
from lacos_helpers.data.layout import STS_LANGS
from lacos_helpers.evaluation import metrics, retrieval

RESAMPLES = 1000


def _scores(run: Path, split: str, limit: int | None) -> dict:
    """Per-row STS predictions + gold (labels "en", "de-en", ...) and bitext accuracy@1."""
    encoder = training.load_encoder(run)
    cache = evaluation.EmbeddingCache(encoder, batch_size=64)
    others = [lang for lang in STS_LANGS if lang != "en"]
    mono = evaluation.sts_table(cache, STS_LANGS, split=split, limit=limit)
    cross = evaluation.crosslingual_table(cache, others, split=split, limit=limit)
    bitext = {}
    for lang in others:
        task = retrieval.bitext_task(lang, "en", split=split, limit=limit)
        bitext[lang] = retrieval.bitext_scores(cache.embed, task)["forward"]
    return {"scores": {**mono.scores, **cross.scores}, "bitext": bitext}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path)
    parser.add_argument("--candidate", required=True, type=Path)
    parser.add_argument("--split", default="dev", choices=("dev", "test"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    ref = _scores(args.reference, args.split, args.limit)
    cand = _scores(args.candidate, args.split, args.limit)
    lines = [f"| row | {args.reference.name} | {args.candidate.name} | delta [95% paired] |",
             "|---|---|---|---|"]
    result: dict = {"split": args.split, "rows": {}, "bitext": {}}
    for label, (pred_r, gold) in ref["scores"].items():
        pred_c = cand["scores"][label][0]
        d = metrics.paired_bootstrap_difference(pred_c, pred_r, gold, resamples=RESAMPLES)
        r, c = metrics.spearman(pred_r, gold), metrics.spearman(pred_c, gold)
        result["rows"][label] = {"reference": r, "candidate": c, **d}
        lines.append(f"| {label} | {100 * r:.2f} | {100 * c:.2f} | {100 * d['delta']:+.2f} "
                     f"[{100 * d['low']:+.2f}, {100 * d['high']:+.2f}] |")
    cross_labels = [label for label in ref["scores"] if "-" in label]
    for name, labels in (("mean 10 languages", list(STS_LANGS)), ("mean X-en", cross_labels)):
        m = metrics.paired_bootstrap_mean_difference(
            [cand["scores"][label][0] for label in labels],
            [ref["scores"][label][0] for label in labels],
            [ref["scores"][label][1] for label in labels], resamples=RESAMPLES)
        result[name] = m
        lines.append(f"| **{name}** | | | {100 * m['delta']:+.2f} "
                     f"[{100 * m['low']:+.2f}, {100 * m['high']:+.2f}] |")
    for lang, acc in ref["bitext"].items():
        result["bitext"][lang] = {"reference": acc, "candidate": cand["bitext"][lang]}
    lines.append("\nbitext accuracy@1 X -> en (reference -> candidate): " + ", ".join(
        f"{lang} {100 * acc:.1f} -> {100 * cand['bitext'][lang]:.1f}"
        for lang, acc in ref["bitext"].items()))
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
