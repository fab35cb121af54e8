"""The rows the loaders return: NLI triplets for training, STS pairs for evaluation, and
:class:`Rows`, a list that remembers where its rows came from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple


class NLITriplet(NamedTuple):
    """(premise, entailment hypothesis, contradiction hypothesis of the same premise or None)."""

    anchor: str
    positive: str
    hard_negative: str | None


class STSPair(NamedTuple):
    """Two sentences and their gold similarity (float, 0 = unrelated ... 5 = same meaning)."""

    sentence1: str
    sentence2: str
    score: float


class Rows(list):
    """A list of rows that remembers where it came from.

    ``source``: "local" | "hub" | "generated"; ``paths``: files read (or Hub ids);
    ``skipped``: ``Counter`` of malformed rows left out, reason -> count; ``split``: the split
    read (NLI: "train" or "devtest", ...; "" when not recorded); ``total``: rows before a
    sample was drawn, ``sample_seed``: the seed of that sample (None: all rows).
    """

    def __init__(self, items: Iterable = (), *, source: str = "", paths: Iterable = (),
                 skipped: Counter | dict | None = None, split: str = ""):
        super().__init__(items)
        self.source = source
        self.paths = [str(p) for p in paths]
        self.skipped = Counter(skipped or {})
        self.split = split
        self.total = len(self)
        self.sample_seed: int | None = None

    def __repr__(self) -> str:
        return (f"Rows({len(self)} rows, source={self.source!r}, "
                f"skipped={sum(self.skipped.values())})")
