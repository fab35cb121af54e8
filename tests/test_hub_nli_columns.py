"""Hub NLI and STS rows are read column-wise (pyarrow), never row by row over the
``datasets.Dataset``, and give exactly what the row-by-row reader gave: the same triplets in
the same order, the same hard negatives and the same skip counts. The reference below is the
row-by-row reader they replace, kept verbatim."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from lacos_helpers import data, runtime
from lacos_helpers.data import nli, sources
from lacos_helpers.data.rows import NLITriplet

LABELS = ["entailment", "neutral", "contradiction"]
CLASS_LABEL = Features({"premise": Value("string"), "hypothesis": Value("string"),
                        "label": ClassLabel(names=LABELS)})
INT_LABEL = Features({**CLASS_LABEL, "label": Value("int64")})
HUB_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction", -1: "-"}


# --------------------------------------------------------------------------- reference

def _reference_record(premise, hypothesis, label):
    if premise is None or hypothesis is None or label is None:
        return "missing field"
    premise, hypothesis, label = str(premise).strip(), str(hypothesis).strip(), label.strip()
    if not premise or not hypothesis:
        return "missing field"
    if label == "-":
        return "no gold label"
    if label not in LABELS:
        return "unknown label"
    return premise, hypothesis, label


def reference(ds) -> tuple[list[NLITriplet], Counter]:
    """The former ``_read_nli_hub`` + ``_triplets``: one Python dict per row."""
    records = [_reference_record(r.get("premise"), r.get("hypothesis"),
                                 HUB_LABELS.get(r.get("label"), "?")) for r in ds]
    skipped = Counter(r for r in records if isinstance(r, str))
    good = [r for r in records if not isinstance(r, str)]
    contradictions: dict[str, list[str]] = {}
    for premise, hypothesis, label in good:
        if label == "contradiction":
            contradictions.setdefault(premise, []).append(hypothesis)
    seen: Counter = Counter()
    out = []
    for premise, hypothesis, label in good:
        if label == "entailment":
            negs = contradictions.get(premise)
            out.append(NLITriplet(premise, hypothesis,
                                  negs[seen[premise] % len(negs)] if negs else None))
            seen[premise] += 1
    return out, skipped


# --------------------------------------------------------------------------- stand-ins

EDGE_ROWS = [  # (premise, hypothesis, label id)
    ("A man plays.", "Someone plays.", 0),            # entailment before its contradictions
    ("A man plays.", "He sleeps.", 2),
    ("A man plays.", "He is absent.", 2),             # several contradictions per premise
    ("A man plays.", "A person plays.", 0),           # second entailment: second contradiction
    ("  A man plays.\u3000", "A human plays.", 0),    # same premise once stripped: cycles back
    ("A man plays.", "He plays well.", 1),
    (None, "No premise.", 0),                         # missing premise
    ("Kids run.", None, 2),                           # missing hypothesis
    ("Kids run.", "   ", 0),                          # blank hypothesis
    ("\x1c\xa0\u2003", "Only Python whitespace.", 0),  # blank to str.strip()
    ("\u200bZero width.", "Not whitespace.", 0),      # \u200b is not stripped
    ("Kids run.", "Children move.", 0),               # premise without a contradiction yet...
    ("Kids run.", "Unlabelled.", -1),                 # no gold label
    (None, "Unlabelled, no premise.", -1),            # missing field wins over no gold label
    ("Kids run.", "Odd label.", 7),                   # unknown label (None for a ClassLabel)
    ("Kids run.", "No label.", None),                 # null label: unknown label too
    ("Kids run.", "Nobody moves.", 2),                # ...found later in the file
    ("Dogs bark.", "Animals make noise.", 0),         # no contradiction at all
    ("Dogs bark.", "", 1),                            # empty hypothesis on a neutral row
    ("\tDogs bark. ", " Cats meow.\n", 2),            # stripped texts
]


def _dataset(rows, features=CLASS_LABEL, **extra) -> Dataset:
    """``rows`` in a Dataset of ``features`` (+ string columns ``extra``); a ClassLabel
    holds -1..2 or null only."""
    valid = range(-1, 3) if isinstance(features["label"], ClassLabel) else None
    cols = {"premise": [r[0] for r in rows], "hypothesis": [r[1] for r in rows],
            "label": [r[2] if valid is None or r[2] in valid else None for r in rows], **extra}
    return Dataset.from_dict(cols, features=Features({**features,
                                                      **{k: Value("string") for k in extra}}))


def _bench():
    """``benchmarks/bench_hub_nli.py`` (its stand-in generator)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_hub_nli.py"
    spec = importlib.util.spec_from_file_location("bench_hub_nli", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_hub_nli", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_row_loop(monkeypatch):
    """Iterating a ``Dataset`` row by row fails the test (call after the reference ran)."""
    def apply():
        monkeypatch.setattr(Dataset, "__iter__", lambda self: pytest.fail("row-by-row loop"))
    return apply


@pytest.fixture
def hub(monkeypatch):
    """The Hub reachable and answered by ``hub.ds`` (set by the test)."""
    monkeypatch.delenv("LACOS_DATA_DIR", raising=False)
    monkeypatch.delenv(sources.SOURCE_ENV, raising=False)
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=3.0: True)

    class Hub:
        ds = None

    monkeypatch.setattr(sources, "hub_load", lambda path, name, split: Hub.ds)
    return Hub


# --------------------------------------------------------------------------- parity

@pytest.mark.parametrize("features", [CLASS_LABEL, INT_LABEL], ids=["ClassLabel", "int64"])
def test_edge_cases_match_the_row_by_row_reader(hub, no_row_loop, features):
    ds = hub.ds = _dataset(EDGE_ROWS, features)
    expected, skipped = reference(ds)
    assert expected[:3] == [NLITriplet("A man plays.", "Someone plays.", "He sleeps."),
                            NLITriplet("A man plays.", "A person plays.", "He is absent."),
                            NLITriplet("A man plays.", "A human plays.", "He sleeps.")]
    assert skipped == {"missing field": 6, "no gold label": 1, "unknown label": 2}
    no_row_loop()
    rows = data.load_nli_triplets("de", split="validation")
    assert list(rows) == expected and rows.skipped == skipped and rows.source == "hub"


@pytest.mark.parametrize("variant", ["selected", "mnli-columns", "no-label-column",
                                     "int-premise", "empty", "large_string"])
def test_other_shapes_match_the_row_by_row_reader(variant):
    if variant == "selected":  # an indices mapping (select, shuffle, filter)
        ds = _dataset(EDGE_ROWS).select(range(len(EDGE_ROWS) - 1, -1, -1))
    elif variant == "mnli-columns":
        ds = _dataset(EDGE_ROWS, genre=["fiction"] * len(EDGE_ROWS),
                      premise_parse=["( )"] * len(EDGE_ROWS))
    elif variant == "no-label-column":
        ds = _dataset(EDGE_ROWS).remove_columns("label")
    elif variant == "int-premise":  # not the Hub's schema: row by row, str(premise)
        ds = Dataset.from_dict({"premise": [1, 1, 2], "hypothesis": ["a", "b", "c"],
                                "label": [0, 2, 0]})
    elif variant == "empty":
        ds = _dataset([])
    else:
        ds = _dataset(EDGE_ROWS).cast(Features({**CLASS_LABEL,
                                                "premise": Value("large_string")}))
    sources_hub_load = sources.hub_load
    try:
        sources.hub_load = lambda path, name, split: ds
        assert nli._hub_triplets("facebook/xnli", "de", "train") == reference(ds)
    finally:
        sources.hub_load = sources_hub_load


def test_50k_rows_match_the_row_by_row_reader(hub, no_row_loop):
    """The benchmark's stand-in (SNLI-like: several or no contradictions per premise, -1
    labels, blank fields, padded premises), 50k rows."""
    ds = hub.ds = _bench().standin_dataset(50_000, seed=1)
    expected, skipped = reference(ds)
    assert sum(t.hard_negative is None for t in expected) > 100 and skipped["no gold label"]
    no_row_loop()
    rows = data.load_nli_triplets("de", split="train")
    assert list(rows) == expected and rows.skipped == skipped


def test_strip_characters_are_those_of_str_strip():
    space = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert space == nli._SPACE


def test_hub_sts_is_read_column_wise(hub, no_row_loop):
    ds = hub.ds = Dataset.from_dict(
        {"sentence1": ["A.", " C. ", None, "E.", "G."], "sentence2": ["B.", "D.", "x", "F.", ""],
         "similarity_score": [2.2, 5.0, 1.0, 5.5, 3.0]},
        features=Features({"sentence1": Value("string"), "sentence2": Value("string"),
                           "similarity_score": Value("float32")}))
    expected = [data.STSPair(r["sentence1"].strip(), r["sentence2"], r["similarity_score"])
                for r in ds.select(range(2))]
    no_row_loop()
    pairs = data.load_sts("de")
    assert list(pairs) == expected and pairs[0].score == pytest.approx(2.2)
    assert pairs.skipped == {"missing field": 2, "score out of range": 1}
