"""LACoS course helpers: the reusable implementation behind the notebooks.

One module per stage of LACoS-BLOOM: ``config`` (profiles), ``data`` (NLI and STS),
``models`` (backbones), ``quantization`` (blockwise 8-bit, LLM.int8), ``env`` (environment
check), ``course`` (headless course runner), ``report`` (key figures for the summary).
"""

import logging as _logging

# bitsandbytes' CPU backend logs a warning at import about an optional 4-bit kernel package
# (``kernels``) that the course never uses; keep notebooks free of that noise.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

from lacos_helpers.config import PROFILES, Profile, load_profile  # noqa: E402

__version__ = "0.1.0"
__all__ = ["PROFILES", "Profile", "load_profile", "__version__"]
