"""The argument checks every room shares: one rule and one wording for an int argument and for
a choice among names, and one markdown table writer."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence


class IntArgumentError(TypeError, ValueError):
    """Not an int where an int is asked for (both a ``TypeError`` and a ``ValueError``)."""


def check_int(value, what: str, minimum: int = 1, maximum: int | None = None, *,
              allow_none: bool = False, why: str = "") -> int | None:
    """``value`` as an int if it is an int (not a bool) in ``minimum..maximum``; else an error
    naming ``what``: ``"k must be a positive int, got 0"``, ``"batch_size must be an int >= 2
    (why), got 1"``, ``"k must be an int in 1..10, got 11"``. ``allow_none``: None passes."""
    if allow_none and value is None:
        return None
    if maximum is not None:
        wanted = f"an int in {minimum}..{maximum}"
    else:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    message = (f"{what} must be {wanted}{' or None' if allow_none else ''}"
               f"{f' ({why})' if why else ''}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise IntArgumentError(message)
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(message)
    return int(value)


def check_choice(value, valid: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``valid``; else ``"unknown {what} 'x'; valid: a, b"``."""
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def markdown_table(rows: Iterable[Mapping] | Iterable[Sequence],
                   columns: Sequence[str] | None = None, *,
                   align: str | Sequence[str] = "left", pad: bool = False) -> str:
    """A markdown table of ``rows``: mappings (``columns``: their keys, default the first row's)
    or sequences of cells (``columns``: the header). ``align``: ``"left"``, ``"right"``,
    ``"first-left"`` (the others right) or one per column; ``pad``: cells padded to their
    column's width (for reading as text)."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0])
    if isinstance(align, str):
        align = (["left"] + ["right"] * (len(columns) - 1) if align == "first-left"
                 else [align] * len(columns))
    cells = [[str(c) for c in columns]] + [
        [str(c) for c in ([row[c] for c in columns] if isinstance(row, Mapping) else row)]
        for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    if pad:
        rule = "|" + "|".join("-" * (w + 1) + ":" if a == "right" else "-" * (w + 2)
                              for a, w in zip(align, widths)) + "|"
    else:
        rule = "|" + "".join("---:|" if a == "right" else "---|" for a in align)
    lines = ["| " + " | ".join(c.ljust(w) if pad else c for c, w in zip(line, widths)) + " |"
             for line in cells]
    return "\n".join([lines[0], rule, *lines[1:]])


__all__ = ["IntArgumentError", "check_choice", "check_int", "markdown_table"]
