"""NLI (anchor, positive, hard negative) triplets for MNR training: SNLI + MultiNLI for English,
XNLI for 14 more languages. The hard negative is the contradiction of the same premise."""

from __future__ import annotations

import csv
import functools
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lacos_helpers.checks import check_choice, check_int
from lacos_helpers.data import sources
from lacos_helpers.data.layout import (
    EN_NLI_PARTS,
    EN_NLI_TRAIN_PARTS,
    HUB_LABELS,
    HUB_XNLI,
    NLI_LABELS,
    NLI_SPLITS,
    XNLI_LABELS,
    XNLI_LANGS,
    XNLI_SPLITS,
    nli_en_path,
    xnli_path,
)
from lacos_helpers.data.rows import NLITriplet, Rows

log = logging.getLogger(__name__)

Record = tuple | str  # (premise, hypothesis, label name), or a skip reason


def _nli_record(premise, hypothesis, label: str | None) -> Record:
    if premise is None or hypothesis is None or label is None:
        return "missing field"
    premise, hypothesis, label = str(premise).strip(), str(hypothesis).strip(), label.strip()
    if not premise or not hypothesis:
        return "missing field"
    if label == "-":
        return "no gold label"
    if label not in NLI_LABELS:
        return "unknown label"
    return premise, hypothesis, label


def _read_table(path: Path, delimiter: str, columns: tuple[str, ...],
                **fmt) -> list[tuple[int, tuple]]:
    """(line, values of ``columns``) per row of a file with a header (a value is None where
    the row is short); a header without ``columns`` is a :class:`DataFileError`."""
    records = sources.read_records(path, delimiter, **fmt)
    header = next(records, (1, []))[1]
    index = {name: i for i, name in enumerate(header)}  # a repeated name: the last one
    missing = [c for c in columns if c not in index]
    if missing:
        raise sources.DataFileError(path, 1, f"header lacks column(s) {missing}; found {header}")
    at = [index[c] for c in columns]
    return [(line, tuple(row[i] if i < len(row) else None for i in at)) for line, row in records]


def _read_nli_csv(path: Path) -> list[Record]:
    """SNLI/MultiNLI CSV (``pairID,sentence1,sentence2,label``; label name or '-')."""
    rows = _read_table(path, ",", ("sentence1", "sentence2", "label"))
    return sources.located_records(path, ((line, _nli_record(*r)) for line, r in rows))


def _read_xnli_tsv(path: Path) -> list[Record]:
    """XNLI TSV (``id premise hypothesis label``; 0 entailment, 1 neutral, 2 contradiction)."""
    rows = _read_table(path, "\t", ("premise", "hypothesis", "label"), quoting=csv.QUOTE_NONE)
    return sources.located_records(path, (
        (line, _nli_record(p, h, XNLI_LABELS.get(label.strip(), "?") if label is not None
                           else None)) for line, (p, h, label) in rows))


def _hub_records(ds) -> list[Record]:
    """Row by row, for a Hub stand-in that is not a ``datasets.Dataset`` (or an odd schema)."""
    return [_nli_record(r.get("premise"), r.get("hypothesis"), HUB_LABELS.get(r.get("label"), "?"))
            for r in ds]


# What ``str.strip()`` strips: every code point ``c`` with ``c.isspace()``.
_SPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
          "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _hub_schema(table) -> bool:
    """Whether ``table`` has the Hub's types: string texts, int (ClassLabel) labels."""
    import pyarrow as pa

    def kind(name, *checks):
        return any(check(table.schema.field(name).type) for check in (pa.types.is_null, *checks))

    text = (pa.types.is_string, pa.types.is_large_string)
    return (kind("premise", *text) and kind("hypothesis", *text)
            and kind("label", pa.types.is_integer))


def _table_triplets(table) -> tuple[list[NLITriplet], Counter]:
    """:func:`_triplets` of a Hub table (``premise``, ``hypothesis``, int ``label``), computed
    column-wise. Same rows, order and skip counts as :func:`_hub_records` row by row (the strip
    is ``str.strip()``'s)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def stripped(name):
        return pc.utf8_trim(table.column(name).cast(pa.large_string()), _SPACE)

    def where(mask):
        return pc.fill_null(mask, False)

    premise, hypothesis = stripped("premise"), stripped("hypothesis")
    label = table.column("label").cast(pa.int64())
    filled = where(pc.and_(pc.greater(pc.utf8_length(premise), 0),
                           pc.greater(pc.utf8_length(hypothesis), 0)))
    no_gold = where(pc.equal(label, -1))
    known = pc.is_in(label, value_set=pa.array([-1, 0, 1, 2], pa.int64()))  # null: not known
    masks = {"missing field": pc.invert(filled), "no gold label": pc.and_(filled, no_gold),
             "unknown label": pc.and_(filled, pc.invert(known))}
    skipped = Counter({reason: n for reason, mask in masks.items()
                       if (n := pc.sum(mask).as_py() or 0)})
    keep = pc.and_(filled, pc.is_in(label, value_set=pa.array([0, 2], pa.int64())))
    triplets = _match_negatives(premise.filter(keep).combine_chunks(),
                                hypothesis.filter(keep).combine_chunks(),
                                label.filter(keep).to_numpy() == 0)
    return triplets, skipped


def _group_rank(ids):
    """For each position, how many earlier positions have the same id (0, 1, 2...)."""
    import numpy as np

    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=1)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids)) - starts[ids[order]]
    return rank


def _match_negatives(premise, hypothesis, entails) -> list[NLITriplet]:
    """Entailment and contradiction rows (arrow texts, stripped; ``entails`` a bool array) ->
    triplets in row order, as :func:`_triplets` makes them: the k-th entailment of a premise
    gets its (k mod n)-th of n contradictions. Only the triplets' texts become Python strings."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pc.dictionary_encode(premise).indices.to_numpy().astype(np.int64)
    ent, con = np.flatnonzero(entails), np.flatnonzero(~entails)
    ent_ids, con_ids = ids[ent], ids[con]
    counts = np.bincount(con_ids, minlength=int(ids.max(initial=-1)) + 1)
    starts = np.cumsum(counts) - counts
    by_premise = con[np.argsort(con_ids, kind="stable")]  # contradictions grouped, in row order
    n = counts[ent_ids]
    has = n > 0
    negative = np.zeros(len(ent), np.int64)
    negative[has] = by_premise[starts[ent_ids[has]] + _group_rank(ent_ids)[has] % n[has]]
    negatives = hypothesis.take(pa.array(negative, mask=~has))
    return list(map(NLITriplet, premise.take(ent).to_pylist(), hypothesis.take(ent).to_pylist(),
                    negatives.to_pylist()))


def _hub_triplets(path: str, name: str | None, split: str) -> tuple[list[NLITriplet], Counter]:
    """Triplets and skip counts of one Hub dataset split, read column-wise when it is a
    ``datasets.Dataset`` in the Hub's schema (millions of rows on the train splits)."""
    ds = sources.hub_load(path, name, split)
    table = sources.hub_table(ds, ("premise", "hypothesis", "label"))
    if table is None or not _hub_schema(table):
        return _triplets(_hub_records(ds))
    return _table_triplets(table)


def _triplets(records: list[Record]) -> tuple[list[NLITriplet], Counter]:
    """Entailment rows -> triplets, in file order. The hard negative is a contradiction
    hypothesis of the same premise in the same file (cycling when a premise has several)."""
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


def _nli_parts(lang: str, split: str, xnli: bool = False
               ) -> list[tuple[Callable[[Path], Path], tuple]]:
    """(local path as a function of the data root, Hub (id, config, split)) per file of one
    language and split (train, validation, test, devtest); ``xnli``: English from XNLI too."""
    if lang == "en" and not xnli:
        parts = EN_NLI_TRAIN_PARTS if split == "train" else \
            [part[:3] for part in EN_NLI_PARTS if split in ("devtest", part[3])]
        return [(functools.partial(nli_en_path, file_name=f), (hub, None, hub_split))
                for f, hub, hub_split in parts]
    splits = ("train",) if split == "train" else \
        tuple(s for s in XNLI_SPLITS if split in ("devtest", s))
    return [(functools.partial(xnli_path, split=s, lang=lang), (HUB_XNLI, lang, s))
            for s in splits]


def _effective_split(split: str | None, kind: str, root: Path | None, train_parts) -> str:
    """``split`` when given; else train where the source has it (the Hub always, a local
    folder when it holds the ``train_parts`` files), else devtest (validation + test)."""
    if split not in (None, "auto"):
        return split
    if kind == "hub":
        return "train"
    if kind == "local" and all(path_in(root).is_file() for path_in, _ in train_parts):
        return "train"
    return "devtest"


def _load_nli_one(lang: str, split: str | None, source, data_dir, xnli: bool = False) -> Rows:
    kind, root = sources.pick_source(source, data_dir)
    split = _effective_split(split, kind, root, _nli_parts(lang, "train", xnli))
    parts = _nli_parts(lang, split, xnli)

    def build(groups: list[tuple[list[NLITriplet], Counter]], paths: list) -> Rows:
        rows = Rows(paths=paths)
        for triplets, skipped in groups:  # hard negatives are looked up within one file only
            rows.extend(triplets)
            rows.skipped.update(skipped)
        return rows

    def read_files(root: Path) -> Rows:
        paths = [path_in(root) for path_in, _ in parts]
        reader = _read_nli_csv if lang == "en" and not xnli else _read_xnli_tsv
        return build([_triplets(reader(p)) for p in paths], paths)

    def read_hub() -> Rows:
        return build([_hub_triplets(*hub) for _, hub in parts],
                     [f"{h[0]}:{h[1] + '/' if h[1] else ''}{h[2]}" for _, h in parts])

    rows = sources.load_rows(kind, root, read_files, read_hub, (lang,))
    rows.split = split
    return rows


def _share(sizes: list[int], limit: int) -> list[int]:
    """Split ``limit`` rows as evenly as possible over languages with ``sizes`` rows (water
    filling: a small language gives its unused share to the others; monotone in ``limit``)."""
    take = [0] * len(sizes)
    left = limit
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    for rank, i in enumerate(order):
        take[i] = min(sizes[i], left // (len(sizes) - rank))
        left -= take[i]
    return take


def load_nli_triplets(lang: str | Sequence[str] = "en", limit: int | None = None, *,
                      split: str | None = None, seed: int | None = None,
                      source: str | None = None, data_dir: str | os.PathLike | None = None) -> Rows:
    """NLI (anchor, positive, hard_negative) triplets for MNR training.

    ``lang``: a code of ``XNLI_LANGS`` or a sequence of codes (concatenated in that order).
    ``split``: one of ``NLI_SPLITS`` (the files of each: :mod:`~lacos_helpers.data.layout`), or
    None (auto): train where the source has it (the Hub; a local folder holding the train
    files), else "devtest" (en: SNLI dev+test + MultiNLI dev matched+mismatched, 13,639
    triplets; XNLI validation+test, 830 + 1670). Rows keep file order unless ``seed`` is an int
    (each language shuffled deterministically). ``limit``: at most N triplets in total, shared
    evenly over the languages (first N per language, so smaller limits give subsets).
    """
    langs = [lang] if isinstance(lang, str) else list(lang)
    if not langs:
        raise ValueError("lang must name at least one language")
    for code in langs:
        check_choice(code, XNLI_LANGS, "NLI language")
    if split not in (None, "auto"):
        check_choice(split, NLI_SPLITS, "NLI split")
    check_int(limit, "limit", 0, allow_none=True)

    parts = [_load_nli_one(code, split, source, data_dir) for code in langs]
    if seed is not None:
        for part in parts:
            random.Random(seed).shuffle(part)
    takes = _share([len(p) for p in parts], limit) if limit is not None else [len(p) for p in parts]
    out = Rows(source=parts[0].source if len({p.source for p in parts}) == 1 else "mixed",
               split=parts[0].split if len({p.split for p in parts}) == 1 else "mixed")
    for code, part, take in zip(langs, parts, takes):
        out.extend(part[:take])
        out.paths.extend(part.paths)
        out.skipped.update(part.skipped)
        name = "SNLI+MultiNLI" if code == "en" else "XNLI"
        hard = sum(t.hard_negative is not None for t in part[:take])
        log.info("[data] NLI %s (%s %s): %d triplets (%d with hard negative) from %s (%s)",
                 code, name, part.split, take, hard, sources.where(part),
                 sources.skipped_text(part.skipped))
    if len(langs) > 1:
        log.info("[data] NLI total: %d triplets in %d languages", len(out), len(langs))
    return out


def aligned_xnli_triplets(langs: Sequence[str], *, split: str | None = None,
                          source: str | None = None,
                          data_dir: str | os.PathLike | None = None) -> dict[str, Rows]:
    """{language: its XNLI triplets} for ``langs`` (English too), row i the same pair in every
    language; rows that differ in count are not aligned: an error."""
    for code in langs:
        check_choice(code, XNLI_LANGS, "XNLI language")
    parts = {code: _load_nli_one(code, split, source, data_dir, xnli=True)
             for code in dict.fromkeys(langs)}
    counts = {code: len(part) for code, part in parts.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"XNLI rows are not aligned across languages (triplets per language: "
                         f"{counts}): pairs need the same rows")
    return parts


def crosslingual_triplets(langs: Sequence[str], per_row: int, *, seed: int = 42,
                          split: str | None = None, source: str | None = None,
                          data_dir: str | os.PathLike | None = None) -> Rows:
    """Triplets across languages from XNLI's aligned rows (row i is the same pair in every
    language, English too): ``per_row`` per entailment row, each in two languages a != b of
    ``langs`` drawn at random: (premise in a, entailment in b), (premise in a, premise in b) or
    (entailment in a, entailment in b), b's contradiction the hard negative."""
    langs = list(dict.fromkeys(langs))
    if len(langs) < 2:
        raise ValueError(f"cross-lingual triplets need two languages or more, got {langs}")
    check_int(per_row, "per_row", 0)
    parts = list(aligned_xnli_triplets(langs, split=split, source=source,
                                       data_dir=data_dir).values())
    rng = random.Random(seed)
    out = Rows(source=parts[0].source, split=parts[0].split,
               paths=[p for part in parts for p in part.paths])
    for i in range(len(parts[0]) * per_row):
        a, b = (parts[k][i // per_row] for k in rng.sample(range(len(parts)), 2))
        pair = ((a.anchor, b.positive), (a.anchor, b.anchor), (a.positive, b.positive))
        out.append(NLITriplet(*pair[rng.randrange(3)], b.hard_negative))
    log.info("[data] NLI cross-lingual: %d triplets (%d per XNLI row)", len(out), per_row)
    return out


def run_triplets(spec, seed: int, source: str | None = None) -> Rows:
    """The NLI triplets a run trains on (``spec``: its :class:`~lacos_helpers.config.DataConfig`,
    ``source``: default ``spec.source``): its languages' (seeded), then its cross-lingual ones."""
    kw = dict(seed=seed, split=spec.nli_split, source=source or spec.source)
    rows = load_nli_triplets(spec.train_langs, limit=spec.nli_limit, **kw)
    if spec.crosslingual:
        rows += crosslingual_triplets(spec.train_langs, spec.crosslingual, **kw)
    return rows


def training_texts(triplets: Iterable[NLITriplet]) -> list[str]:
    """Every text of the training triplets (anchor, positive, hard negative), in order: what a
    tokenizer trained for this data (the tiny BLOOM's) should see. Never STS: that is test data."""
    texts: list[str] = []
    for t in triplets:
        texts += [t.anchor, t.positive] + ([t.hard_negative] if t.hard_negative else [])
    return texts
