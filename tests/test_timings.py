"""Every notebook time a reader sees comes from ``lacos_helpers.course.timings``: README's
notebook table, totals and "Measured" line, ``notebooks/README.md`` and the notebooks'
"**Time.**" lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lacos_helpers.course import timings

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(timings.CPU_SECONDS)


def test_every_notebook_has_a_measurement():
    on_disk = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert on_disk == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_time_line(name):
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    first = "".join(cells[0]["source"])
    lines = re.findall(r"\*\*Time\.\*\* ([0-9.]+) minutes in the `cpu` profile", first)
    assert lines == [f"{timings.total_minutes([name])}"], first


def test_readme_table_totals_and_measured_line():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        row = re.search(r"^\| " + name[:2] + r" \| \[`" + name + r"`\].*\| ([0-9.]+) / ", text,
                        re.M)
        assert row and row.group(1) == f"{timings.total_minutes([name])}", name
    totals = (f"00-05: {timings.total_minutes(timings.FIRST_SIX)} min, all eight: "
              f"{timings.total_minutes()} min")
    assert totals in text
    measured = next(line for line in text.splitlines() if line.startswith("| `make course`"))
    for name, seconds in timings.CPU_SECONDS.items():
        assert f"{name[:2]}: {seconds:,} s" in measured, name
    assert f"**00-05: {timings.total_minutes(timings.FIRST_SIX)} min**" in measured
    assert f"all eight: **{timings.total_minutes()} min**" in measured
    first_six = sum(timings.CPU_SECONDS[name] for name in timings.FIRST_SIX)
    every = sum(timings.CPU_SECONDS.values())
    assert f"({first_six:,} s)" in measured and f"({every:,} s)" in measured


def test_workshop_page_table():
    text = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        row = re.search(r"^\| " + name[:2] + r" \| ([0-9.]+) \|", text, re.M)
        assert row and row.group(1) == f"{timings.total_minutes([name])}", name


def test_totals_round_once(monkeypatch):
    monkeypatch.setitem(timings.CPU_SECONDS, "98_a", 20)  # 0.33 min each: rounded first, 0.6
    monkeypatch.setitem(timings.CPU_SECONDS, "98_b", 20)
    assert timings.total_minutes(["98_a"]) == 0.3
    assert timings.total_minutes(["98_a", "98_b"]) == 0.7
    with pytest.raises(KeyError):
        timings.total_minutes(["99_missing"])
