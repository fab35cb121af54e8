"""The first code cell of every notebook: quiet logs, pick the profile, seed, print the header."""

from __future__ import annotations

from lacos_helpers import config, env


def start(chapter: str, profile: str | None = None, **overrides) -> config.Profile:
    """Silence noise, load the profile (``LACOS_PROFILE`` by default), seed everything and print
    profile, device and library versions. Returns the :class:`~lacos_helpers.config.Profile`."""
    env.quiet()
    cfg = config.load_profile(profile, **overrides)
    env.seed_everything(cfg.seed)
    versions = ", ".join(f"{k} {v}" for k, v in env.versions().items())
    print(f"LACoS course: {chapter}")
    print(cfg.summary())
    print(f"{'device':>13}: {env.device_summary()}")
    print(f"{'versions':>13}: {versions}")
    return cfg
