"""The sentence encoder: pooling of token states (``pooling``), the Siamese encoder around a
backbone (``siamese``) and its training losses (``losses``)."""

from lacos_helpers.encoder.losses import mnr_loss, similarity_matrix
from lacos_helpers.encoder.pooling import (
    POOLING_MODES,
    check_pooling,
    last_token_pool,
    mean_pool,
    pool,
    position_weights,
    weighted_mean_pool,
)
from lacos_helpers.encoder.siamese import SiameseEncoder, pad_token_ids, positions_from_mask

__all__ = [
    "POOLING_MODES",
    "SiameseEncoder",
    "check_pooling",
    "last_token_pool",
    "mean_pool",
    "mnr_loss",
    "pad_token_ids",
    "pool",
    "position_weights",
    "positions_from_mask",
    "similarity_matrix",
    "weighted_mean_pool",
]
