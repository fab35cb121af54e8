"""Tables of STS results: :class:`STSTable` prints as markdown in Jupyter (scores x100, 2
decimals, as papers report them) and saves CSV (raw floats) + markdown."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lacos_helpers.checks import markdown_table

METRICS = ("spearman", "pearson")

def _format_cell(value, as_score: bool, signed: bool = False) -> str:
    if isinstance(value, float) and as_score:
        return "n/a" if math.isnan(value) else f"{100 * value:{'+' if signed else ''}.2f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class STSTable:
    """Per-language STS results: ``rows`` = list of dicts, first column the row label (e.g.
    "de" or "de-en"), typically ``spearman``, ``pearson`` (raw, in [-1, 1]) and ``n``.
    ``score_columns`` are shown x100 in markdown (CSV and :meth:`to_dict` keep raw floats);
    ``primary`` is the column :meth:`mean` averages."""

    def __init__(self, rows: Iterable[Mapping], *, title: str = "",
                 score_columns: Sequence[str] = METRICS, primary: str = "spearman",
                 meta: Mapping | None = None, scores: Mapping | None = None):
        self.rows = [dict(r) for r in rows]
        # per-row (predicted, gold) scores: what a paired comparison resamples (not saved)
        self.scores = dict(scores or {})
        if not self.rows:
            raise ValueError("an STSTable needs at least one row")
        self.columns = list(self.rows[0])
        for i, r in enumerate(self.rows):
            if list(r) != self.columns:
                raise ValueError(f"row {i} has columns {list(r)}, expected {self.columns}")
        labels = self.labels
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate row labels in {labels}")
        self.title = title
        self.score_columns = tuple(c for c in score_columns if c in self.columns)
        if primary not in self.columns:
            raise ValueError(f"primary column {primary!r} not in {self.columns}")
        self.primary = primary
        self.meta = dict(meta or {})

    @property
    def labels(self) -> list[str]:
        """Row labels (values of the first column), e.g. ["en", "de"]."""
        return [str(r[self.columns[0]]) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, label: str) -> dict:
        for r in self.rows:
            if str(r[self.columns[0]]) == label:
                return r
        raise KeyError(f"no row {label!r}; rows: {', '.join(self.labels)}")

    def column(self, name: str) -> list:
        """All values of one column, in row order."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        return [r[name] for r in self.rows]

    def mean(self, column: str | None = None) -> float:
        """Average of ``column`` (default: the primary column, e.g. Spearman) over the rows."""
        values = [float(v) for v in self.column(column or self.primary)]
        return sum(values) / len(values)

    def to_dict(self) -> dict[str, dict]:
        """{row label: {column: raw value}} (JSON-serializable)."""
        key = self.columns[0]
        return {str(r[key]): {c: v for c, v in r.items() if c != key} for r in self.rows}

    def _cell(self, row: Mapping, column: str) -> str:
        if isinstance(row[column], bool):
            return "yes" if row[column] else "no"
        signed = column == "delta"
        text = _format_cell(row[column], column in self.score_columns, signed)
        low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
        if isinstance(low, float) and isinstance(high, float) and column in self.score_columns:
            text += f" [{_format_cell(low, True, signed)}, {_format_cell(high, True, signed)}]"
        return text

    def to_markdown(self) -> str:
        """Markdown table, scores x100 with 2 decimals (an interval ``<c>_low`` / ``<c>_high``
        in brackets inside its column ``<c>``), plus a mean row; the title, with the sample and
        interval the rows were computed on, as a caption."""
        bounds = {f"{c}_{end}" for c in self.columns for end in ("low", "high")}
        shown = [c for c in self.columns if c not in bounds]
        body = [[self._cell(r, c) for c in shown] for r in self.rows]
        if len(self.rows) > 1 and self.score_columns:
            body.append(["**mean**" if c == self.columns[0] else
                         _format_cell(self.mean(c), True, c == "delta")
                         if c in self.score_columns else "" for c in shown])
        header = [f"{c} (x100)" if c in self.score_columns else c for c in shown]
        table = markdown_table(body, header, align="first-left", pad=True)
        if not self.title:
            return table + "\n"
        notes = []
        if self.meta.get("sample_seed") is not None:
            notes.append(f"n of {self.meta['n_of']} pairs, sample stratified by gold score, "
                         f"seed {self.meta['sample_seed']}")
        if self.meta.get("interval"):
            notes.append(f"[brackets]: {self.meta['interval']}")
        caption = self.title + (f" ({'; '.join(notes)})" if notes else "")
        return f"**{caption}**\n\n{table}\n"

    def save(self, path_stem: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``{stem}.csv`` (raw values, full float precision) and ``{stem}.md`` (x100);
        returns both paths."""
        stem = Path(path_stem)
        csv_path, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
        stem.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows({c: repr(v) if isinstance(v, float) else v for c, v in r.items()}
                             for r in self.rows)
        md.write_text(self.to_markdown(), encoding="utf-8")
        return csv_path, md

    __str__ = _repr_markdown_ = to_markdown

    def __repr__(self) -> str:
        title = f"{self.title!r}, " if self.title else ""
        return (f"STSTable({title}{len(self)} rows: {', '.join(self.labels)}; "
                f"mean {self.primary} x100 = {100 * self.mean():.2f})")
