"""Cached MNR (GradCache): the options ``mini_batch_size`` of the one MNR loss,
:class:`~lacos_helpers.encoder.losses.triplet_mnr.MNRLoss` (where the method is explained).
The names of 0.2 stay here for the notebooks."""

from __future__ import annotations

from lacos_helpers.encoder.losses.triplet_mnr import (
    Gather,
    MNRLoss,
    RandomState,
    check_chunk_size,
    chunked,
    embed_triplets,
    no_gather,
    triplet_mnr_loss,
    triplet_roles,
)


def CachedMNRObjective(chunk_size: int, gather: Gather | None = None) -> MNRLoss:  # noqa: N802
    """GradCache in chunks of ``chunk_size`` triplets (an int >= 1): ``MNRLoss(chunk_size,
    gather)``."""
    return MNRLoss(check_chunk_size(chunk_size), gather)


__all__ = ["CachedMNRObjective", "Gather", "MNRLoss", "RandomState", "check_chunk_size",
           "chunked", "embed_triplets", "no_gather", "triplet_mnr_loss", "triplet_roles"]
