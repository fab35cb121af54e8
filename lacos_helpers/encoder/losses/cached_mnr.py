"""Cached MNR (GradCache, Gao et al. 2021): the MNR loss of a batch larger than fits in memory,
with exactly the gradients of plain MNR.

The MNR loss couples every anchor with every candidate of the batch, so a batch cannot simply be
split into micro-batches (gradient accumulation gives each anchor only the negatives of its own
micro-batch). GradCache splits the *encoder* work instead, in chunks of ``chunk_size`` triplets:

1. embed every chunk **without** an autograd graph (activations are freed at once) and keep the
   embeddings ``[roles, b, d]`` (roles: anchor, positive, hard negative);
2. compute the loss on the full ``b x roles*b`` similarity matrix from those embeddings made
   leaves, and its gradient with respect to every embedding (cheap: ``roles x b x d`` numbers);
3. embed each chunk again, this time **with** its graph, and back-propagate the cached gradient
   of its embeddings (``backward`` of ``sum(embedding * cached_gradient)``), one chunk at a time.

By the chain rule the parameter gradients are those of plain MNR on the whole batch; the peak
memory is that of one chunk; the price is one extra forward pass. Random layers (LoRA dropout)
replay the same random numbers in step 3 as in step 1 (the RNG state of each chunk is saved).
``gather`` combines GradCache with data-parallel processes: the embeddings of step 1 are
gathered from every process before the loss, and each process back-propagates the gradient of
its own shard (:mod:`lacos_helpers.training.distributed`).

The layout helpers (:func:`embed_triplets`, :func:`triplet_mnr_loss`) are shared with the
distributed objective: embeddings are grouped by *role* (``[roles, b, d]``), so concatenating
shards along the batch dimension keeps every positive and hard negative in its own column.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lacos_helpers.encoder.losses.mnr import mnr_loss

log = logging.getLogger(__name__)

# gather(local [roles, s, d]) -> (global [roles, B, d], slice of the batch dimension that is
# the local shard). One process: the identity.
Gather = Callable[[Tensor], "tuple[Tensor, slice]"]


def no_gather(local: Tensor) -> tuple[Tensor, slice]:
    """The :data:`Gather` of a single process: the batch is the local shard."""
    return local, slice(0, local.shape[1])


def check_chunk_size(chunk_size) -> int:
    """``chunk_size`` (triplets per GradCache chunk) as an int >= 1, else a ValueError."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"cache_chunk (triplets per GradCache chunk) must be an int >= 1, got "
                         f"{chunk_size!r}")
    return chunk_size


def triplet_roles(hard_negatives: bool) -> int:
    """Sentences per triplet that are embedded: anchor, positive (+ hard negative)."""
    return 3 if hard_negatives else 2


def embed_triplets(encoder, batch: Sequence, hard_negatives: bool) -> Tensor:
    """Embed the anchors, positives (and hard negatives) of ``batch`` (b triplets) in one
    forward pass of the shared encoder -> ``[roles, b, d]`` float32 (role 0 anchors, 1
    positives, 2 hard negatives), with grad when grad is enabled."""
    if not batch:
        raise ValueError("cannot embed an empty batch of triplets")
    texts = [t[0] for t in batch] + [t[1] for t in batch]
    if hard_negatives:
        missing = [i for i, t in enumerate(batch) if len(t) < 3 or t[2] is None]
        if missing:
            raise ValueError(f"hard_negatives=True but triplets {missing[:5]} of the batch have "
                             "no hard negative")
        texts += [t[2] for t in batch]
    emb = encoder.embed(texts)
    return emb.view(triplet_roles(hard_negatives), len(batch), emb.shape[-1])


def triplet_mnr_loss(embeddings: Tensor, scale: float, symmetric: bool = False) -> Tensor:
    """MNR loss (scalar) of role-grouped embeddings ``[roles, b, d]``: anchor i against the b
    positives (label: column i) and the b hard negatives (columns b..2b-1, never a label).
    Non-finite embeddings give a NaN loss (the trainer's divergence check) instead of an
    error."""
    if embeddings.dim() != 3 or embeddings.shape[0] not in (2, 3):
        raise ValueError(f"embeddings must be [roles (2 or 3), batch, dim], got "
                         f"{tuple(embeddings.shape)}")
    if not bool(torch.isfinite(embeddings).all()):
        return embeddings.new_tensor(float("nan"))
    negatives = embeddings[2] if embeddings.shape[0] == 3 else None
    return mnr_loss(embeddings[0], embeddings[1], negatives, scale=scale, symmetric=symmetric)


def gathered_loss_and_backward(encoder, batch: Sequence, train, backward: Callable,
                               forward_context: Callable = contextlib.nullcontext,
                               gather: Callable = no_gather) -> float:
    """Embed ``batch`` with its graph, ``gather`` the embeddings of every process (identity
    with one), back-propagate the MNR loss of the whole ``[roles, B, d]`` batch when finite;
    returns the loss."""
    with forward_context():
        local = embed_triplets(encoder, batch, train.hard_negatives)
    full, _ = gather(local)
    loss = triplet_mnr_loss(full, train.scale, train.symmetric)
    if torch.isfinite(loss):
        backward(loss)
    return loss.item()


class RandomState:
    """The CPU and CUDA random states at one moment, to replay a forward pass's dropout."""

    def __init__(self, device: torch.device):
        self.cpu = torch.get_rng_state()
        self.device = device if device.type == "cuda" else None
        self.cuda = torch.cuda.get_rng_state(self.device) if self.device is not None else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.device is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def chunked(batch: Sequence, chunk_size: int) -> list[Sequence]:
    """``batch`` in consecutive chunks of ``chunk_size`` (the last may be smaller)."""
    return [batch[i:i + chunk_size] for i in range(0, len(batch), chunk_size)]


class CachedMNRObjective:
    """The trainer objective (:class:`lacos_helpers.training.loop.MNRObjective`'s interface) of
    GradCache: MNR over the whole (possibly gathered) batch, the encoder run in chunks of
    ``chunk_size`` triplets. A batch that fits in one chunk is embedded once, with its graph
    (nothing to cache). ``gather``: see :data:`Gather` (default: one process)."""

    def __init__(self, chunk_size: int, gather: Gather | None = None):
        self.chunk_size = check_chunk_size(chunk_size)
        self.gather = gather or no_gather
        # Across processes every process computes the loss of the whole gathered batch and
        # back-propagates into its own shard only: the processes' gradients must be summed.
        self.gradient_reduction = "mean" if gather is None else "sum"

    def loss_and_backward(self, encoder, batch: Sequence, train,
                          backward: Callable[[Tensor], None],
                          forward_context: Callable = contextlib.nullcontext) -> float:
        """Loss of ``batch`` (this process's triplets) with gradients accumulated into the
        encoder's trainable parameters through ``backward``; returns the loss (NaN, with no
        backward, when the embeddings are not finite)."""
        chunks = chunked(list(batch), self.chunk_size)
        if len(chunks) == 1:
            return self._direct(encoder, chunks[0], train, backward, forward_context)
        local, states = self._embed_without_graph(encoder, chunks, train, forward_context)
        grads, loss = self.embedding_gradients(local, train)
        if grads is None:
            return loss
        self._backward_chunks(encoder, chunks, states, grads, train, backward, forward_context)
        return loss

    # ---- the three steps -------------------------------------------------------------------

    def _direct(self, encoder, batch, train, backward, forward_context) -> float:
        return gathered_loss_and_backward(encoder, batch, train, backward, forward_context,
                                          self.gather)

    def _embed_without_graph(self, encoder, chunks, train, forward_context):
        """Step 1: ``[roles, s, d]`` embeddings of this process's triplets, chunk by chunk
        under ``no_grad``, and the RNG state before each chunk."""
        device = encoder.device
        states, parts = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(RandomState(device))
                with forward_context():
                    parts.append(embed_triplets(encoder, chunk, train.hard_negatives))
        return torch.cat(parts, dim=1), states

    def embedding_gradients(self, local: Tensor, train) -> tuple[Tensor | None, float]:
        """Step 2: gather, loss of the whole batch, and d loss / d (local embeddings)
        ``[roles, s, d]``; ``(None, nan)`` when the embeddings are not finite."""
        full, own = self.gather(local.detach())
        full = full.detach().requires_grad_(True)
        loss = triplet_mnr_loss(full, train.scale, train.symmetric)
        if not torch.isfinite(loss):
            return None, loss.item()
        (grad,) = torch.autograd.grad(loss, full)
        return grad[:, own], loss.item()

    def _backward_chunks(self, encoder, chunks, states, grads, train, backward,
                         forward_context) -> None:
        """Step 3: re-embed each chunk with its graph (same random numbers as step 1) and
        back-propagate its cached embedding gradient."""
        after = RandomState(encoder.device)
        start = 0
        for chunk, state in zip(chunks, states):
            state.restore()
            with forward_context():
                emb = embed_triplets(encoder, chunk, train.hard_negatives)
            cached = grads[:, start:start + len(chunk)]
            backward((emb * cached.to(emb.dtype)).sum())  # d/dθ = cached · d emb / dθ
            start += len(chunk)
        after.restore()  # the random stream continues as after one pass over the batch


def cached_mnr_gradients(encoder, batch: Sequence, train, chunk_size: int) -> float:
    """Convenience for notebooks and benchmarks: accumulate the GradCache gradients of
    ``batch`` into the encoder's ``.grad`` and return the loss."""
    return CachedMNRObjective(chunk_size).loss_and_backward(
        encoder, batch, train, lambda loss: loss.backward())


__all__ = ["CachedMNRObjective", "Gather", "RandomState", "cached_mnr_gradients",
           "check_chunk_size", "chunked", "embed_triplets", "no_gather", "triplet_mnr_loss",
           "triplet_roles"]
