"""The model card (``README.md``) of an exported folder: what the model is, how to load it,
the recipe it was trained with (from the run's configuration), the STS tables the run
measured, and what the export checked."""

from __future__ import annotations

import os
from pathlib import Path

PAPER = ("Hua, Williams & Shamsi (2023), *LACoS-BLOOM: Low-rank Adaptation with Contrastive "
         "objective on 8 bits Siamese-BLOOM*, arXiv:2305.06404")


def run_eval_tables(run_dir: str | os.PathLike | None) -> dict[str, str]:
    """``{file stem: markdown}`` of the tables the run's evaluations wrote to ``RUN/eval/``
    (``python -m lacos_helpers evaluate`` and chapter 4), sorted by name; {} when none."""
    if run_dir is None:
        return {}
    return {path.stem: path.read_text(encoding="utf-8").strip()
            for path in sorted((Path(run_dir) / "eval").glob("*.md"))}


def _front_matter(cfg) -> str:
    base = cfg.model.model_id if cfg is not None and cfg.model.model_id else None
    lines = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
             "tags:", "- sentence-transformers", "- sentence-similarity", "- feature-extraction",
             "- lacos-bloom", "- lora"]
    if base and "/" in base and not base.endswith(".gguf"):
        lines.append(f"base_model: {base}")
    lines.append("---")
    return "\n".join(lines)


def _recipe(cfg, run_record: dict | None) -> list[str]:
    if cfg is None:
        return ["Recipe: not recorded (exported from an encoder, not a run directory)."]
    t, q, lo, d = cfg.train, cfg.quant, cfg.lora, cfg.data
    n = (run_record or {}).get("data", {}).get("n_triplets")
    return [
        f"- backbone: {cfg.model.label} (profile `{cfg.name}`)",
        f"- frozen weights in 8 bits: `{q.backend}` ({q.compute} compute)",
        f"- LoRA: r={lo.r}, alpha={lo.alpha:g}, dropout={lo.dropout:g} on "
        f"{', '.join(f'`{x}`' for x in lo.targets)}",
        f"- loss: Multiple Negatives Ranking (scale {t.scale:g}), "
        f"{'with' if t.hard_negatives else 'without'} the contradiction as hard negative",
        f"- optimizer: `{t.optimizer}`, lr {t.learning_rate:g}, {t.warmup_steps} warmup steps, "
        f"{t.schedule} schedule",
        f"- {t.steps} steps x {t.batch_size} triplets"
        + (f" x {t.grad_accum} accumulation" if t.grad_accum > 1 else "")
        + f", max {cfg.encoder.max_length} tokens per sentence, pooling `{cfg.encoder.pooling}`",
        f"- data: NLI {', '.join(d.train_langs)}"
        + (f", {n:,} triplets" if n else "") + f" (split `{d.nli_split}`, source `{d.source}`)",
        f"- seed {cfg.seed}",
    ]


def _parity(result) -> str:
    if result.max_abs_diff is None:
        return ("Not checked: sentence-transformers was not installed when the folder was "
                "written.")
    text = (f"`SentenceTransformer(folder).encode` vs the run's encoder (in float32, as "
            f"exported, also where training used bfloat16 matmuls) on "
            f"{result.probe_count} probe sentences (mixed lengths and scripts, one truncated): "
            f"max |difference| **{result.max_abs_diff:.1e}** per component "
            f"({result.checked_with}).")
    if not result.exact_compute:
        text += (" The run computes with LLM.int8 (activations rounded to int8 as well); this "
                 "float model uses the same dequantized weights without rounding activations, "
                 "hence the larger difference.")
    return text


def _left_padding(result) -> str:
    """What switching the tokenizer to left padding does, as the export measured it."""
    if getattr(result, "left_padding_safe", None) is None:
        return ""
    if result.left_padding_safe:
        return (f"; left padding gives the same embeddings too (max |difference| "
                f"{result.left_padding_diff:.1e}, {result.checked_with})")
    return (f". **Keep the right padding**: with {result.checked_with}, a tokenizer switched "
            f"to left padding gives other embeddings (max |difference| "
            f"{result.left_padding_diff:.1e}, pooling `{result.st_pooling}`: positions are "
            "counted from the start of the padded row)")


def model_card(result, cfg=None, tables: dict[str, str] | None = None,
               run_record: dict | None = None) -> str:
    """The card's markdown for an :class:`~lacos_helpers.export.st_model.ExportResult`."""
    tables = tables or {}
    folder = Path(result.folder).name
    how = ("LoRA folded into the float32 weights (dequantized 8-bit base + (alpha/r) B A)"
           if result.mode == "merged" else
           "float32 base weights in `base/` + a peft LoRA adapter (loaded through transformers' "
           "peft integration); `adapter_config.json` names `base/` by its absolute path: edit "
           "`base_model_name_or_path` after moving the folder")
    parts = [
        _front_matter(cfg),
        f"# {folder}: LACoS-BLOOM sentence embeddings",
        "A decoder language model turned into a sentence-embedding model with the LACoS-BLOOM "
        f"recipe ({PAPER}): frozen 8-bit weights, LoRA adapters, 8-bit Adam, a Siamese network "
        "trained with the Multiple Negatives Ranking loss on NLI entailment pairs. Exported "
        f"from the run `{result.run or '(encoder)'}` by `lacos_helpers` "
        f"{result.versions.get('lacos_helpers', '')}.",
        "## Usage",
        "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{folder}")\n'
        'embeddings = model.encode(["A man is playing a guitar.", "Ein Mann spielt Gitarre."])\n'
        "print(model.similarity(embeddings, embeddings))\n```",
        "## Architecture",
        f"- transformer: {how}\n"
        f"- pooling: `{result.st_pooling}` (the run's `{result.pooling}`)"
        + (", then L2 normalization (cosine similarity = dot product)" if result.normalize
           else "") + "\n"
        f"- at most {result.max_seq_length} tokens per sentence (longer ones are truncated); "
        "an empty string has no token here (a zero vector), while the training encoder embeds "
        "it as one BOS token\n"
        f"- the tokenizer pads on the **{result.padding_side}**: sentence-transformers passes "
        "no position ids and older versions count the weighted mean from position 0, so with "
        "right padding (first real token at position 0) every version computes the training "
        "encoder's embeddings" + _left_padding(result),
        "## Training recipe",
        "\n".join(_recipe(cfg, run_record)),
        "## Evaluation (measured by the run)",
        "\n\n".join(f"`{name}`\n\n{text}" for name, text in tables.items())
        if tables else "No evaluation tables in the run folder (`python -m lacos_helpers "
                       "evaluate --run RUN` writes them).",
        "## Export check",
        _parity(result),
        "## Citation",
        PAPER + ".",
    ]
    return "\n\n".join(parts) + "\n"
