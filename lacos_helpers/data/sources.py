"""Where rows come from: a local folder, the Hugging Face Hub or the generated dataset, chosen
once per call and always reported (``[data] ... from <source>``).

The source is, in this order: the ``source=`` argument of a loader; else ``LACOS_DATA_SOURCE``
(``local`` | ``hub`` | ``generated`` | ``auto``); else the session's :class:`DataPolicy` (set from
the profile by the notebooks' first cell and the CLI, :func:`set_policy`). ``auto`` takes the
local folder when ``LACOS_DATA_DIR`` is set, else the Hub when it is reachable, else the
generated dataset, and says so in a warning. A profile that trains on real data only (``colab``,
``paper``) refuses the generated dataset unless it is asked for by name; a Hub that is reachable
but fails is an error, never a quiet switch to generated sentences.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lacos_helpers import runtime
from lacos_helpers.data.generated import GENERATED_LANGS, ensure_generated
from lacos_helpers.data.rows import Rows

log = logging.getLogger(__name__)

SOURCES = ("local", "hub", "generated")
SOURCE_ENV = "LACOS_DATA_SOURCE"


class DataSourceError(RuntimeError):
    """A data source cannot be used (``local`` without a data folder, a failing Hub, generated
    data where the profile trains on real data only)."""


@dataclass(frozen=True)
class DataPolicy:
    """The session's default source (``auto`` or one of :data:`SOURCES`) and whether ``auto``
    may end on the generated dataset."""

    source: str = "auto"
    allow_generated: bool = True


_policy = DataPolicy()


def set_policy(source: str = "auto", allow_generated: bool = True) -> DataPolicy:
    """Set the session's :class:`DataPolicy` (the notebooks' first cell and the CLI do, from
    ``cfg.data``); returns the previous one."""
    global _policy
    _check_source(source)
    previous, _policy = _policy, DataPolicy(source, bool(allow_generated))
    return previous


def policy() -> DataPolicy:
    """The session's :class:`DataPolicy`."""
    return _policy


def _check_source(source) -> str:
    if source not in ("auto", *SOURCES):
        raise ValueError(f"unknown data source {source!r}; valid: auto, {', '.join(SOURCES)}")
    return source


def requested_source(source: str | None = None) -> str:
    """The source asked for: the argument, else ``LACOS_DATA_SOURCE``, else the policy's."""
    if source not in (None, "auto"):
        return _check_source(source)
    env = os.environ.get(SOURCE_ENV, "").strip().lower()
    if env:
        if env not in ("auto", *SOURCES):
            raise ValueError(f"{SOURCE_ENV}={env!r}: valid values are auto, {', '.join(SOURCES)}")
        return env
    return _policy.source


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
    """Resolve the requested source (see the module docstring) to (kind, local root or None)."""
    wanted = requested_source(source)
    local = Path(data_dir).expanduser() if data_dir else runtime.data_dir()
    if wanted == "local" or (wanted == "auto" and local is not None):
        if local is None:
            raise DataSourceError("the local data source needs a data folder: set "
                                  "LACOS_DATA_DIR or pass data_dir=")
        if not local.is_dir():
            raise FileNotFoundError(f"data directory {local} does not exist")
        return "local", local
    if wanted in ("hub", "generated"):
        return wanted, None
    if runtime.hub_reachable():
        return "hub", None
    if not _policy.allow_generated:
        raise DataSourceError(
            "no data folder (LACOS_DATA_DIR) and the Hugging Face Hub is unreachable, and this "
            "profile trains on real data only: connect to the Hub, point LACOS_DATA_DIR at a "
            "data folder, or set LACOS_DATA_SOURCE=generated to use the generated template "
            "sentences on purpose")
    log.warning("[data] no data folder (LACOS_DATA_DIR) and the Hub is unreachable: using the "
                "GENERATED template dataset (LACOS_DATA_SOURCE=generated chooses it on purpose)")
    return "generated", None


def load_rows(source: str | None, data_dir, read_files: Callable[[Path], Rows],
              read_hub: Callable[[], Rows], langs: Sequence[str]) -> Rows:
    """Run the reader of the chosen source; a Hub failure is an error naming the way out."""
    kind, root = pick_source(source, data_dir)
    if kind == "hub":
        try:
            rows = read_hub()
        except Exception as exc:  # network, missing dataset, schema change...
            raise DataSourceError(
                f"loading {', '.join(langs)} from the Hugging Face Hub failed "
                f"({type(exc).__name__}: {str(exc)[:300]}). Retry, point LACOS_DATA_DIR at a "
                "data folder, or set LACOS_DATA_SOURCE=generated to use the generated "
                "template sentences on purpose") from exc
        rows.source = "hub"
        return rows
    if kind == "generated":
        missing = [lang for lang in langs if lang not in GENERATED_LANGS]
        if missing:
            raise ValueError(f"the generated dataset does not cover {missing}; it covers "
                             f"{', '.join(GENERATED_LANGS)}")
        root = ensure_generated()
    rows = read_files(root)
    rows.source = kind
    return rows


def describe_source(source: str | None = None) -> str:
    """One line: what is asked for and what it resolves to here, e.g. ``auto -> local
    /data (generated data allowed: no)``; a source that cannot be used says why."""
    wanted = requested_source(source)
    try:
        kind, root = pick_source(source, None)
        resolved = f"{kind} {root}" if root else kind
    except (DataSourceError, FileNotFoundError) as exc:
        resolved = f"unusable: {exc}"
    allowed = "yes" if _policy.allow_generated else "only if asked for by name"
    return f"{wanted} -> {resolved} (generated data: {allowed})"


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
