"""Training batches with no text twice: no false in-batch negatives, deterministic per
(seed, epoch), each triplet at most once per epoch, hard negatives optional."""

from __future__ import annotations

from collections import Counter

import pytest

from lacos_helpers.data import (
    NLITriplet,
    epoch_order,
    load_nli_triplets,
    no_duplicate_batches,
    text_key,
)


def nli_like(premises: int = 40, per_premise: int = 3) -> list[NLITriplet]:
    """Each premise is the anchor of ``per_premise`` triplets and shares its contradiction
    (as NLI does); every 5th premise repeats with other case/spacing, every 7th has no hard
    negative, and a positive reappears as another triplet's hard negative."""
    out = []
    for p in range(premises):
        anchor = f"Premise number {p}." if p % 5 else f"  premise NUMBER {p // 5}. "
        for h in range(per_premise):
            negative = None if p % 7 == 0 else f"Contradiction {p}."
            out.append(NLITriplet(anchor, f"Entailment {p}-{h}.", negative))
    out.append(NLITriplet("A lonely anchor.", "Lonely positive.", "Entailment 3-0."))
    return out


def assert_no_shared_text(batch):
    owners = Counter()
    for triplet in batch:
        owners.update({text_key(t) for t in triplet if t is not None})
    repeated = [t for t, n in owners.items() if n > 1]
    assert not repeated, repeated


def test_no_text_appears_in_two_triplets_of_a_batch():
    triplets = nli_like()
    batches = no_duplicate_batches(triplets, 8)
    assert len(batches) >= len(triplets) // 8 - 2
    for batch in batches:
        assert len(batch) == 8
        assert_no_shared_text(batch)
    # the naive sequential split of the same order would have false negatives
    order = [triplets[i] for i in epoch_order(len(triplets))]
    naive = [order[i:i + 8] for i in range(0, len(order) - 7, 8)]
    with pytest.raises(AssertionError):
        for batch in naive:
            assert_no_shared_text(batch)


@pytest.mark.parametrize("drop_last", [True, False])
def test_each_triplet_at_most_once_per_epoch(drop_last):
    triplets = nli_like()
    seen = Counter(t for batch in no_duplicate_batches(triplets, 6, drop_last=drop_last)
                   for t in batch)
    assert max(seen.values()) == 1
    if drop_last:
        assert sum(seen.values()) > 0.8 * len(triplets)
    else:  # nothing dropped: every triplet exactly once, small batches only at the end
        assert set(seen) == set(triplets)
        batches = no_duplicate_batches(triplets, 6, drop_last=False)
        assert all(0 < len(b) <= 6 for b in batches)
        for batch in batches:
            assert_no_shared_text(batch)


def test_deterministic_resumable_and_different_per_epoch_and_seed():
    triplets = nli_like()
    epoch0 = no_duplicate_batches(triplets, 8, seed=1, epoch=0)
    no_duplicate_batches(triplets, 8, seed=1, epoch=3)  # no hidden state between calls
    assert no_duplicate_batches(list(triplets), 8, seed=1, epoch=0) == epoch0
    assert no_duplicate_batches(triplets, 8, seed=1, epoch=1) != epoch0
    assert no_duplicate_batches(triplets, 8, seed=2, epoch=0) != epoch0
    assert epoch_order(50, 1, 0) == epoch_order(50, 1, 0) != epoch_order(50, 1, 1)
    assert sorted(epoch_order(50, 1, 0)) == list(range(50))


def greedy_first_batch(order, size):
    """Reference: the first ``size`` triplets of ``order`` that share no text, and the ones
    skipped on the way."""
    first, skipped, used = [], [], set()
    for t in order:
        keys = {text_key(x) for x in t if x is not None}
        if keys & used:
            skipped.append(t)
            continue
        first.append(t)
        used |= keys
        if len(first) == size:
            break
    return first, skipped


def test_greedy_fill_defers_conflicting_triplets_to_later_batches():
    """Batch 0 is the first conflict-free triplets in the (seed, epoch) order; a skipped
    triplet comes back in a later batch instead of being lost."""
    triplets = nli_like(premises=6)
    checked = 0
    for seed in range(20):
        order = [triplets[i] for i in epoch_order(len(triplets), seed, 0)]
        first, skipped = greedy_first_batch(order, 4)
        batches = no_duplicate_batches(triplets, 4, seed=seed, epoch=0, drop_last=False)
        assert batches[0] == first
        for t in skipped:
            assert any(t in b for b in batches[1:])
        checked += len(skipped)
    assert checked > 0


def test_hard_negative_none_and_plain_tuples():
    pairs = [(f"anchor {i}", f"positive {i}", None) for i in range(10)]
    pairs += [(f"anchor {i}", f"other positive {i}") for i in range(10)]  # 2-tuples
    batches = no_duplicate_batches(pairs, 5)
    assert len(batches) == 4
    for batch in batches:
        assert_no_shared_text(batch)


def test_real_nli_triplets_have_no_duplicates_in_a_batch():
    triplets = load_nli_triplets("en", limit=600)
    batches = no_duplicate_batches(triplets, 16)
    assert len(batches) >= len(triplets) // 16 - 3
    for batch in batches:
        assert_no_shared_text(batch)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"triplets": [], "batch_size": 4}, ValueError, "empty"),
    ({"batch_size": 1}, ValueError, "batch_size must be an int >= 2"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, ValueError, "batch_size"),
    ({"batch_size": 4, "epoch": -1}, ValueError, "epoch"),
    ({"triplets": [("a", "b", None), ("a",)], "batch_size": 2}, TypeError, r"triplets\[1\]"),
    ({"triplets": [("a", "b"), ("c", None, "d")], "batch_size": 2}, TypeError,
     r"triplets\[1\]"),
    ({"triplets": ["abc", "def"], "batch_size": 2}, TypeError, r"triplets\[0\]"),
])
def test_bad_input_is_a_clear_error(kwargs, error, match):
    kwargs = {"triplets": nli_like(4), **kwargs}
    with pytest.raises(error, match=match):
        no_duplicate_batches(**kwargs)
