"""Where rows come from: a local folder, the Hugging Face Hub or the generated dataset, chosen
once per call and always reported (``[data] ... from <source>``)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from lacos_helpers import runtime
from lacos_helpers.data.generated import GENERATED_LANGS, ensure_generated
from lacos_helpers.data.rows import Rows

log = logging.getLogger(__name__)

SOURCES = ("local", "hub", "generated")


class DataSourceError(RuntimeError):
    """A requested data source cannot be used (e.g. ``source="local"`` without a data dir)."""


# --------------------------------------------------------------------------- Hub access

def hub_load(path: str, name: str | None, split: str):
    """``datasets.load_dataset`` (one place, so tests can replace it)."""
    from datasets import load_dataset

    return load_dataset(path, name, split=split)


# --------------------------------------------------------------------------- validation

def check_choice(value, valid: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")


def pick_source(source: str | None, data_dir: str | os.PathLike | None) -> tuple[str, Path | None]:
    """Resolve ``source`` (None/"auto" = local if a data dir is known, else hub if reachable,
    else generated) to (kind, local root or None)."""
    if source not in (None, "auto", *SOURCES):
        raise ValueError(f"unknown source {source!r}; valid: None (auto), {', '.join(SOURCES)}")
    if source == "local" or (source in (None, "auto") and (data_dir or runtime.data_dir())):
        root = Path(data_dir).expanduser() if data_dir else runtime.data_dir()
        if root is None:
            raise DataSourceError("source='local' needs a data directory: set LACOS_DATA_DIR "
                                  "or pass data_dir=")
        if not root.is_dir():
            raise FileNotFoundError(f"data directory {root} does not exist")
        return "local", root
    if source in ("hub", "generated"):
        return source, None
    return ("hub" if runtime.hub_reachable() else "generated"), None


def load_rows(source: str | None, data_dir, read_files: Callable[[Path], Rows],
              read_hub: Callable[[], Rows], langs: Sequence[str]) -> Rows:
    """Run the reader of the chosen source; an auto Hub failure falls through to generated."""
    kind, root = pick_source(source, data_dir)
    if kind == "hub":
        try:
            rows = read_hub()
            rows.source = "hub"
            return rows
        except Exception as exc:  # network, missing dataset, schema change...
            if source == "hub":
                raise
            log.warning("[data] Hub failed (%s: %s); using generated data",
                        type(exc).__name__, str(exc)[:200])
            kind = "generated"
    if kind == "generated":
        missing = [lang for lang in langs if lang not in GENERATED_LANGS]
        if missing:
            raise ValueError(f"the generated dataset does not cover {missing}; it covers "
                             f"{', '.join(GENERATED_LANGS)}")
        root = ensure_generated()
    rows = read_files(root)
    rows.source = kind
    return rows


def where(rows: Rows) -> str:
    if rows.source == "hub":
        return f"hub {', '.join(dict.fromkeys(rows.paths))}"
    parents = dict.fromkeys(str(Path(p).parent) for p in rows.paths)
    return f"{rows.source} {', '.join(parents)}"


def skipped_text(skipped: Counter) -> str:
    total = sum(skipped.values())
    if not total:
        return "0 skipped"
    return f"{total} skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))


def available_sources(data_dir: str | os.PathLike | None = None) -> dict:
    """What each source offers here: {"local": path or None, "hub": bool, "generated": langs}."""
    try:
        local = Path(data_dir) if data_dir else runtime.data_dir()
    except FileNotFoundError:
        local = None
    return {"local": str(local) if local else None, "hub": runtime.hub_reachable(),
            "generated": GENERATED_LANGS}
