"""The commands of ``python -m lacos_helpers``::

    python -m lacos_helpers train --profile cpu --out runs/cpu      # the full recipe, resumable
    python -m lacos_helpers evaluate --run runs/cpu                 # trained encoder
    python -m lacos_helpers evaluate --run runs/cpu --baseline      # untrained backbone
    python -m lacos_helpers export --run runs/cpu --out models/lacos-cpu   # sentence-transformers
    python -m lacos_helpers rehearse --shape bloom-7b1                     # BLOOM's sizes, random
    python -m lacos_helpers profiles | env | course ...

``train`` on several processes (data parallel, negatives gathered from every process; the global
batch ``--batch-size`` is split between them):

    torchrun --nproc-per-node 4 -m lacos_helpers train --profile colab --out runs/ddp
    accelerate launch --multi_gpu --num_processes 4 -m lacos_helpers train --profile colab ...
    torchrun --nproc-per-node 2 -m lacos_helpers train --profile ci --out runs/ci2   # CPU, gloo
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from lacos_helpers import config, runtime

log = logging.getLogger(__name__)


def _langs(value: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in value.split(",") if code.strip())


# (flag, configuration path, argparse keywords): each `train` option sets one field of the
# run's configuration; an option left out keeps the profile's value.
TRAIN_OPTIONS = (
    ("--steps", "train.steps", dict(type=int, help="optimizer steps")),
    ("--batch-size", "train.batch_size", dict(type=int, help="triplets per micro-batch "
                                              "(= in-batch negatives + 1)")),
    ("--lr", "train.learning_rate", dict(type=float, help="peak learning rate")),
    ("--warmup-steps", "train.warmup_steps", dict(type=int)),
    ("--schedule", "train.schedule", dict(choices=config.SCHEDULES)),
    ("--pad-multiple", "encoder.pad_multiple", dict(type=int, help="pad every forward call to "
                                                    "a multiple of N tokens (fewer shapes)")),
    ("--grad-accum", "train.grad_accum", dict(type=int, help="micro-batches per step: more "
                                              "pairs per update, not more negatives")),
    ("--pooling", "encoder.pooling", dict(help="mean | weightedmean | lasttoken")),
    ("--max-length", "encoder.max_length", dict(type=int, help="tokens per sentence")),
    ("--lora-r", "lora.r", dict(type=int, help="LoRA rank (give --lora-alpha too to keep "
                                             "alpha / r)")),
    ("--lora-alpha", "lora.alpha", dict(type=float, help="LoRA scale numerator (scale = "
                                                         "alpha / r)")),
    ("--langs", "data.train_langs", dict(type=_langs, help="NLI languages, comma separated")),
    ("--crosslingual", "data.crosslingual", dict(type=int, help="XNLI triplets per row, 2 langs")),
    ("--limit", "data.nli_limit", dict(type=int, help="at most N NLI triplets")),
    ("--data-source", "data.source", dict(choices=("auto", "local", "hub", "generated"))),
    ("--nli-split", "data.nli_split",
     dict(choices=("auto", "train", "validation", "test", "devtest"),
          help="auto: the train split where the source has one, else dev+test")),
    ("--seed", "seed", dict(type=int)),
    ("--eval-every", "train.eval_every", dict(type=int, help="STS-B en dev every N steps")),
    ("--checkpoint-every", "train.checkpoint_every", dict(type=int)),
    ("--cache-chunk", "train.cache_chunk", dict(type=int, help="GradCache: embed the batch in "
                                                "chunks of N triplets (same gradients, memory "
                                                "of N, one extra forward)")),
)
TRAIN_SWITCHES = (  # store_true flags: (flag, path, value when given, help)
    ("--no-hard-negatives", "train.hard_negatives", False, "MNR without the contradiction"),
    ("--gradient-checkpointing", "train.gradient_checkpointing", True,
     "recompute activations in backward: far less memory, ~1.5x the time on CPU"),
)


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train LoRA adapters with the MNR loss (resumable)")
    p.add_argument("--profile", default=None, help="ci | cpu | colab | paper (default: auto)")
    p.add_argument("--out", required=True, help="run directory (resumes if it has checkpoints)")
    for flag, path, kwargs in TRAIN_OPTIONS:
        p.add_argument(flag, dest=path, default=None, **kwargs)
    for flag, path, _, text in TRAIN_SWITCHES:
        p.add_argument(flag, dest=path, action="store_true", help=text)
    p.add_argument("--no-resume", action="store_true", help="start over in --out")
    p.add_argument("--zero3", action="store_true",
                   help="DeepSpeed ZeRO-3 + CPU offload (launch with deepspeed / torchrun / "
                        "accelerate; the frozen base in 16 bits, sharded instead of 8-bit)")
    p.add_argument("--deepspeed-config", "--config", dest="deepspeed_config", default=None,
                   help="with --zero3: a DeepSpeed JSON (default: accelerate's, else the "
                        "built-in template)")
    # the `deepspeed` launcher passes --local_rank (LOCAL_RANK is read from the environment)
    p.add_argument("--local_rank", "--local-rank", type=int, default=None,
                   help=argparse.SUPPRESS)


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="STS tables (10 languages + cross-lingual) for a run")
    p.add_argument("--run", required=True, help="run directory written by `train`")
    p.add_argument("--split", default="test", choices=("dev", "test"))
    p.add_argument("--langs", type=_langs, default=None,
                   help="STS languages, comma separated (the run's)")
    p.add_argument("--limit", type=int, default=None, help="at most N pairs per language")
    p.add_argument("--baseline", action="store_true",
                   help="evaluate the untrained backbone (same pooling) instead")
    p.add_argument("--no-crosslingual", action="store_true")
    p.add_argument("--mteb", type=_langs, default=None, metavar="TASKS",
                   help="MTEB tasks, comma separated, scored by mteb instead (the eval extra): "
                        "STSBenchmarkMultilingualSTS reads the data folder where the run's "
                        "data is local, every other task (and that one otherwise) the Hub")


def train_config(args) -> config.RunConfig:
    """The profile with every given command-line option applied."""
    values = {path: getattr(args, path) for _, path, _ in TRAIN_OPTIONS}
    values.update({path: value for _, path, value, _ in TRAIN_SWITCHES if getattr(args, path)})
    return config.load_profile(args.profile).replace_paths(values)


def train_command(args) -> int:
    """Load data and model for the configuration, train (resuming if possible), evaluate STS-B
    en dev before and after, write ``train_summary.json`` into the run directory.

    Launched by torchrun / ``accelerate launch`` as one of several processes: the processes
    join one group, train data-parallel (:class:`DistributedTrainer`) and only rank 0 prints,
    evaluates the untrained model and writes."""
    from lacos_helpers.training import distributed

    if args.zero3:
        from lacos_helpers.training import zero

        zero.join_processes()
        info = distributed.launch_info()
    else:
        info = distributed.init_process_group()
    code = _train(args, info)  # on an error the process exits and the launcher stops the rest
    distributed.shutdown()
    if args.zero3 and info.is_distributed:
        # the run is written; the interpreter's teardown of DeepSpeed's and gloo's threads
        # sometimes aborts a CPU rank ("terminate called without an active exception")
        runtime.exit_now(code)
    return code


def run_config(args, info) -> config.RunConfig:
    """The configuration this process trains: the profile and options, on this process's
    device when launched as one of several, as ZeRO-3 trains it with ``--zero3``."""
    from lacos_helpers.training import distributed, zero

    cfg = train_config(args)
    if info.is_distributed or args.zero3:
        cfg = cfg.replace(model={"device": distributed.process_device(info)})
    return zero.zero_recipe(cfg) if args.zero3 else cfg


def make_trainer(args, info, cfg, encoder, triplets, out: Path, dev):
    """The one trainer of every engine: one process, data parallel or ZeRO-3."""
    from lacos_helpers import training
    from lacos_helpers.training import zero

    options = training.TrainerOptions(dev_pairs=dev, resume=not args.no_resume)
    if args.zero3:
        ds_config = zero.run_config(cfg, info.world_size, args.deepspeed_config)
        trainer = training.DistributedTrainer(cfg, encoder, triplets, out, options,
                                              engine=zero.ZeroEngine(ds_config))
        trainer.ds_config = ds_config
        return trainer
    if info.is_distributed:
        return training.DistributedTrainer(cfg, encoder, triplets, out, options)
    cfg = training.fit_encoder_to_device(cfg, encoder)
    return training.Trainer(cfg, encoder, triplets, out, options)


def _train(args, info) -> int:
    from lacos_helpers import data, training
    from lacos_helpers.data import sources
    from lacos_helpers.evaluation import evaluate_sts
    from lacos_helpers.training import distributed

    cfg = run_config(args, info)
    if info.is_distributed and not info.is_main:  # one copy of the log lines, from rank 0
        logging.getLogger(runtime.PACKAGE_LOGGER).setLevel(logging.WARNING)
    runtime.seed_everything(cfg.seed)
    # the run's data policy, passed to every loader: one source, resolved once
    source = sources.resolve_source(sources.DataPolicy.of(cfg.data))
    if info.is_main:
        print(cfg.summary())
        if info.is_distributed:
            print(f"{info.world_size} processes: {cfg.train.batch_size // info.world_size} of "
                  f"the {cfg.train.batch_size} triplets of each global batch per process")
    out = Path(args.out)
    with distributed.main_process_first():  # rank 0 fills the caches (data, tokenizer) first
        triplets = data.run_triplets(cfg.data, cfg.seed, source)
        dev = data.load_sts("en", "dev", limit=cfg.eval.sts_limit, source=source)
        encoder = training.build_encoder(cfg, texts=data.training_texts(triplets))
    summary_path = out / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() and \
        not args.no_resume else {}
    if "dev_spearman_before" not in summary and info.is_main:
        before = evaluate_sts(encoder, dev, batch_size=cfg.eval.batch_size)
        summary["dev_spearman_before"] = before["spearman"]
        _write_summary(summary_path, summary)  # a resumed run skips this evaluation
        log.info("[eval] before training: STS-B en dev Spearman %.4f", before["spearman"])
    if cfg.train.eval_every is None:
        cfg = cfg.replace(train={"eval_every": cfg.train.steps})
    t0 = time.perf_counter()
    trainer = make_trainer(args, info, cfg, encoder, triplets, out, dev)
    result = trainer.run()
    if not info.is_main:
        return 0
    if args.zero3:
        _write_summary(out / "zero_result.json", {
            "world_size": info.world_size, "config": trainer.ds_config,
            "records": [r for r in result.history if r["kind"] == "train"]})
    evals = result.evals
    t = result.config.train
    summary.update({
        "profile": cfg.name, "steps": result.step, "triplets": result.n_triplets,
        "pairs_seen": result.step * t.batch_size * t.grad_accum,
        "processes": info.world_size,
        "train_seconds_this_session": round(time.perf_counter() - t0, 1),
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
    """STS tables for a run's encoder (or its untrained baseline) in the run's languages,
    saved under ``RUN/eval/``."""
    from lacos_helpers import evaluation, training
    from lacos_helpers.data import sources

    run = Path(args.run)
    cfg = training.load_run_config(run)
    runtime.seed_everything(cfg.seed)
    source = sources.resolve_source(sources.DataPolicy.of(cfg.data))  # the run's policy
    encoder = training.load_encoder(run, trained=not args.baseline)
    label = "trained" if not args.baseline else "baseline"
    langs = args.langs or cfg.eval.langs
    tag = _eval_tag(args.split, langs, cfg.eval.langs, args.limit)
    if args.mteb:
        return mteb_command(args, run, encoder, f"{label}_mteb_{tag}", langs,
                            local=source == "local")
    cache = evaluation.EmbeddingCache(encoder, batch_size=cfg.eval.batch_size)
    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    table = evaluation.sts_table(encoder, langs, split=args.split, limit=args.limit,
                                 source=source, cache=cache)
    table.save(out / f"{label}_sts_{tag}")
    print(f"STS-B {args.split} ({label}):\n{table}")
    results = {"label": label, "split": args.split, "limit": args.limit, "sts": table.to_dict()}
    others = [code for code in langs if code != "en"]
    if others and not args.no_crosslingual:
        cross = evaluation.crosslingual_table(encoder, others, split=args.split,
                                              limit=args.limit, source=source, cache=cache)
        cross.save(out / f"{label}_crosslingual_{tag}")
        print(f"Cross-lingual ({label}, sentence1 in X, sentence2 in English):\n{cross}")
        results["crosslingual"] = cross.to_dict()
    (out / f"{label}_{tag}.json").write_text(json.dumps(results, indent=1))
    print(f"[eval] tables written to {out}/{label}_*_{tag}.csv|md")
    return 0


def mteb_command(args, run: Path, encoder, stem: str, langs, local: bool) -> int:
    """``evaluate --mteb TASKS``: MTEB's scores, written to ``RUN/eval/{stem}.json``."""
    from lacos_helpers.evaluation import mteb_harness

    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    name = f"lacos/{run.name}"
    results = {}
    for task in args.mteb:
        if task == mteb_harness.STSB_TASK and local:  # offline: the data folder's files
            scores = mteb_harness.stsb_scores(encoder, langs, args.split, args.limit, name=name)
            print(f"MTEB {task} {args.split} (cosine Spearman x100, data folder):")
            print("\n".join(f"  {lang}: {value:.2f}" for lang, value in scores.items()))
            results[task] = scores
        else:
            task_results = mteb_harness.run_mteb(encoder, [task], name=name,
                                                 output_folder=out / "mteb")
            results[task] = [r.to_dict() for r in task_results]
            print(f"MTEB {task}: {[r.get_score() for r in task_results]}")
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    return 0


def _eval_tag(split: str, langs, profile_langs, limit) -> str:
    """File-name tag: ``test``, ``test_en`` (other languages than the run's),
    ``test_limit500`` (a subset), so different evaluations never overwrite each other."""
    tag = split
    if tuple(langs) != tuple(profile_langs):
        tag += "_" + "-".join(langs)
    if limit is not None:
        tag += f"_limit{limit}"
    return tag


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m lacos_helpers`` and the ``lacos`` script."""
    parser = argparse.ArgumentParser(prog="python -m lacos_helpers",
                                     description="LACoS-BLOOM course helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="environment check: [OK]/[FAIL] per requirement")
    sub.add_parser("profiles", help="print the profile table")
    course = sub.add_parser("course", help="execute every notebook headless into build/")
    course.add_argument("rest", nargs=argparse.REMAINDER)
    configs = sub.add_parser("zero-configs", help="write the shipped DeepSpeed ZeRO-3 JSON and "
                             "accelerate YAML under FOLDER (from the template in Python)")
    configs.add_argument("folder", nargs="?", default="configs")
    add_train_parser(sub)
    add_evaluate_parser(sub)
    from lacos_helpers.rehearsal import run as rehearsal

    rehearsal.add_parser(sub)
    from lacos_helpers.export import cli as export_cli

    export_cli.add_parser(sub)
    args = parser.parse_args(argv)
    runtime.show_logs()
    if args.command == "env":
        from lacos_helpers.course import envcheck

        return envcheck.main()
    if args.command == "profiles":
        print(config.profile_table())
        return 0
    if args.command == "zero-configs":
        from lacos_helpers.training import zero

        for path in zero.write_configs(args.folder):
            print(path)
        return 0
    if args.command == "train":
        return train_command(args)
    if args.command == "evaluate":
        return evaluate_command(args)
    if args.command == "rehearse":
        return rehearsal.run(args)
    if args.command == "export":
        return export_cli.run(args)
    from lacos_helpers.course import runner

    return runner.main(args.rest)


__all__ = ["main", "train_command", "evaluate_command", "train_config"]
