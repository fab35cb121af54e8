"""The ``train`` and ``evaluate`` commands of ``python -m lacos_helpers``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lacos_helpers import config, data, env, training


def _split_langs(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(code.strip() for code in value.split(",") if code.strip())


def _profile_for_train(args) -> config.Profile:
    overrides = {}
    if args.pooling:
        overrides["pooling"] = args.pooling
    if args.gradient_checkpointing:
        overrides["gradient_checkpointing"] = True
    if args.langs:
        overrides["train_langs"] = _split_langs(args.langs)
    if args.limit is not None:
        overrides["nli_limit"] = args.limit
    return config.load_profile(args.profile, **overrides)


def train_command(args) -> int:
    """Load data and model for the profile, train (resuming if possible), evaluate STS-B en dev
    before and after, write ``train_summary.json`` into the run directory."""
    env.quiet()
    cfg = _profile_for_train(args)
    env.seed_everything(cfg.seed)
    print(cfg.summary())
    out = Path(args.out)
    triplets = data.load_nli_triplets(cfg.train_langs, limit=cfg.nli_limit, seed=cfg.seed)
    dev = data.load_sts("en", "dev", limit=cfg.sts_limit)
    encoder = training.build_encoder(cfg)
    steps = args.steps or cfg.train_steps
    summary_path = out / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() and \
        not args.no_resume else {}
    if "dev_spearman_before" not in summary:
        from lacos_helpers.evaluation import evaluate_sts

        before = evaluate_sts(encoder, dev, batch_size=cfg.eval_batch_size)
        summary["dev_spearman_before"] = before["spearman"]
        _write_summary(summary_path, summary)  # a resumed run skips this evaluation
        print(f"[eval] before training: STS-B en dev Spearman {before['spearman']:.4f}")
    t0 = time.perf_counter()
    result = training.train(
        cfg, encoder, triplets, out_dir=out, dev_pairs=dev, resume=not args.no_resume,
        steps=steps, batch_size=args.batch_size, learning_rate=args.lr,
        schedule=args.schedule, grad_accum=args.grad_accum,
        hard_negatives=not args.no_hard_negatives,
        eval_every=args.eval_every or steps, checkpoint_every=args.checkpoint_every)
    seconds = time.perf_counter() - t0
    evals = result.evals
    summary.update({
        "profile": cfg.name, "steps": result.step, "triplets": result.settings.n_triplets,
        "pairs_seen": result.step * result.settings.batch_size * result.settings.grad_accum,
        "train_seconds_this_session": round(seconds, 1),
        "dev_spearman_after": evals[-1]["spearman"] if evals else None,
        "final_loss": result.losses[-1] if result.losses else None,
    })
    print(_write_summary(summary_path, summary))
    return 0


def _write_summary(path: Path, summary: dict) -> str:
    """Write the run summary as JSON (creating the run directory); returns the text."""
    text = json.dumps(summary, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def evaluate_command(args) -> int:
    """STS tables for a run's encoder (or its untrained baseline) in the profile's languages,
    saved under ``RUN/eval/``."""
    from lacos_helpers import evaluation

    env.quiet()
    run = Path(args.run)
    cfg = training.load_run_profile(run)
    env.seed_everything(cfg.seed)
    if args.baseline:
        encoder = training.build_encoder(cfg)  # LoRA B = 0: exactly the untrained backbone
        label = "baseline"
    else:
        encoder = training.load_encoder(run)
        label = "trained"
    langs = _split_langs(args.langs) or cfg.eval_langs
    cache = evaluation.EmbeddingCache(encoder, batch_size=cfg.eval_batch_size)
    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    tag = _eval_tag(args.split, langs, cfg.eval_langs, args.limit)
    table = evaluation.sts_table(encoder, langs, split=args.split, limit=args.limit, cache=cache)
    table.save(out / f"{label}_sts_{tag}")
    print(f"STS-B {args.split} ({label}):\n{table}")
    results = {"label": label, "split": args.split, "limit": args.limit, "sts": table.to_dict()}
    others = [code for code in langs if code != "en"]
    if others and not args.no_crosslingual:
        cross = evaluation.crosslingual_table(encoder, others, split=args.split,
                                              limit=args.limit, cache=cache)
        cross.save(out / f"{label}_crosslingual_{tag}")
        print(f"Cross-lingual ({label}, sentence1 in X, sentence2 in English):\n{cross}")
        results["crosslingual"] = cross.to_dict()
    (out / f"{label}_{tag}.json").write_text(json.dumps(results, indent=1))
    print(f"[eval] tables written to {out}/{label}_*_{tag}.csv|md")
    return 0


def _eval_tag(split: str, langs, profile_langs, limit) -> str:
    """File-name tag: ``test``, ``test_en`` (other languages than the profile's),
    ``test_limit500`` (a subset), so different evaluations never overwrite each other."""
    tag = split
    if tuple(langs) != tuple(profile_langs):
        tag += "_" + "-".join(langs)
    if limit is not None:
        tag += f"_limit{limit}"
    return tag


__all__ = ["train_command", "evaluate_command"]
