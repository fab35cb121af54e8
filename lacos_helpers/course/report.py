"""Key figures a notebook asserted (``record("sts_pairs_en", 1379)``), for the course summary:
the course runner names the JSON file they are appended to in ``LACOS_REPORT_FILE``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _jsonable(value):
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if value is None or isinstance(value, (str, int, bool)) or (
            isinstance(value, float) and math.isfinite(value)):
        return value
    return str(value)  # NaN and infinities too: JSON has no such numbers


def record(key: str, value):
    """Write ``value`` under ``key`` to ``LACOS_REPORT_FILE`` if set (nothing otherwise); returns
    ``value`` so it can wrap an expression."""
    if not key or not isinstance(key, str):
        raise ValueError("record() needs a non-empty string key")
    entry = _jsonable(value)
    target = os.environ.get("LACOS_REPORT_FILE")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        current = json.loads(path.read_text()) if path.exists() else {}
        current[key] = entry
        path.write_text(json.dumps(current, indent=1, ensure_ascii=False))
    return value
