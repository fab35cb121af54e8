"""STS-B in 10 languages (``stsb_multi_mt``), and cross-lingual pairs built from its aligned
rows: the evaluation data."""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from lacos_helpers.checks import check_choice, check_int
from lacos_helpers.data import sources
from lacos_helpers.data.layout import HUB_STS, STS_LANGS, STS_SPLITS, sts_path
from lacos_helpers.data.rows import Rows, STSPair

log = logging.getLogger(__name__)

Raw = STSPair | str  # a parsed row, or the reason it was skipped


def _parse_sts_row(row: Sequence) -> Raw:
    """One ``sentence1, sentence2, score`` row -> STSPair, or the reason it is skipped."""
    if len(row) < 3 or any(x is None for x in row[:3]):
        return "missing field"
    if len(row) > 3:
        return "extra field"
    s1, s2 = str(row[0]).strip(), str(row[1]).strip()
    if not s1 or not s2:
        return "missing field"
    try:
        score = float(row[2])
    except (TypeError, ValueError):
        return "bad score"
    if not 0.0 <= score <= 5.0:  # also rejects NaN
        return "score out of range"
    return STSPair(s1, s2, score)


def _read_sts_file(path: Path) -> list[Raw]:
    """Rows of an STS-B CSV (no header); skipped rows are counted and logged with their line."""
    rows = sources.read_records(path, ",", columns=3)
    return sources.located_records(path, ((line, _parse_sts_row(row)) for line, row in rows))


def _read_sts_hub(lang: str, split: str) -> list[Raw]:
    """Rows of one Hub split, read column by column (row by row for a stand-in list)."""
    ds = sources.hub_load(HUB_STS, lang, split)
    columns = ("sentence1", "sentence2", "similarity_score")
    table = sources.hub_table(ds, columns)
    if table is None:
        rows = [tuple(r.get(c) for c in columns) for r in ds]
    else:
        rows = zip(*(table.column(c).to_pylist() for c in columns))
    return [_parse_sts_row(row) for row in rows]


def _align(raw_x: list[Raw], raw_y: list[Raw], names: tuple[str, str]) -> list[Raw]:
    """Row i of language X (sentence1) with row i of language Y (sentence2); gold scores must
    agree."""
    if len(raw_x) != len(raw_y):
        raise ValueError(f"cross-lingual STS: {names[0]} has {len(raw_x)} rows but {names[1]} "
                         f"has {len(raw_y)}; the files are not aligned")
    out: list[Raw] = []
    for i, (a, b) in enumerate(zip(raw_x, raw_y)):
        if isinstance(a, str) or isinstance(b, str):
            out.append(a if isinstance(a, str) else b)
        elif abs(a.score - b.score) > 1e-6:
            raise ValueError(f"cross-lingual STS: row {i} has score {a.score} in {names[0]} but "
                             f"{b.score} in {names[1]}; the files are not aligned")
        else:
            out.append(STSPair(a.sentence1, b.sentence2, a.score))
    return out


SCORE_STRATA = (1.0, 2.0, 3.0, 4.0)  # gold-score bin edges: [0,1) [1,2) [2,3) [3,4) [4,5]


def stratified_sample(scores: Sequence[float], n: int, seed: int = 0) -> list[int]:
    """Indices (sorted) of ``n`` of the ``scores``, a seeded sample stratified by gold score:
    each bin of :data:`SCORE_STRATA` gets its share (largest remainders round), drawn at random
    within the bin. Depends on the scores and the seed only, so aligned files (every language
    of STS-B has the same scores row by row) give the same rows in every language."""
    if n >= len(scores):
        return list(range(len(scores)))
    bins: dict[int, list[int]] = {}
    for i, score in enumerate(scores):
        bins.setdefault(sum(score >= edge for edge in SCORE_STRATA), []).append(i)
    quotas = {b: n * len(members) / len(scores) for b, members in bins.items()}
    take = {b: int(q) for b, q in quotas.items()}
    for b in sorted(quotas, key=lambda b: (take[b] - quotas[b], b))[:n - sum(take.values())]:
        take[b] += 1
    rng = random.Random(f"sts-sample:{seed}")
    chosen = [i for b in sorted(bins) for i in rng.sample(bins[b], take[b])]
    return sorted(chosen)


def _sts_rows(raw: list[Raw], limit: int | None, paths, seed: int) -> Rows:
    pairs = [r for r in raw if isinstance(r, STSPair)]
    skipped = Counter(r for r in raw if isinstance(r, str))
    rows = Rows(pairs, paths=paths, skipped=skipped)
    if limit is not None and limit < len(pairs):
        index = stratified_sample([p.score for p in pairs], limit, seed)
        rows[:] = [pairs[i] for i in index]
        rows.sample_seed = seed
    return rows


def load_sts(lang: str | Sequence[str] = "en", split: str = "test", limit: int | None = None,
             *, seed: int = 0, source: str | None = None,
             data_dir: str | os.PathLike | None = None) -> Rows:
    """:func:`read_sts` and one log line saying how many pairs, from where."""
    rows = read_sts(lang, split, limit, seed=seed, source=source, data_dir=data_dir)
    langs = lang if isinstance(lang, str) else "-".join(lang)  # "de" or "de-en"
    log.info("[data] STS-B %s/%s: %s from %s (%s)", langs, split,
             describe_sample(rows), sources.where(rows), sources.skipped_text(rows.skipped))
    return rows


def describe_sample(rows: Rows) -> str:
    """``1379 pairs`` or ``300 of 1379 pairs (stratified sample, seed 0)``."""
    if getattr(rows, "sample_seed", None) is None:
        return f"{len(rows)} pairs"
    return (f"{len(rows)} of {rows.total} pairs (sample stratified by gold score, seed "
            f"{rows.sample_seed})")


def read_sts(lang: str | Sequence[str] = "en", split: str = "test", limit: int | None = None,
             *, seed: int = 0, source: str | None = None,
             data_dir: str | os.PathLike | None = None) -> Rows:
    """STS-B multi-mt pairs (:class:`STSPair`, score 0-5) for one language, in file order
    (:func:`load_sts` without the log line, for callers that read many and report once).

    ``lang``: one of ``STS_LANGS``, or a pair ``("de", "en")``: sentence1 from row i in German,
    sentence2 from row i in English (same gold score). ``split``: train (5749 rows), dev (1500),
    test (1379). ``limit``: at most N pairs, the same rows in every language, drawn by
    :func:`stratified_sample` (the first rows of STS-B are its easiest); ``rows.total`` and
    ``rows.sample_seed`` say what was drawn. ``source``: None (auto) | local | hub | generated.
    """
    langs = (lang,) if isinstance(lang, str) else tuple(lang)
    if len(langs) not in (1, 2):
        raise ValueError(f"lang must be a code or a pair of codes, got {lang!r}")
    for code in langs:
        check_choice(code, STS_LANGS, "STS language")
    check_choice(split, STS_SPLITS, "STS split")
    check_int(limit, "limit", 0, allow_none=True)

    def combine(raws: list[list[Raw]], paths: list) -> Rows:
        raw = raws[0] if len(raws) == 1 else _align(raws[0], raws[1], langs)
        return _sts_rows(raw, limit, paths, seed)

    def read_files(root: Path) -> Rows:
        paths = [sts_path(root, code, split) for code in langs]
        return combine([_read_sts_file(p) for p in paths], paths)

    def read_hub() -> Rows:
        return combine([_read_sts_hub(code, split) for code in langs],
                       [f"{HUB_STS}:{code}/{split}" for code in langs])

    return sources.load_rows(source, data_dir, read_files, read_hub, langs)


def sts_sentences(pairs: Iterable[STSPair]) -> list[str]:
    """Unique sentences of ``pairs`` (sentence1 and sentence2), in first-seen order."""
    return list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
