"""Hub NLI loading: row by row (as before: ``for r in ds``) vs column-wise (pyarrow), on a local
stand-in in the Hub's schema (``premise``, ``hypothesis``, ClassLabel ``label`` with -1 = no gold
label), memory-mapped from disk as ``load_dataset`` leaves it. Both go through
``load_nli_triplets(..., source="hub")`` with ``sources.hub_load`` answered by the stand-in, one
after the other in one process; the triplets and skip counts must be equal.

    python benchmarks/bench_hub_nli.py                 # 1M rows (~1/3 of the Hub's train rows)
    python benchmarks/bench_hub_nli.py --rows 50000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

LABELS = ["entailment", "neutral", "contradiction"]


def standin_columns(rows: int, seed: int = 0) -> dict[str, list]:
    """SNLI-like columns: premises with an entailment, a neutral and a contradiction hypothesis
    (sometimes several or none, in shuffled order), ~1% no gold label (-1), a few empty or
    blank fields and texts with surrounding whitespace."""
    rng = random.Random(seed)
    premise, hypothesis, label = [], [], []
    p = 0
    while len(label) < rows:
        p += 1
        text = f"A person number {p} does thing {rng.randrange(10**6)} outdoors."
        group = [0, 1, 2] + rng.choices([0, 2, 2, -1, 1], k=rng.choice([0, 0, 0, 1, 2]))
        if rng.random() < 0.05:
            group.remove(2)
        rng.shuffle(group)
        for k, lab in enumerate(group):
            odd = rng.random()
            premise.append(None if odd < 0.0005 else f" {text}\t" if odd < 0.01 else text)
            hypothesis.append("  " if 0.0005 <= odd < 0.001 else
                              f"Hypothesis {k} of premise {p}, label {lab}.")
            label.append(-1 if odd > 0.99 else lab)
    return {"premise": premise[:rows], "hypothesis": hypothesis[:rows], "label": label[:rows]}


def standin_dataset(rows: int, seed: int = 0, folder: str | None = None):
    """A ``datasets.Dataset`` of :func:`standin_columns`; memory-mapped from ``folder`` when
    given (saved there and loaded back)."""
    from datasets import ClassLabel, Dataset, Features, Value, load_from_disk

    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=LABELS)})
    ds = Dataset.from_dict(standin_columns(rows, seed), features=features)
    if folder is None:
        return ds
    ds.save_to_disk(folder)
    return load_from_disk(folder)


def row_by_row(path, name, split):
    """What ``_read_nli_hub`` did before: one Python dict per row of the dataset."""
    from lacos_helpers.data import nli, sources

    return nli._triplets(nli._hub_records(sources.hub_load(path, name, split)))


def timed_load(ds, reader=None) -> tuple[float, float, object]:
    """Wall and CPU seconds, and the rows, of ``load_nli_triplets("de", split="train",
    source="hub")`` with the Hub answered by ``ds`` (and ``reader`` in place of the column-wise
    reader when given)."""
    from lacos_helpers import data
    from lacos_helpers.data import nli, sources

    saved = sources.hub_load, nli._hub_triplets
    sources.hub_load = lambda path, name, split: ds
    if reader is not None:
        nli._hub_triplets = reader
    try:
        start, cpu = time.perf_counter(), time.process_time()
        rows = data.load_nli_triplets("de", split="train", source="hub")
        return time.perf_counter() - start, time.process_time() - cpu, rows
    finally:
        sources.hub_load, nli._hub_triplets = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        ds = standin_dataset(args.rows, args.seed, folder)
        print(f"stand-in: {len(ds):,} rows, {ds.features['label']}, built in "
              f"{time.perf_counter() - start:.1f} s")
        before, before_cpu, slow = timed_load(ds, row_by_row)
        after, after_cpu, fast = timed_load(ds)
    assert list(slow) == list(fast) and slow.skipped == fast.skipped, "results differ"
    print(f"{len(fast):,} triplets, skipped {dict(fast.skipped)} (equal both ways)")
    print(f"row by row (before): {before:.2f} s (CPU {before_cpu:.2f} s)\n"
          f"column-wise (after): {after:.2f} s (CPU {after_cpu:.2f} s)\n"
          f"speed-up: {before / after:.1f}x wall, {before_cpu / after_cpu:.1f}x CPU")


if __name__ == "__main__":
    main()
