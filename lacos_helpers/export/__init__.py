"""A trained run as a model other tools load: a sentence-transformers folder with a model card
(:func:`export_run`; CLI: ``python -m lacos_helpers export``)."""

from lacos_helpers.export.backbone import float_backbone
from lacos_helpers.export.card import model_card, run_eval_tables
from lacos_helpers.export.cli import add_parser, run
from lacos_helpers.export.folder import ST_POOLING, UnsupportedPoolingError, st_pooling_mode
from lacos_helpers.export.st_model import (
    EXPORT_MODES,
    EXPORT_PADDING_SIDE,
    PARITY_TOLERANCE,
    PROBE_SENTENCES,
    ExportError,
    ExportResult,
    adapter_load_error,
    export_encoder,
    export_run,
)

__all__ = [
    "EXPORT_MODES",
    "EXPORT_PADDING_SIDE",
    "PARITY_TOLERANCE",
    "PROBE_SENTENCES",
    "ST_POOLING",
    "ExportError",
    "ExportResult",
    "UnsupportedPoolingError",
    "adapter_load_error",
    "add_parser",
    "export_encoder",
    "export_run",
    "float_backbone",
    "model_card",
    "run",
    "run_eval_tables",
    "st_pooling_mode",
]
