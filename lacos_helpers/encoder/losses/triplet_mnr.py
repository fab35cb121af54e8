"""The one MNR loss of a batch of triplets, as sentence-transformers'
``CachedMultipleNegativesRankingLoss``: :class:`MNRLoss` returns a loss tensor and the trainer
only calls ``backward`` on it, whatever the options.

``MNRLoss(mini_batch_size=k)``: GradCache (Gao et al. 2021), plain MNR's exact gradients for a
batch larger than fits in memory, the encoder's work in chunks of ``k`` triplets: (1) embed every
chunk without an autograd graph (``[roles, b, d]``; roles: anchor, positive, hard negative);
(2) the loss of the whole batch from those embeddings made leaves, and its gradient per
embedding; (3) when the loss is back-propagated (a hook), embed each chunk again with its graph
(replaying step 1's random numbers) and back-propagate its cached gradient times the incoming
one. Peak memory: one chunk's; price: one extra forward pass.

``MNRLoss(gather=...)``: the embeddings of every data-parallel process are gathered (by role, so
every positive and hard negative keeps its column) before the loss
(:func:`lacos_helpers.training.distributed.all_gather_with_grad`); each process back-propagates
the whole batch's loss into its own shard, so the gradients are **summed**
(:attr:`MNRLoss.gradient_reduction`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lacos_helpers.checks import check_int
from lacos_helpers.encoder.losses.mnr import mnr_loss

# gather(local [roles, s, d]) -> (global [roles, B, d], slice of the batch dimension that is
# the local shard). One process: the identity.
Gather = Callable[[Tensor], "tuple[Tensor, slice]"]


def no_gather(local: Tensor) -> tuple[Tensor, slice]:
    """The :data:`Gather` of a single process: the batch is the local shard."""
    return local, slice(0, local.shape[1])


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
    return emb.view(3 if hard_negatives else 2, len(batch), emb.shape[-1])


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


class MNRLoss:
    """``loss(encoder, batch, train)`` -> a scalar tensor whose ``backward()`` accumulates the
    gradients into the encoder's trainable parameters (``train``: a ``TrainConfig``: ``scale``,
    ``symmetric``, ``hard_negatives``). ``mini_batch_size``: GradCache chunks (None: one forward
    pass with its graph); ``gather``: a :data:`Gather` (None: one process). Non-finite
    embeddings give a NaN loss with nothing to back-propagate (the trainer stops)."""

    def __init__(self, mini_batch_size: int | None = None, gather: Gather | None = None):
        self.mini_batch_size = check_int(mini_batch_size, "cache_chunk", allow_none=True,
                                         why="triplets per GradCache chunk")
        self.gather = gather or no_gather
        self.gradient_reduction = "mean" if gather is None else "sum"

    def __repr__(self) -> str:
        gathered = self.gather is not no_gather
        return f"MNRLoss(mini_batch_size={self.mini_batch_size}, gathered={gathered})"

    def __call__(self, encoder, batch: Sequence, train,
                 forward_context: Callable = contextlib.nullcontext) -> Tensor:
        batch = list(batch)
        chunks = chunked(batch, self.mini_batch_size or len(batch) or 1)
        if len(chunks) == 1:
            with forward_context():
                local = embed_triplets(encoder, batch, train.hard_negatives)
            full, _ = self.gather(local)
            return triplet_mnr_loss(full, train.scale, train.symmetric)
        local, states = self._embed_without_graph(encoder, chunks, train, forward_context)
        grads, loss = self.embedding_gradients(local, train)
        if grads is None:
            return loss
        loss = loss.detach().requires_grad_(True)
        loss.register_hook(lambda grad_output: self._backward_chunks(
            encoder, chunks, states, grads * grad_output, train, forward_context))
        return loss

    def loss_and_backward(self, encoder, batch: Sequence, train,
                          backward: Callable[[Tensor], None] = Tensor.backward,
                          forward_context: Callable = contextlib.nullcontext) -> float:
        """``backward(loss)`` when finite; returns the loss."""
        loss = self(encoder, batch, train, forward_context)
        if torch.isfinite(loss):
            backward(loss)
        return loss.item()

    # ---- GradCache's three steps -----------------------------------------------------------

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

    def embedding_gradients(self, local: Tensor, train) -> tuple[Tensor | None, Tensor]:
        """Step 2: gather, loss of the whole batch, and d loss / d (local embeddings)
        ``[roles, s, d]``; ``(None, nan)`` when the embeddings are not finite."""
        full, own = self.gather(local.detach())
        full = full.detach().requires_grad_(True)
        loss = triplet_mnr_loss(full, train.scale, train.symmetric)
        if not torch.isfinite(loss):
            return None, loss.detach()
        (grad,) = torch.autograd.grad(loss, full)
        return grad[:, own], loss.detach()

    def _backward_chunks(self, encoder, chunks, states, grads, train, forward_context) -> None:
        """Step 3 (the hook of the returned loss): re-embed each chunk with its graph (same
        random numbers as step 1) and back-propagate its cached embedding gradient."""
        after = RandomState(encoder.device)
        start = 0
        for chunk, state in zip(chunks, states):
            state.restore()
            with torch.enable_grad():  # a backward hook runs without grad mode
                with forward_context():
                    emb = embed_triplets(encoder, chunk, train.hard_negatives)
                cached = grads[:, start:start + len(chunk)]
                (emb * cached.to(emb.dtype)).sum().backward()  # d/dθ = cached · d emb / dθ
            start += len(chunk)
        after.restore()  # the random stream continues as after one pass over the batch


__all__ = ["Gather", "MNRLoss", "RandomState", "chunked", "embed_triplets", "no_gather",
           "triplet_mnr_loss"]
