"""Rehearse BLOOM at the paper's sizes without its weights: point the ``colab`` / ``paper``
profile at a random checkpoint of the exact architecture (:mod:`.checkpoint`) and run the
profile's own code, unchanged (8-bit load to adapter reload). Records seconds per step and peak
memory (CPU: anonymous RSS; GPU: CUDA allocations) beside the memory model's prediction
(``python -m lacos_helpers rehearse``, README).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

from lacos_helpers import bloom, config, data, lora, memory, runtime, training
from lacos_helpers.checks import check_choice
from lacos_helpers.memory.measure import PeakMemory, gb, process_memory
from lacos_helpers.rehearsal.checkpoint import folder_for, is_complete, marker, write_random_bloom

BACKENDS = ("bitsandbytes", "lacos")
PROBE = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "Dogs run in the park."]


def shape_of(name_or_config: str) -> bloom.BloomShape:
    """``bloom-7b1`` / ``7b1`` (a public size), ``bloom-h256-l2`` (any hidden size and number
    of blocks; heads = h / 64), or a path to a ``config.json``."""
    match = re.fullmatch(r"(?:bloom-)?h(\d+)-l(\d+)(?:-a(\d+))?", name_or_config.lower())
    if match:
        h, layers = int(match[1]), int(match[2])
        return bloom.BloomShape(h, layers, int(match[3]) if match[3] else max(1, h // 64))
    path = Path(name_or_config)
    if path.suffix == ".json" and path.is_file():
        raw = json.loads(path.read_text())
        return bloom.BloomShape(raw["hidden_size"],
                                raw.get("n_layer", raw.get("num_hidden_layers")),
                                raw.get("n_head", raw.get("num_attention_heads")))
    return bloom.shape(name_or_config)


def rehearsal_config(folder: Path, *, profile: str = "paper", backend: str = "bitsandbytes",
                     recipe: str = "standard", steps: int = 1, batch: int = 2,
                     max_length: int = 16, checkpointing: bool = True,
                     device: str = "auto") -> config.RunConfig:
    """The profile's configuration pointed at ``folder``, with the rehearsal's size knobs."""
    check_choice(backend, BACKENDS, "backend")
    cfg = config.load_profile(profile)
    quant = ({"backend": "bitsandbytes", "load_in_8bit": True} if backend == "bitsandbytes"
             else {"backend": "lacos", "load_in_8bit": True, "compute": "dequantize"})
    return cfg.replace(
        model={"model_id": str(folder), "device": device},
        quant={**quant, "preparation": recipe},
        encoder={"max_length": max_length},
        train={"steps": steps, "batch_size": batch, "warmup_steps": 0,
               "gradient_checkpointing": checkpointing, "eval_every": None,
               "checkpoint_every": None, "optimizer": "bnb-adam8bit" if backend ==
               "bitsandbytes" else "adam8bit"},
        eval={"batch_size": 8})


def rehearse(shape: str = "560m", *, steps: int = 1, batch: int = 2, max_length: int = 16,
             backend: str = "bitsandbytes", recipe: str = "standard",
             checkpointing: bool = True, profile: str = "paper", device: str = "auto",
             triplet_limit: int = 2000) -> dict:
    """One rehearsal; returns its record (see the module docstring)."""
    runtime.seed_everything(0)
    bloom_shape = shape_of(shape)
    triplets = data.load_nli_triplets("en", limit=max(triplet_limit, steps * batch), seed=0,
                                      split="devtest")
    folder = _ensure_checkpoint(bloom_shape, data.training_texts(triplets))
    cfg = rehearsal_config(folder, profile=profile, backend=backend, recipe=recipe, steps=steps,
                           batch=batch, max_length=max_length, checkpointing=checkpointing,
                           device=device)
    baseline_anon = process_memory()["rss_anon"]
    device_kind = runtime.pick_device(cfg.model.device)
    with PeakMemory(cuda=device_kind == "cuda") as peak, \
            tempfile.TemporaryDirectory(prefix="lacos-rehearsal-") as out:
        t0 = time.perf_counter()
        encoder = training.build_encoder(cfg)
        load_seconds = time.perf_counter() - t0
        after_load = process_memory()["rss_anon"]
        load_peak = peak.phase_peak()
        result = training.train(cfg, encoder, triplets, out_dir=out, resume=False)
        train_peak = peak.phase_peak()
        before = encoder.encode(PROBE, show_progress=False, batch_size=len(PROBE))
        lora.load_adapter(encoder.backbone, Path(out) / "adapter")  # the saved adapter, back in
        after = encoder.encode(PROBE, show_progress=False, batch_size=len(PROBE))
    step_seconds = [r["seconds"] for r in result.history if r["kind"] == "train"]
    timed = step_seconds[1:] or step_seconds
    record = {
        "shape": f"bloom-h{bloom_shape.hidden_size}-L{bloom_shape.n_layer}",
        "size": shape, "backend": backend, "recipe": recipe, "profile": profile,
        "device": device_kind, "batch": result.config.train.batch_size,
        "cache_chunk": result.config.train.cache_chunk, "max_length": max_length,
        "checkpointing": checkpointing, "steps": steps,
        "seconds_per_step": round(sum(timed) / len(timed), 2),
        "load_seconds": round(load_seconds, 1),
        "final_loss": result.losses[-1],
        "reload_max_abs_diff": float((before - after).abs().max()),
        "baseline_anon_gb": gb(baseline_anon), "after_load_anon_gb": gb(after_load),
        "load_peak_anon_gb": gb(load_peak), "train_peak_anon_gb": gb(train_peak),
        "peak_anon_gb": gb(max(load_peak, peak.peak_anon)), "peak_rss_gb": gb(peak.peak_rss),
        "peak_cuda_gb": None if peak.cuda_peak is None else gb(peak.cuda_peak),
    }
    return with_prediction(record)


def _ensure_checkpoint(shape: bloom.BloomShape, texts: list[str]) -> Path:
    """The random checkpoint of ``shape``, written in a child process when missing: writing
    leaves freed buffers in this process's heap, which would blur the measurement."""
    import multiprocessing

    folder = folder_for(shape)
    if not is_complete(folder, marker(shape)):
        child = multiprocessing.get_context("spawn").Process(
            target=write_random_bloom, args=(folder, tuple(shape)),
            kwargs={"tokenizer_texts": texts})
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"writing the random checkpoint of {shape} failed "
                               f"(exit code {child.exitcode})")
    return folder


def summary_line(record: dict) -> str:
    """One line of text for a record."""
    peak = (f"peak CUDA {record['peak_cuda_gb']:.2f} GB" if record["peak_cuda_gb"] is not None
            else f"peak anonymous RSS {record['peak_anon_gb']:.2f} GB (RSS "
                 f"{record['peak_rss_gb']:.2f})")
    return (f"{record['size']} {record['backend']} {record['recipe']} on {record['device']}, "
            f"batch {record['batch']} x {record['max_length']} tokens, checkpointing "
            f"{'on' if record['checkpointing'] else 'off'}: {record['seconds_per_step']:.1f} "
            f"s/step, {peak}, predicted {record['predicted_gb']:.2f} GB "
            f"({record['error_percent']:+.1f}%)")


def add_parser(sub) -> None:
    p = sub.add_parser("rehearse", help="train BLOOM of a real size with random weights: "
                                        "memory and time through the colab/paper code")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--shape", default="bloom-560m",
                      help="bloom-560m | bloom-1b1 | bloom-1b7 | bloom-3b | bloom-7b1, or a "
                           "config.json path")
    what.add_argument("--config", dest="shape", metavar="CONFIG_JSON",
                      help="a BLOOM config.json (same as --shape PATH)")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--batch", type=int, default=2, help="triplets per step")
    p.add_argument("--max-length", type=int, default=16, help="tokens per sentence")
    p.add_argument("--backend", choices=BACKENDS, default="bitsandbytes")
    p.add_argument("--recipe", choices=("standard", "lean"), nargs="+", default=None,
                   help="k-bit preparation: standard (peft's: frozen float weights to fp32) "
                        "or lean (the embedding matrix stays 16-bit, freed loader memory "
                        "returned); default: the profile's (lean); two values compare them, "
                        "each in its own process")
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--profile", choices=("colab", "paper"), default="paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="append the record to this JSON-lines file")


def run(args) -> int:
    recipes = args.recipe or [config.load_profile(args.profile).quant.preparation]
    recipes = list(dict.fromkeys(recipes))  # "--recipe lean lean" is one run
    if len(recipes) > 1:
        records = _records_of_each_recipe(args, recipes)
    else:
        records = [rehearse(args.shape, steps=args.steps, batch=args.batch,
                            max_length=args.max_length, backend=args.backend,
                            recipe=recipes[0], checkpointing=not args.no_checkpointing,
                            profile=args.profile, device=args.device)]
        print(json.dumps(records[0]))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    print("\n".join(summary_line(r) for r in records))
    base = records[0]
    for r in records[1:]:
        key = "peak_cuda_gb" if r["peak_cuda_gb"] is not None else "peak_anon_gb"
        print(f"{r['recipe']} vs {base['recipe']}: {r[key] - base[key]:+.2f} GB, "
              f"{r['seconds_per_step'] / base['seconds_per_step']:.2f}x the time per step")
    return 0


def _records_of_each_recipe(args, recipes: list[str]) -> list[dict]:
    """One process per recipe: a clean measurement each."""
    import subprocess
    import sys

    records = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.jsonl"
        for recipe in recipes:
            cmd = [sys.executable, "-m", "lacos_helpers", "rehearse", "--shape", args.shape,
                   "--steps", str(args.steps), "--batch", str(args.batch), "--max-length",
                   str(args.max_length), "--backend", args.backend, "--recipe", recipe,
                   "--profile", args.profile, "--device", args.device, "--json", str(out)]
            if args.no_checkpointing:
                cmd.append("--no-checkpointing")
            subprocess.run(cmd, check=True)
            records.append(json.loads(out.read_text().splitlines()[-1]))
    return records


REFERENCE_RECORDS = Path(__file__).with_name("reference_records.jsonl")


def with_prediction(record: dict) -> dict:
    """``record`` with the *current* memory model's prediction and error (a measurement keeps
    its numbers; the prediction follows the model). On a GPU the prediction compared is
    torch's allocations (``max_memory_allocated``: the CUDA context is not in it)."""
    shape = shape_of(record["size"])
    cfg = rehearsal_config(Path("."), profile=record["profile"], backend=record["backend"],
                           recipe=record["recipe"], steps=record["steps"],
                           batch=record["batch"], max_length=record["max_length"],
                           checkpointing=record["checkpointing"], device="cpu")
    if record.get("cache_chunk"):  # the run was fitted to its GPU with GradCache
        cfg = cfg.replace(train={"cache_chunk": record["cache_chunk"]})
    est = memory.estimate_training_memory(cfg, shape, device=record["device"])
    measured = record["peak_cuda_gb"] if record.get("peak_cuda_gb") is not None else \
        record["peak_anon_gb"]
    return {**record, "predicted_gb": round(est.allocated / memory.GB, 3),
            "predicted_components_gb": est.components_gb(),
            "error_percent": round(100 * (est.allocated / memory.GB - measured) / measured, 1)}


def reference_records() -> list[dict]:
    """The rehearsals measured on the course's reference machine (2 CPU cores, 24 GB; README),
    shipped with the package, each with the current memory model's prediction."""
    lines = REFERENCE_RECORDS.read_text().splitlines()
    return [with_prediction(json.loads(line)) for line in lines if line.strip()]
