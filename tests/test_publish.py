"""Badges and Colab install cells: generated from pyproject's [tool.lacos], in every notebook and
student copy; the install cell pins the release, caps versions, and says what to do on failure."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from lacos_helpers.course import publish

REPO = Path(__file__).resolve().parents[1]
PUB = publish.publication()
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")) + \
    sorted((REPO / "student").glob("[0-9][0-9]_*.ipynb"))


def test_publication_is_read_from_pyproject():
    assert "/" in PUB.repository and PUB.ref.startswith("v")
    assert PUB.constraints_url.endswith(f"/{PUB.ref}/constraints.txt")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebook_has_the_generated_badges_and_install_cell(path):
    nb = nbformat.read(path, as_version=4)
    where = f"{path.parent.name}/{path.name}"
    header = next(c for c in nb.cells if c.cell_type == "markdown").source
    assert header.startswith(publish.badges(where, PUB)), \
        f"{where}: badges disagree with pyproject [tool.lacos]; run `make student`"
    installs = [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source
                and "pip" in c.source]
    assert len(installs) == 1, f"{where}: expected one Colab install cell"
    assert installs[0].source == publish.install_cell(PUB), \
        f"{where}: install cell disagrees with pyproject [tool.lacos]; run `make student`"
    assert publish.INSTALL_TAG in installs[0].metadata.get("tags", [])
    if path.parent.name == "student":  # student badges open the student copy
        assert f"/blob/{PUB.ref}/student/{path.name}" in header


def test_apply_rewrites_stale_badges_and_cell():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
                    "[![Open In Colab](https://x)](https://old)\n[![Binder](https://y)](z)\n\n# T"),
                nbformat.v4.new_code_cell('import sys\nif "google.colab" in sys.modules:\n'
                                          '    %pip install old',
                                          metadata={"tags": ["nbval-skip"]})]
    assert publish.apply(nb, "notebooks/09_x.ipynb", PUB)
    assert nb.cells[0].source.endswith("\n\n# T") and "09_x.ipynb" in nb.cells[0].source
    assert nb.cells[1].source == publish.install_cell(PUB)
    assert not publish.apply(nb, "notebooks/09_x.ipynb", PUB)  # idempotent


def _run_install_cell(monkeypatch, returncode, gpu=True):
    import torch

    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(subprocess, "run",
                        lambda args, **kw: calls.append(args) or types.SimpleNamespace(
                            returncode=returncode))
    exec(compile(publish.install_cell(PUB), "install-cell", "exec"), {})
    return calls


def test_install_cell_pins_the_release_and_caps_versions(monkeypatch):
    (args,) = _run_install_cell(monkeypatch, 0)
    assert args[-1] == PUB.install_spec() and "-c" in args
    assert args[args.index("-c") + 1] == PUB.constraints_url


def test_install_cell_failure_says_what_to_do(monkeypatch):
    with pytest.raises(RuntimeError) as info:
        _run_install_cell(monkeypatch, 1)
    message = str(info.value)
    assert PUB.install_spec() in message
    for hint in ("REF", "lacos_helpers-*.whl", "git clone", "pip install -e"):
        assert hint in message


def test_install_cell_on_a_cpu_only_runtime_installs_the_offline_model(monkeypatch):
    """Without a GPU Colab runs the cpu profile, whose backbone is the offline-model extra."""
    (args,) = _run_install_cell(monkeypatch, 0, gpu=False)
    assert args[-1] == PUB.install_spec(publish.COLAB_CPU_EXTRAS)
    assert "offline-model" in args[-1]
    (args,) = _run_install_cell(monkeypatch, 0, gpu=True)
    assert "offline-model" not in args[-1]


def test_install_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran outside Colab"))
    exec(compile(publish.install_cell(PUB), "install-cell", "exec"), {})
