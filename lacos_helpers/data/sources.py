"""Where rows come from: a local folder, the Hugging Face Hub or the generated dataset, chosen
once per call and always reported (``[data] ... from <source>``).

The source is the ``source=`` argument of a loader, else ``LACOS_DATA_SOURCE``, else the
session's :class:`DataPolicy` (:func:`set_policy`, from the profile). ``auto`` takes the local
folder when ``LACOS_DATA_DIR`` is set, else the Hub when it is reachable, else the generated
dataset with a warning (a profile that trains on real data only refuses it unless it is asked
for by name). A Hub that fails is an error, never a quiet switch to generated sentences.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lacos_helpers import runtime
from lacos_helpers.checks import check_choice
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

    def __post_init__(self):
        check_choice(self.source, ("auto", *SOURCES), "data source")

    @classmethod
    def of(cls, data_cfg) -> DataPolicy:
        """The policy a run's ``cfg.data`` states (``source``, ``allow_generated``)."""
        return cls(data_cfg.source, bool(data_cfg.allow_generated))


_policy = DataPolicy()


def set_policy(source: str = "auto", allow_generated: bool = True) -> DataPolicy:
    """Set the session's :class:`DataPolicy` (the notebooks' first cell and the CLI do, from
    ``cfg.data``); returns the previous one."""
    global _policy
    previous, _policy = _policy, DataPolicy(source, bool(allow_generated))
    return previous


def requested_source(source: str | None = None, policy: DataPolicy | None = None) -> str:
    """The source asked for: the argument, else ``LACOS_DATA_SOURCE``, else ``policy``'s (by
    default the session's)."""
    if source not in (None, "auto"):
        return check_choice(source, ("auto", *SOURCES), "data source")
    env = os.environ.get(SOURCE_ENV, "").strip().lower()
    if env:
        return check_choice(env, ("auto", *SOURCES), SOURCE_ENV)
    return (policy or _policy).source


# --------------------------------------------------------------------------- Hub access

def hub_load(path: str, name: str | None, split: str):
    """``datasets.load_dataset`` (one place, so tests can replace it)."""
    from datasets import load_dataset

    return load_dataset(path, name, split=split)


def hub_table(ds, columns: Sequence[str]):
    """The ``columns`` of a ``datasets.Dataset`` as one ``pyarrow.Table``, read column-wise (a
    column the dataset lacks is all null); None when ``ds`` is not a ``Dataset`` (a stand-in
    list of dicts): read it row by row."""
    try:
        import pyarrow as pa
        from datasets import Dataset
    except ImportError:
        return None
    if not isinstance(ds, Dataset):
        return None
    present = [c for c in columns if c in ds.column_names]
    table = ds.select_columns(present).with_format("arrow")[:]  # applies any indices mapping
    for name in columns:
        if name not in present:
            table = table.append_column(name, pa.nulls(len(table)))
    return table.select(list(columns))


# --------------------------------------------------------------------------- local files

FILE_FIX = ("re-download the file (or copy it again from the shared data folder), or fix or "
            "delete that line; data files are UTF-8 text, one row per line")
EXPECTED_SKIPS = ("no gold label",)  # rows the datasets leave out on purpose


class DataFileError(ValueError):
    """A local data file that cannot be decoded or parsed: ``path``, ``line`` (1-based, a
    header is line 1; None when unknown) and ``problem`` say where and what."""

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}; {FILE_FIX}")

    def __reduce__(self):
        return type(self), (self.path, self.line, self.problem)


def _utf8_error(path: Path, exc: UnicodeDecodeError) -> DataFileError:
    """Where the first byte that is not UTF-8 is in ``path`` (the decoder's own position is
    relative to the chunk it was decoding)."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as full:
        pos = full.start
        return DataFileError(path, raw.count(b"\n", 0, pos) + 1,
                             f"not valid UTF-8 (byte 0x{raw[pos]:02x} at offset {pos} of the "
                             f"file: {full.reason})")
    return DataFileError(path, None, f"not valid UTF-8 ({exc})")  # the file changed meanwhile


def read_records(path: Path, delimiter: str = ",", columns: int | None = None,
                 **fmt) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-blank record of a UTF-8 CSV/TSV file, in order.

    A byte that is not UTF-8, a record the ``csv`` module cannot parse, or a record that runs
    over several lines without ``columns`` fields (an unclosed quote; None: as many as the
    first record, the header) is a :class:`DataFileError` naming the file and line."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, **fmt)
        line = 1
        try:
            for fields in reader:
                if fields:
                    columns = len(fields) if columns is None else columns
                    if reader.line_num > line and len(fields) != columns:
                        raise DataFileError(
                            path, line, f"the row that starts here runs on to line "
                            f"{reader.line_num} with {len(fields)} field(s) instead of "
                            f"{columns}: a quote (\") without its closing quote?")
                    yield line, fields
                line = reader.line_num + 1
        except UnicodeDecodeError as exc:
            raise _utf8_error(path, exc) from exc
        except csv.Error as exc:
            raise DataFileError(path, line, f"malformed {kind} row ({exc})") from exc


def _lines_text(lines: list[int], most: int = 5) -> str:
    if len(lines) == 1:
        return f"line {lines[0]}"
    more = f" and {len(lines) - most} more" if len(lines) > most else ""
    return "lines " + ", ".join(map(str, lines[:most])) + more


def located_records(path: Path, located: Iterable[tuple[int, object]]) -> list:
    """The records of (line, record) pairs; a record that is a str (the reason the row is
    skipped) is also logged with its line: a warning, unless every skipped row is one the
    dataset leaves out on purpose (:data:`EXPECTED_SKIPS`, logged at debug level)."""
    records, skipped = [], {}
    for line, record in located:
        records.append(record)
        if isinstance(record, str):
            skipped.setdefault(record, []).append(line)
    if skipped:
        total = sum(map(len, skipped.values()))
        level = logging.DEBUG if set(skipped) <= set(EXPECTED_SKIPS) else logging.WARNING
        log.log(level, "[data] %s: %d row%s skipped: %s", path, total, "s" * (total != 1),
                ", ".join(f"{r} ({_lines_text(skipped[r])})" for r in sorted(skipped)))
    return records


# --------------------------------------------------------------------------- choosing

def pick_source(source: str | None, data_dir: str | os.PathLike | None,
                policy: DataPolicy | None = None) -> tuple[str, Path | None]:
    """Resolve the requested source (see the module docstring) to (kind, local root or None)
    under ``policy`` (by default the session's, :func:`set_policy`)."""
    policy = policy or _policy
    wanted = requested_source(source, policy)
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
    if not policy.allow_generated:
        raise DataSourceError(
            "no data folder (LACOS_DATA_DIR) and the Hugging Face Hub is unreachable, and this "
            "profile trains on real data only: connect to the Hub, point LACOS_DATA_DIR at a "
            "data folder, or set LACOS_DATA_SOURCE=generated to use the generated template "
            "sentences on purpose")
    log.warning("[data] no data folder (LACOS_DATA_DIR) and the Hub is unreachable: using the "
                "GENERATED template dataset (LACOS_DATA_SOURCE=generated chooses it on purpose)")
    return "generated", None


def resolve_source(policy: DataPolicy) -> str:
    """The source (``local``, ``hub`` or ``generated``) a run with ``policy`` (:meth:`DataPolicy.of`
    its ``cfg.data``) loads from, resolved once and passed to every loader of the run by name."""
    return pick_source(None, None, policy)[0]


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

