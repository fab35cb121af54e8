"""The default profile's course, cut short: ``make course`` runs the ``cpu`` profile (Gemma-3-270M
from the offline GGUF, the data folder or generated data), nbval only the ``ci`` profile. Every
chapter that trains or evaluates the model (0 and 3-7) runs here headless in the ``cpu`` profile
with its recipe cut to 2 steps and 100 STS pairs per language and chapters 6 and 7 shrunk through
their schedule (``LACOS_OVERRIDES``, ``course.<field>`` paths): the cells, their data sizes and
their ``assert``s as ``make course`` meets them, in minutes instead of 40.

Chapter 5 failed in the ``cpu`` profile for a whole round while every test was green (its data
cell counted the cross-lingual triplets wrong): this is the test that would have caught it.
It runs twice over: with the data folder, and as a newcomer's ``make course`` does (no folder, no
Hub: generated data)."""

from __future__ import annotations

import json
import os

import pytest

from lacos_helpers.course import runner
from lacos_helpers.course.publish import REPO_ROOT

# 2 steps (chapter 5's data sizes: 16 and 32 distinct triplets, at least one batch); 100 STS
# pairs: its bootstrap demonstration needs ~80 for its claim (pairing narrows the interval).
# Chapter 6: a 300-document search, 50 bitext rows, 10 sentences per genre and language;
# chapter 7: batches of 4 and 8 triplets, one update of 16 pairs.
SMOKE_OVERRIDES = {"train.steps": 2, "eval.sts_limit": 100,
                   "course.search_docs": 300, "course.search_queries": 30,
                   "course.bitext_rows": 50, "course.genre_sentences": 10,
                   "course.negative_batches": [4, 8], "course.negative_pairs": 16,
                   "course.negative_updates": 1, "course.negative_chunk": 4}
# Chapters 1 and 2 use no profile-sized model or data (nbval runs them); chapter 5's ~20
# experiments are most of the time.
SMOKE_NOTEBOOKS = ["00", "03", "04", "05", "06", "07"]
# read before any fixture removes it: `make test` sets it to the folder, `DATA=none` empties it
DATA_FOLDER_SET = bool(os.environ.get("LACOS_DATA_DIR", "").strip())


def _run_cut_short(tmp_path, monkeypatch) -> None:
    """Chapters 0 and 3-7 headless in the ``cpu`` profile with :data:`SMOKE_OVERRIDES`; every
    cell and ``assert`` must pass."""
    monkeypatch.setenv("LACOS_OVERRIDES", json.dumps(SMOKE_OVERRIDES))
    monkeypatch.setenv("LACOS_RUN_DIR", str(tmp_path / "runs"))
    # the runner sets these for its kernels: set here first, so they are restored afterwards
    monkeypatch.setenv("LACOS_PROFILE", "cpu")
    monkeypatch.setenv("LACOS_REPORT_FILE", str(tmp_path / "report.json"))
    out = tmp_path / "build"
    failed = runner.run_course("cpu", out, REPO_ROOT / "notebooks", SMOKE_NOTEBOOKS)
    summary = json.loads((out / "summary.json").read_text())
    errors = {row["notebook"]: row["error"] for row in summary["notebooks"] if row["error"]}
    print({row["notebook"]: row["seconds"] for row in summary["notebooks"]})
    assert failed == 0 and not errors, errors
    assert summary["profile"] == "cpu"
    assert len(summary["notebooks"]) == len(SMOKE_NOTEBOOKS)


@pytest.mark.slow
def test_the_model_chapters_run_in_the_cpu_profile_cut_short(tmp_path, monkeypatch, offline_model,
                                                           shared_data):
    """With the data folder (``shared_data`` skips without it, and sets LACOS_DATA_DIR for
    the kernels): what ``make course`` meets in CI and in a workshop with the folder."""
    _run_cut_short(tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(DATA_FOLDER_SET, reason="a data folder is set: `make test DATA=none` (a "
                    "newcomer's run, CI's second pass) runs this")
def test_a_newcomers_course_runs_in_the_cpu_profile_on_generated_data(tmp_path, monkeypatch,
                                                                      offline_model, generated):
    """A newcomer's ``make course``: the ``cpu`` profile (Gemma) with no data folder and no Hub,
    so every chapter reads the generated dataset. Runs in the newcomer's ``make test``
    (``DATA=none``, as CI's second pass does); with a data folder set, the test above covers
    the profile and this one would add ~9 minutes, so it skips."""
    _run_cut_short(tmp_path, monkeypatch)
