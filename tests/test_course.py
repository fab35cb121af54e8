"""The headless course runner and notebook hygiene."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lacos_helpers.course import runner as course

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _write_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def test_course_notebooks_exist_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0] == "00_introduction.ipynb"
    assert names == sorted(names)


def markdown_prose_lines(source: str) -> list[str]:
    """The lines of a markdown cell outside fenced code blocks (a shell comment is no heading)."""
    lines, fenced = [], False
    for line in source.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def test_fenced_code_is_not_prose():
    assert markdown_prose_lines("# Title\n```bash\n# comment\n```\n# Second") == ["# Title",
                                                                                    "# Second"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "colab-badge" in first.source and "binder" in \
        first.source.lower()
    h1 = [line for c in nb.cells if c.cell_type == "markdown"
          for line in markdown_prose_lines(c.source) if line.startswith("# ")]
    assert len(h1) == 1, f"one H1 per notebook, found {h1}"
    setup = nb.cells[1]
    assert "google.colab" in setup.source and "nbval-skip" in setup.metadata.get("tags", [])
    assert re.search(r'REPOSITORY, REF = "[^"]+", "v\d', setup.source) and "@{REF}" in \
        setup.source, "Colab installs a pinned release tag, never a branch"
    assert "sys.path" not in "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "notebook.start(" in "".join(c.source for c in nb.cells[:4])
    assert "Key points" in nb.cells[-1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_stripped(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: outputs committed in cells {dirty}; run nbstripout"


def test_check_notebooks_script_catches_outputs(tmp_path):
    _write_notebook(tmp_path / "00_x.ipynb", "1 + 1")
    script = REPO / ".ci" / "check_notebooks.py"
    clean = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    nb = nbformat.read(tmp_path / "00_x.ipynb", as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, tmp_path / "00_x.ipynb")
    dirty = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True)
    assert dirty.returncode == 1 and "outputs committed" in dirty.stdout


def test_runner_executes_and_summarises(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_notebook(nbs / "00_ok.ipynb", "from lacos_helpers.course import report\n"
                    "import os\nreport.record('profile', os.environ['LACOS_PROFILE'])\n"
                    "report.record('answer', 42)")
    _write_notebook(nbs / "01_fails.ipynb", "assert 1 == 2, 'deliberate failure'")
    _write_notebook(nbs / "helper.ipynb", "raise SystemExit")  # not NN_*: not part of the course
    out = tmp_path / "build"
    monkeypatch.chdir(tmp_path)
    failed = course.run_course("ci", Path("build"), nbs)  # relative out dir, kernel in nbs/
    assert failed == 1
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["notebook"]: r for r in summary["notebooks"]}
    assert set(rows) == {"00_ok.ipynb", "01_fails.ipynb"}
    assert rows["00_ok.ipynb"]["status"] == "ok"
    assert rows["00_ok.ipynb"]["figures"] == {"profile": "ci", "answer": 42}
    assert rows["01_fails.ipynb"]["status"] == "failed"
    assert "deliberate failure" in rows["01_fails.ipynb"]["error"]
    assert (out / "executed" / "00_ok.ipynb").exists()
    md = (out / "summary.md").read_text()
    assert "answer=42" in md and "1/2 notebooks ok" in md


def test_runner_rejects_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        course.find_notebooks(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no NN_"):
        course.find_notebooks(tmp_path)
    with pytest.raises(ValueError, match="unknown profile"):
        course.run_course("nope", tmp_path / "b", tmp_path)
