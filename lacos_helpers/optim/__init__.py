"""8-bit Adam from scratch (``adam8bit``), checked against bitsandbytes, and an optimizer
factory with state-size accounting (``factory``)."""

from lacos_helpers.optim.adam8bit import DEFAULT_MIN_8BIT_SIZE, Adam8bit
from lacos_helpers.optim.factory import (
    OPTIMIZER_NAMES,
    make_optimizer,
    optimizer_state_bytes,
    state_bytes_per_param,
)

__all__ = [
    "DEFAULT_MIN_8BIT_SIZE",
    "OPTIMIZER_NAMES",
    "Adam8bit",
    "make_optimizer",
    "optimizer_state_bytes",
    "state_bytes_per_param",
]
