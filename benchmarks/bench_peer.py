"""The same recipe trained two ways, side by side: ours (`lacos_helpers.training.train`: 8-bit
frozen base, our LoRA, our 8-bit Adam) and the library most users would pick
(sentence-transformers' `SentenceTransformerTrainer` with a peft LoRA and
`MultipleNegativesRankingLoss` on the (anchor, positive, hard negative) columns).

Both sides: the profile's backbone, the same NLI triplets in the same batches (ours' batch
plan, fed to sentence-transformers in that order), the same steps, batch size, max length,
pooling, LoRA rank/alpha/targets, learning rate, warmup + linear decay, MNR scale 20, gradient
clipping at 1.0, seed. Each side runs in its own subprocess. Prints STS-B en test Spearman
(all pairs) and training sentence pairs per second for both, and ours / theirs.

What differs by design (what each library does by default):
- base weights: ours 8-bit (weight-only compute on a CPU), theirs float32; on a CPU with native
  bfloat16 (AVX512-BF16, AMX) the peer also runs with ``bf16=True`` (what a user of that CPU
  would do; our ``cpu`` profile computes in bfloat16 there too), reported as a third column;
- optimizer: ours 8-bit Adam, theirs AdamW (`adamw_torch`, float32 states);
- positions and padding: ours passes position ids counted from the first real token; theirs
  gets a right-padding tokenizer (with left padding a rotary decoder would see the padding as
  positions, see chapter 6), so both compute the same embedding function;
- LoRA: sentence-transformers' `add_adapter` goes through transformers' peft integration
  (transformers 5.25 requires peft >= 0.22); with an older peft `peft.get_peft_model` on the
  underlying transformer does the same.

    python benchmarks/bench_peer.py --profile cpu --steps 30     # Gemma-3-270M (~20 min on 2 cores)
    python benchmarks/bench_peer.py --profile ci --steps 20      # tiny BLOOM (under a minute)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIDES = ("ours", "peer", "peer-bf16")


def recipe(profile: str, steps: int):
    """The profile's configuration with ``steps`` steps, 10% warmup, no evaluation/checkpoints
    during training."""
    from lacos_helpers import config

    cfg = config.load_profile(profile, model={"device": "cpu"})
    return cfg.replace(train={"steps": steps, "warmup_steps": max(1, steps // 10),
                              "eval_every": None, "checkpoint_every": None})


def training_data(cfg):
    """(all triplets, the batches of the run in order): ours' batch plan."""
    from lacos_helpers import data, training

    triplets = data.run_triplets(cfg.data, cfg.seed)
    usable = training.usable_triplets(triplets, cfg.train.hard_negatives)
    plan = training.BatchPlan(usable, cfg.train.batch_size, cfg.seed)
    return triplets, [plan[m] for m in range(cfg.train.steps * cfg.train.grad_accum)]


def sts_en_test(model) -> dict:
    """STS-B en test (all pairs) Spearman x100 and encoding sentences/s of ``model`` (an
    encoder with ``encode`` or a callable sentences -> embeddings)."""
    from lacos_helpers import data, evaluation

    pairs = data.load_sts("en", "test")
    cache = evaluation.EmbeddingCache(model, batch_size=64, show_progress=False)
    start = time.perf_counter()
    result = evaluation.evaluate_sts(model, pairs, cache=cache)
    seconds = time.perf_counter() - start
    return {"spearman": 100 * result["spearman"], "encode_per_s": len(cache) / seconds,
            "pairs": len(pairs)}


def run_ours(cfg, triplets, batches) -> dict:
    from lacos_helpers import backbones, data, runtime, training

    runtime.seed_everything(cfg.seed)
    texts = data.training_texts(triplets) if cfg.model.kind == "tiny-bloom" else None
    backbone, tokenizer = backbones.load_backbone(cfg, texts=texts)
    encoder = training.build_encoder(cfg, backbone, tokenizer)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        training.train(cfg, encoder, triplets, out_dir=out, resume=False, show_progress=False)
        seconds = time.perf_counter() - start
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    return {"train_s": seconds, "trainable": trainable, **sts_en_test(encoder.eval())}


class InOrderBatches:
    """A sentence-transformers batch sampler that yields rows 0..b-1, b..2b-1, ... (the
    dataset is written in ours' batch order)."""

    def __new__(cls, *args, **kwargs):
        from sentence_transformers.base.sampler import DefaultBatchSampler

        class _InOrder(DefaultBatchSampler):
            def __iter__(self):
                n = len(self.sampler) // self.batch_size * self.batch_size
                for start in range(0, n, self.batch_size):
                    yield list(range(start, start + self.batch_size))

            def __len__(self):
                return len(self.sampler) // self.batch_size

        return _InOrder(*args, **kwargs)


def st_model(cfg, backbone, tokenizer, folder: Path):
    """SentenceTransformer(Transformer + Pooling) around the same float backbone, with a
    right-padding tokenizer and a peft LoRA of the recipe's rank, alpha and targets."""
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from lacos_helpers.export import float_backbone

    tokenizer.padding_side = "right"
    tokenizer.init_kwargs["padding_side"] = "right"
    float_backbone(backbone)  # a GGUF-loaded model carries a quantizer marker that refuses saving
    backbone.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    transformer = Transformer(str(folder), max_seq_length=cfg.encoder.max_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=cfg.encoder.pooling)
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.targets))
    get_peft_model(transformer.auto_model, lora)  # injects LoRA into the module in place
    return model


def run_peer(cfg, triplets, batches, bf16: bool = False) -> dict:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from lacos_helpers import backbones, data, runtime

    runtime.seed_everything(cfg.seed)
    texts = data.training_texts(triplets) if cfg.model.kind == "tiny-bloom" else None
    backbone, tokenizer = backbones.load_backbone(cfg, texts=texts)
    rows = [t for batch in batches for t in batch]
    dataset = Dataset.from_dict({"anchor": [t.anchor for t in rows],
                                 "positive": [t.positive for t in rows],
                                 "negative": [t.hard_negative for t in rows]})
    with tempfile.TemporaryDirectory() as folder:
        model = st_model(cfg, backbone, tokenizer, Path(folder) / "model")
        t = cfg.train
        args = SentenceTransformerTrainingArguments(
            output_dir=str(Path(folder) / "out"), max_steps=t.steps,
            per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
            learning_rate=t.learning_rate, warmup_steps=t.warmup_steps,
            lr_scheduler_type="linear", weight_decay=t.weight_decay,
            max_grad_norm=t.max_grad_norm or 0.0, seed=cfg.seed, save_strategy="no",
            report_to="none", logging_steps=max(1, t.steps // 5), use_cpu=True,
            batch_sampler=InOrderBatches, dataloader_drop_last=True, disable_tqdm=True,
            bf16=bf16)
        loss = MultipleNegativesRankingLoss(model, scale=t.scale)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                             loss=loss)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        model.eval()

        def encode(sentences):
            return model.encode(sentences, batch_size=64, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=False)

        return {"train_s": seconds, "trainable": trainable, **sts_en_test(encode)}


def run_side(side: str, profile: str, steps: int) -> dict:
    """One side in this process: train, then STS-B en test."""
    cfg = recipe(profile, steps)
    triplets, batches = training_data(cfg)
    if side == "ours":
        result = run_ours(cfg, triplets, batches)
    else:
        result = run_peer(cfg, triplets, batches, bf16=side == "peer-bf16")
    pairs = steps * cfg.train.batch_size * cfg.train.grad_accum
    return {"side": side, "pairs_per_s": pairs / result["train_s"], **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=("ci", "cpu"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print("RESULT " + json.dumps(run_side(args.side, args.profile, args.steps)))
        return
    import sentence_transformers

    from lacos_helpers import __version__

    cfg = recipe(args.profile, args.steps)
    print(f"lacos_helpers {__version__}, sentence-transformers {sentence_transformers.__version__}"
          f"; profile {cfg.name}: {cfg.model.label}, {args.steps} steps x "
          f"{cfg.train.batch_size} triplets, max_length {cfg.encoder.max_length}, pooling "
          f"{cfg.encoder.pooling}, LoRA r={cfg.lora.r} on {','.join(cfg.lora.targets)}")
    from lacos_helpers import runtime

    sides = list(SIDES)
    if not runtime.cpu_native_bf16():
        sides.remove("peer-bf16")
        print("(the peer in bfloat16 is not run: this CPU has no native bfloat16, where it is "
              "emulated and many times slower than float32)")
    results = {}
    for side in sides:
        proc = subprocess.run([sys.executable, __file__, "--side", side, "--profile",
                               args.profile, "--steps", str(args.steps)],
                              capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"{side} failed (exit {proc.returncode})")
        results[side] = json.loads(line[len("RESULT "):])
        print(f"{side}: {results[side]}", flush=True)
    ours, peers = results["ours"], [results[s] for s in sides[1:]]
    names = {"peer": "sentence-transformers + peft", "peer-bf16": "the same, bf16=True"}
    header = " | ".join(f"{names[s]} | ours / theirs" for s in sides[1:])
    print(f"\n| | ours (lacos_helpers) | {header} |")
    print("|---|---:|" + "---:|---:|" * len(peers))
    for key, label in (("spearman", "STS-B en test Spearman x100"),
                       ("pairs_per_s", "training pairs/s"), ("train_s", "training seconds"),
                       ("encode_per_s", "encoding sentences/s"),
                       ("trainable", "trainable parameters")):
        fmt = ",d" if isinstance(ours[key], int) else ".2f"  # counts as counts
        cells = " | ".join(f"{p[key]:{fmt}} | {ours[key] / p[key]:.3f}" for p in peers)
        print(f"| {label} | {ours[key]:{fmt}} | {cells} |")


if __name__ == "__main__":
    main()
