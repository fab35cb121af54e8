"""Training batches in which no text appears twice: a repeated text would be a false in-batch
negative for MNR (sentence-transformers' ``NoDuplicatesBatchSampler``), and :class:`BatchPlan`,
the batch of any step as a pure function of the step (what makes resume exact)."""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence

from lacos_helpers.checks import check_int
from lacos_helpers.data.rows import NLITriplet


def text_key(text: str) -> str:
    """What counts as "the same text" within a batch: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def _triplet_keys(triplet, index: int) -> frozenset[str]:
    """The :func:`text_key` of a triplet's texts (anchor, positive, hard negative if any)."""
    if isinstance(triplet, str) or not isinstance(triplet, Sequence) \
            or len(triplet) not in (2, 3):
        raise TypeError(f"triplets[{index}] must be an NLITriplet or an (anchor, positive[, "
                        f"hard_negative]) tuple, got {type(triplet).__name__}")
    texts = [t for t in triplet[2:] if t is not None] + list(triplet[:2])
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"triplets[{index}] needs str anchor and positive (hard_negative str or "
                        f"None), got {tuple(type(t).__name__ for t in triplet)}")
    return frozenset(text_key(t) for t in texts)


def epoch_order(n: int, seed: int = 42, epoch: int = 0) -> list[int]:
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)`` (same on every
    machine and Python version)."""
    order = list(range(n))
    random.Random(f"no-duplicates:{seed}:{epoch}").shuffle(order)
    return order


def no_duplicate_batches(triplets: Sequence[NLITriplet], batch_size: int, seed: int = 42,
                         epoch: int = 0, drop_last: bool = True) -> list[list[NLITriplet]]:
    """One epoch of batches in which no text (anchor, positive or hard negative, compared by
    :func:`text_key`) belongs to two triplets of the same batch.

    The triplets are shuffled by ``(seed, epoch)``; each batch is filled greedily in that order,
    a triplet that shares a text with the batch so far waits for a later batch. Each triplet
    appears at most once per epoch; with ``drop_last`` batches that cannot be filled to
    ``batch_size`` are dropped (their triplets skip this epoch), else kept (smaller).
    """
    check_int(batch_size, "batch_size", 2, why="in-batch negatives need another pair")
    check_int(epoch, "epoch", 0)
    items = list(triplets)
    if not items:
        raise ValueError("no triplets to batch (empty input)")
    keys = [_triplet_keys(t, i) for i, t in enumerate(items)]
    remaining = dict.fromkeys(epoch_order(len(items), seed, epoch))  # ordered set
    batches: list[list[NLITriplet]] = []
    while remaining:
        chosen: list[int] = []
        seen: set[str] = set()
        for i in remaining:  # the first triplets that share no text with the batch so far
            if not keys[i] & seen:
                chosen.append(i)
                seen |= keys[i]
                if len(chosen) == batch_size:
                    break
        if len(chosen) == batch_size or not drop_last:
            batches.append([items[i] for i in chosen])
        for i in chosen:
            del remaining[i]
    return batches


class BatchPlan:
    """Micro-batch ``m`` (0-based, over all epochs) as a pure function of ``m``: the batches of
    :func:`data.no_duplicate_batches` for epoch 0, 1, ... (each with its own shuffle) laid end
    to end. Epochs may differ in length (deferred duplicates can drop a last partial batch)."""

    def __init__(self, triplets: Sequence, batch_size: int, seed: int):
        self.triplets, self.batch_size, self.seed = list(triplets), batch_size, seed
        self._starts: list[int] = [0]  # first micro-batch index of each epoch computed so far
        self._epoch, self._batches = None, None
        self.batches_per_epoch = len(self._epoch_batches(0))
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(self.triplets)} triplets do not fill one batch of "
                             f"{batch_size}")

    def _epoch_batches(self, epoch: int):
        if epoch != self._epoch:
            self._batches = no_duplicate_batches(
                self.triplets, self.batch_size, seed=self.seed, epoch=epoch)
            self._epoch = epoch
        return self._batches

    def __getitem__(self, m: int):
        if m < 0:
            raise IndexError(f"micro-batch index must be >= 0, got {m}")
        while self._starts[-1] <= m:  # compute epoch lengths up to the one that holds m
            self._starts.append(self._starts[-1] + len(self._epoch_batches(len(self._starts) - 1)))
        epoch = bisect.bisect_right(self._starts, m) - 1
        return self._epoch_batches(epoch)[m - self._starts[epoch]]
