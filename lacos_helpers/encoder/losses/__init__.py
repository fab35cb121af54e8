"""Training objectives, one per file (as sentence-transformers' ``losses/``): ``mnr`` is the
Multiple Negatives Ranking loss with in-batch and hard negatives."""

from lacos_helpers.encoder.losses.mnr import DEFAULT_SCALE, mnr_loss, similarity_matrix

__all__ = ["DEFAULT_SCALE", "mnr_loss", "similarity_matrix"]
