"""The first code cell of every notebook: show the package's log lines, pick the profile, seed,
print the header."""

from __future__ import annotations

import warnings

from lacos_helpers import config, runtime

# Known noisy warnings in the notebooks, filtered by message and module only.
NOISY_WARNINGS = (
    # chapter 2 registers Int8Linear with peft as a custom module on purpose
    (r"Unsupported layer type .*Int8Linear", r"peft\."),
)


def silence_known_warnings() -> None:
    """Filter the warnings in :data:`NOISY_WARNINGS` (by message and module, nothing else)."""
    for message, module in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)


def start(chapter: str, profile: str | None = None, **overrides) -> config.RunConfig:
    """Show logs, load the profile (``LACOS_PROFILE`` by default), seed everything and print
    profile, device and library versions. Returns the :class:`~lacos_helpers.config.RunConfig`."""
    from lacos_helpers import data

    runtime.show_logs()
    silence_known_warnings()
    cfg = config.load_profile(profile, **overrides)
    runtime.seed_everything(cfg.seed)
    data.set_policy(cfg.data.source, allow_generated=cfg.data.allow_generated)
    versions = ", ".join(f"{k} {v}" for k, v in runtime.versions().items())
    print(f"LACoS course: {chapter}")
    print(cfg.summary())
    print(f"{'data source':>13}: {data.sources.describe_source()}")
    print(f"{'device':>13}: {runtime.device_summary()}")
    print(f"{'versions':>13}: {versions}")
    return cfg


def training_triplets(cfg: config.RunConfig):
    """The profile's NLI training triplets, as chapter 3 trains on them."""
    from lacos_helpers import data

    return data.load_nli_triplets(cfg.data.train_langs, limit=cfg.data.nli_limit, seed=cfg.seed,
                                  source=cfg.data.source, split=cfg.data.nli_split)


def load_backbone(cfg: config.RunConfig, triplets=None):
    """``(model, tokenizer)`` of the profile; the tiny BLOOM's tokenizer is trained on the
    training texts (``triplets``, default :func:`training_triplets`)."""
    from lacos_helpers import backbones, data

    if cfg.model.kind != "tiny-bloom":
        return backbones.load_backbone(cfg)
    triplets = training_triplets(cfg) if triplets is None else triplets
    return backbones.load_backbone(cfg, texts=data.training_texts(triplets))
