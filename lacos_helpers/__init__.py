"""LACoS course helpers: the reusable implementation behind the notebooks.

One module per stage of LACoS-BLOOM: ``config`` (profiles), ``data`` (NLI and STS),
``models`` (backbones), ``quantization`` (blockwise 8-bit, LLM.int8), ``lora`` (adapters),
``siamese`` (pooling, encoder), ``losses`` (MNR), ``optim`` (8-bit Adam), ``training`` (loop,
checkpoints, resume), ``evaluation`` (STS), ``env`` (environment check), ``course`` (headless
course runner), ``report`` (key figures for the summary).

``lacos_helpers.load_encoder("runs/NAME")`` returns a trained encoder.
"""

import logging as _logging

# bitsandbytes' CPU backend logs a warning at import about an optional 4-bit kernel package
# (``kernels``) that the course never uses; keep notebooks free of that noise.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

from lacos_helpers.config import PROFILES, Profile, load_profile  # noqa: E402

__version__ = "0.1.0"


def load_encoder(run_dir, **kwargs):
    """The trained :class:`~lacos_helpers.siamese.SiameseEncoder` of a run directory (see
    :func:`lacos_helpers.training.load_encoder`)."""
    from lacos_helpers.training import load_encoder as _load_encoder

    return _load_encoder(run_dir, **kwargs)


__all__ = ["PROFILES", "Profile", "load_encoder", "load_profile", "__version__"]
