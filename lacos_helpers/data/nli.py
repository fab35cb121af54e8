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


def _read_table(path: Path, delimiter: str, columns: tuple[str, ...], **kw) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"NLI file not found: {path}")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, **kw)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {missing}; found {reader.fieldnames}")
        return list(reader)


def _read_nli_csv(path: Path) -> list[Record]:
    """SNLI/MultiNLI CSV (``pairID,sentence1,sentence2,label``; label name or '-')."""
    rows = _read_table(path, ",", ("sentence1", "sentence2", "label"))
    return [_nli_record(r["sentence1"], r["sentence2"], r["label"]) for r in rows]


def _read_xnli_tsv(path: Path) -> list[Record]:
    """XNLI TSV (``id premise hypothesis label``; 0 entailment, 1 neutral, 2 contradiction)."""
    rows = _read_table(path, "\t", ("premise", "hypothesis", "label"), quoting=csv.QUOTE_NONE)
    out = []
    for r in rows:
        label = r["label"]
        label = XNLI_LABELS.get(label.strip(), "?") if label is not None else None
        out.append(_nli_record(r["premise"], r["hypothesis"], label))
    return out


def _read_nli_hub(path: str, name: str | None, split: str) -> list[Record]:
    ds = sources.hub_load(path, name, split)
    return [_nli_record(r.get("premise"), r.get("hypothesis"), HUB_LABELS.get(r.get("label"), "?"))
            for r in ds]


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


def _nli_parts(lang: str, split: str) -> list[tuple[Callable[[Path], Path], tuple]]:
    """(local path as a function of the data root, Hub (id, config, split)) per file of one
    language and split (train, validation, test, devtest)."""
    if lang == "en" and split == "train":
        return [(functools.partial(nli_en_path, file_name=f), (hub, None, hub_split))
                for f, hub, hub_split in EN_NLI_TRAIN_PARTS]
    if lang == "en":
        return [(functools.partial(nli_en_path, file_name=f), (hub, None, hub_split))
                for f, hub, hub_split, ours in EN_NLI_PARTS if split in ("devtest", ours)]
    splits = ("train",) if split == "train" else \
        tuple(s for s in XNLI_SPLITS if split in ("devtest", s))
    return [(functools.partial(xnli_path, split=s, lang=lang), (HUB_XNLI, lang, s))
            for s in splits]


def _effective_split(lang: str, split: str | None, kind: str, root: Path | None) -> str:
    """``split`` when given; else train where the source has it (the Hub always, a local
    folder when it holds the train files), else devtest (validation + test)."""
    if split not in (None, "auto"):
        return split
    if kind == "hub":
        return "train"
    if kind == "local" and all(path_in(root).is_file() for path_in, _ in _nli_parts(lang, "train")):
        return "train"
    return "devtest"


def _load_nli_one(lang: str, split: str | None, source, data_dir) -> Rows:
    kind, root = sources.pick_source(source, data_dir)
    split = _effective_split(lang, split, kind, root)
    parts = _nli_parts(lang, split)

    def build(groups: list[list[Record]], paths: list) -> Rows:
        rows = Rows(paths=paths)
        for records in groups:  # hard negatives are looked up within one file only
            triplets, skipped = _triplets(records)
            rows.extend(triplets)
            rows.skipped.update(skipped)
        return rows

    def read_files(root: Path) -> Rows:
        paths = [path_in(root) for path_in, _ in parts]
        reader = _read_nli_csv if lang == "en" else _read_xnli_tsv
        return build([reader(p) for p in paths], paths)

    def read_hub() -> Rows:
        return build([_read_nli_hub(*hub) for _, hub in parts],
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

    ``lang``: a code of ``XNLI_LANGS`` or a sequence of codes (concatenated in that
    order). ``split``: None (auto) = the train split where the source has it (the Hub: SNLI +
    MultiNLI train for English, XNLI train for the others; a local folder when it holds
    ``nli_en/snli_1.0_train.csv``, ``nli_en/multinli_1.0_train.csv``, ``xnli/xnli_train_{lang}
    .tsv``), else "devtest": SNLI dev+test + MultiNLI dev matched+mismatched for English (13,639
    triplets), XNLI validation+test for the others (830 + 1670). "train", "validation" (en: SNLI
    dev + MNLI dev-matched), "test" (en: SNLI test + MNLI dev-mismatched) and "devtest" ask for
    one. Rows keep file order unless ``seed`` is an int, which shuffles each language
    deterministically. ``limit``: at most N triplets in total, shared evenly over the languages
    (first N per language, so smaller limits give subsets).
    """
    langs = [lang] if isinstance(lang, str) else list(lang)
    if not langs:
        raise ValueError("lang must name at least one language")
    for code in langs:
        sources.check_choice(code, XNLI_LANGS, "NLI language")
    if split not in (None, "auto"):
        sources.check_choice(split, NLI_SPLITS, "NLI split")
    sources.check_limit(limit)

    parts = [_load_nli_one(code, split, source, data_dir) for code in langs]
    if seed is not None:
        for part in parts:
            random.Random(seed).shuffle(part)
    takes = _share([len(p) for p in parts], limit) if limit is not None else [len(p) for p in parts]
    out = Rows(source=parts[0].source, split=parts[0].split)
    for code, part, take in zip(langs, parts, takes):
        out.extend(part[:take])
        out.paths.extend(part.paths)
        out.skipped.update(part.skipped)
        if part.source != out.source:
            out.source = "mixed"
        if part.split != out.split:
            out.split = "mixed"
        name = "SNLI+MultiNLI" if code == "en" else "XNLI"
        hard = sum(t.hard_negative is not None for t in part[:take])
        log.info("[data] NLI %s (%s %s): %d triplets (%d with hard negative) from %s (%s)",
                 code, name, part.split, take, hard, sources.where(part),
                 sources.skipped_text(part.skipped))
    if len(langs) > 1:
        log.info("[data] NLI total: %d triplets in %d languages", len(out), len(langs))
    return out


def training_texts(triplets: Iterable[NLITriplet]) -> list[str]:
    """Every text of the training triplets (anchor, positive, hard negative), in order: what a
    tokenizer trained for this data (the tiny BLOOM's) should see. Never STS: that is test data."""
    texts: list[str] = []
    for t in triplets:
        texts += [t.anchor, t.positive] + ([t.hard_negative] if t.hard_negative else [])
    return texts
