"""Training objectives, one per file (as sentence-transformers' ``losses/``): ``mnr`` is the
Multiple Negatives Ranking loss with in-batch and hard negatives; ``cached_mnr`` the same loss
through GradCache (batches larger than memory, same gradients)."""

from lacos_helpers.encoder.losses.cached_mnr import CachedMNRObjective, cached_mnr_gradients
from lacos_helpers.encoder.losses.mnr import DEFAULT_SCALE, mnr_loss, similarity_matrix

__all__ = ["DEFAULT_SCALE", "CachedMNRObjective", "cached_mnr_gradients", "mnr_loss",
           "similarity_matrix"]
