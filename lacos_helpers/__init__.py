"""LACoS course helpers: the reusable implementation behind the notebooks.

The method, one subpackage per stage of LACoS-BLOOM::

    config        one nested configuration (RunConfig) and the profiles ci / cpu / colab / paper
    bloom         BLOOM's facts: shapes, vocabulary, special tokens, linear layers
    backbones     the decoder: tiny random BLOOM, Hub model, offline GGUF model
    quantization  LLM.int8 weights (Int8Linear), blockwise states, model conversion
    memory        bytes: a training step, ZeRO-3 per GPU, BLOOM weights, measured peaks
    lora          LoRA layer, injection, peft-format adapter files, parameter counts
    optim         8-bit Adam from scratch, optimizer factory
    encoder       pooling, the Siamese encoder, losses (MNR)
    data          NLI triplets and STS pairs (local, Hub, generated), batch sampling
    training      the loop, checkpoints and resume, run directories
    evaluation    STS metrics, embedding cache, tables, diagnostics
    experiments   one-change-at-a-time runs for the paper's claims

and the course machinery in ``course`` (runner, notebook bootstrap, student copies, exercises,
widgets, plots, report, environment check), which the method never imports.

``lacos_helpers.load_encoder("runs/NAME")`` returns a trained encoder.
"""

import logging as _logging

# bitsandbytes' CPU backend logs a warning at import about an optional 4-bit kernel package
# (``kernels``) that the course never uses; keep notebooks free of that noise.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

from lacos_helpers.config import PROFILES, RunConfig, load_profile  # noqa: E402

__version__ = "0.2.0"


def load_encoder(run_dir, **kwargs):
    """The trained :class:`~lacos_helpers.encoder.SiameseEncoder` of a run directory (see
    :func:`lacos_helpers.training.load_encoder`)."""
    from lacos_helpers.training import load_encoder as _load_encoder

    return _load_encoder(run_dir, **kwargs)


__all__ = ["PROFILES", "RunConfig", "load_encoder", "load_profile", "__version__"]
