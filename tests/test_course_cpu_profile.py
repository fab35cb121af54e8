"""The default profile's course, cut short: ``make course`` runs the ``cpu`` profile (Gemma-3-270M
from the offline GGUF, the data folder or generated data), nbval only the ``ci`` profile. Chapters
0 and 5 run here headless in the ``cpu`` profile with its recipe cut to 2 steps and 100 STS pairs
per language (``LACOS_OVERRIDES``; chapter 5's experiments follow the steps): the cells, their
data sizes and their ``assert``s as ``make course`` meets them, in minutes instead of 20.

Chapter 5 failed in the ``cpu`` profile for a whole round while every test was green (its data
cell counted the cross-lingual triplets wrong): this is the test that would have caught it."""

from __future__ import annotations

import json

import pytest

from lacos_helpers.course import runner
from lacos_helpers.course.publish import REPO_ROOT

# 2 steps (chapter 5's data sizes: 16 and 32 distinct triplets, at least one batch); 100 STS
# pairs: its bootstrap demonstration needs ~80 for its claim (pairing narrows the interval)
SMOKE_OVERRIDES = {"train.steps": 2, "eval.sts_limit": 100}
# Chapter 0 (data, profile, model) and chapter 5 (the data sizes and the ~20 experiments of the
# paper's claims): ~7.5 minutes, the experiments' compute. The others are left out: chapter 3
# asserts that the loss falls (not after 2 steps) and 4 evaluates its run; 6 and 7 have sizes
# fixed per profile (6-7 min each whatever the overrides). Their code runs in nbval's ci profile.
SMOKE_NOTEBOOKS = ["00", "05"]


@pytest.mark.slow
def test_chapters_0_and_5_run_in_the_cpu_profile_cut_short(tmp_path, monkeypatch, offline_model,
                                                           shared_data):
    """With the data folder only (``shared_data`` skips without it, and sets LACOS_DATA_DIR for
    the kernels): generated data is covered by nbval's ci profile."""
    monkeypatch.setenv("LACOS_OVERRIDES", json.dumps(SMOKE_OVERRIDES))
    monkeypatch.setenv("LACOS_RUN_DIR", str(tmp_path / "runs"))
    # the runner sets these for its kernels: set here first, so they are restored afterwards
    monkeypatch.setenv("LACOS_PROFILE", "cpu")
    monkeypatch.setenv("LACOS_REPORT_FILE", str(tmp_path / "report.json"))
    out = tmp_path / "build"
    failed = runner.run_course("cpu", out, REPO_ROOT / "notebooks", SMOKE_NOTEBOOKS)
    summary = json.loads((out / "summary.json").read_text())
    errors = {row["notebook"]: row["error"] for row in summary["notebooks"] if row["error"]}
    assert failed == 0 and not errors, errors
    assert summary["profile"] == "cpu"
    assert len(summary["notebooks"]) == len(SMOKE_NOTEBOOKS)
