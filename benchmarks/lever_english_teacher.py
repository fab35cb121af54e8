"""Lever trial (issue 28): the `cpu` recipe plus self-distillation to English.

    python benchmarks/lever_english_teacher.py --out runs/teacher --steps 128 --weight 10
    python benchmarks/bench_levers.py --reference runs/base --candidate runs/teacher

Multilingual distillation (Reimers & Gurevych 2020) maps a translation onto a teacher's embedding
of the English sentence. Here the teacher is the run itself: for up to ``--per-batch`` non-English
XNLI sentences of each batch (anchors, positives, hard negatives), the English sentence of the same
aligned XNLI row is embedded without a graph, and ``weight * mean(1 - cos(student, teacher))`` is
added to the batch's MNR loss. Only the translation moves towards English, never the reverse. The
objective goes in through ``training.train(objective=...)``; everything else is the recipe
(same data, batches, seed), so the run compares with a plain `cpu` run of the same steps.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lacos_helpers import config, data, runtime, training
from lacos_helpers.data import nli, sources
from lacos_helpers.encoder.losses.triplet_mnr import embed_triplets, triplet_mnr_loss


def english_of(cfg: config.RunConfig, source: str) -> dict[str, str]:
    """{non-English XNLI sentence: the English sentence of the same row and role}, for the
    run's training languages (XNLI rows are aligned across languages)."""
    if "en" not in cfg.data.train_langs:
        raise ValueError("the English teacher needs 'en' among data.train_langs")
    parts = nli.aligned_xnli_triplets(cfg.data.train_langs, split=cfg.data.nli_split,
                                      source=source)
    out: dict[str, str] = {}
    for lang, part in parts.items():
        if lang == "en":
            continue
        for row, english in zip(part, parts["en"]):
            for sentence, target in zip(row, english):
                if sentence and target:
                    out.setdefault(sentence, target)
    return out


class EnglishTeacherMNR:
    """MNR loss of the batch + ``weight`` x mean(1 - cos) between up to ``per_batch`` of its
    non-English sentences and their English sentences embedded under ``no_grad``."""

    def __init__(self, english: dict[str, str], weight: float, per_batch: int, seed: int = 0):
        self.english, self.weight, self.per_batch = english, weight, per_batch
        self.rng = random.Random(seed)
        self.terms: list[float] = []

    def __call__(self, encoder, batch, train, forward_context):
        batch = list(batch)
        with forward_context():
            emb = embed_triplets(encoder, batch, train.hard_negatives)  # [roles, b, d]
        loss = triplet_mnr_loss(emb, train.scale, train.symmetric)
        texts = [t[role] for role in range(emb.shape[0]) for t in batch]
        rows = [i for i, s in enumerate(texts) if s in self.english]
        rows = sorted(self.rng.sample(rows, min(self.per_batch, len(rows))))
        if not rows:
            return loss
        with torch.no_grad(), forward_context():
            teacher = encoder.embed([self.english[texts[i]] for i in rows]).float()
        student = emb.reshape(-1, emb.shape[-1])[rows].float()
        term = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
        self.terms.append(term.item())
        return loss + self.weight * term


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--weight", type=float, default=10.0)
    parser.add_argument("--per-batch", type=int, default=32)
    args = parser.parse_args()
    runtime.show_logs()
    cfg = config.load_profile("cpu", train={"steps": args.steps, "eval_every": args.steps,
                                            "warmup_steps": max(1, args.steps // 10)})
    runtime.seed_everything(cfg.seed)
    source = sources.resolve_source(sources.DataPolicy.of(cfg.data))
    triplets = data.run_triplets(cfg.data, cfg.seed, source)
    dev = data.load_sts("en", "dev", source=source)
    objective = EnglishTeacherMNR(english_of(cfg, source), args.weight, args.per_batch)
    print(f"{len(objective.english):,} sentences with an English teacher")
    encoder = training.build_encoder(cfg, texts=data.training_texts(triplets))
    start = time.perf_counter()
    result = training.train(cfg, encoder, triplets, out_dir=args.out, dev_pairs=dev,
                            objective=objective)
    seconds = time.perf_counter() - start
    terms = objective.terms or [float("nan")]
    print(json.dumps({"steps": result.step, "seconds": round(seconds, 1),
                      "s_per_step": round(seconds / max(1, result.step), 2),
                      "dev_en_after": result.evals[-1]["spearman"],
                      "teacher_term_first_16": statistics.fmean(terms[:16]),
                      "teacher_term_last_16": statistics.fmean(terms[-16:])}))


if __name__ == "__main__":
    main()
