"""Training objectives (as sentence-transformers' ``losses/``): ``mnr``, the MNR loss of
embeddings with in-batch and hard negatives; ``triplet_mnr``, the one loss of a batch of triplets
(:class:`MNRLoss`: plain, GradCache chunks, gathered across processes)."""

from lacos_helpers.encoder.losses.mnr import DEFAULT_SCALE, mnr_loss, similarity_matrix
from lacos_helpers.encoder.losses.triplet_mnr import MNRLoss

__all__ = ["DEFAULT_SCALE", "MNRLoss", "mnr_loss", "similarity_matrix"]
