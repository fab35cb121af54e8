"""The package as users install it: one source of dependency versions (pyproject.toml), the
0.1 module names still importable, py.typed shipped, the course part never imported by the
method."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements_txt() -> dict[str, Requirement]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[req.name.lower()] = req
    return found


def _pyproject_requirements() -> dict[str, Requirement]:
    specs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        specs += [s for s in extra if not s.startswith("lacos-helpers")]
    return {Requirement(s).name.lower(): Requirement(s) for s in specs}


def test_requirements_txt_matches_pyproject():
    """requirements.txt is derived from pyproject.toml: same packages, same versions."""
    ours, source = _requirements_txt(), _pyproject_requirements()
    for name, req in ours.items():
        assert name in source, f"{name} is in requirements.txt but not in pyproject.toml"
        assert req.specifier == source[name].specifier, (name, req, source[name])
    core = {Requirement(s).name.lower() for s in PYPROJECT["project"]["dependencies"]}
    assert core <= set(ours), f"core dependencies missing from requirements.txt: {core - set(ours)}"


@pytest.mark.parametrize("old, new", [
    ("models", "lacos_helpers.backbones"), ("siamese", "lacos_helpers.encoder.siamese"),
    ("losses", "lacos_helpers.encoder.losses"), ("env", "lacos_helpers.course.envcheck"),
    ("notebook", "lacos_helpers.course.notebook"), ("report", "lacos_helpers.course.report"),
    ("plotting", "lacos_helpers.course.plotting"), ("widgets", "lacos_helpers.course.widgets"),
    ("exercises", "lacos_helpers.course.exercises"),
    ("student", "lacos_helpers.course.student"),
])
def test_old_module_names_still_import(old, new):
    module = importlib.import_module("lacos_helpers")
    assert getattr(module, old) is importlib.import_module(new)


def test_py_typed_is_shipped():
    assert (REPO / "lacos_helpers" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["lacos_helpers"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_method_never_imports_the_course():
    package = REPO / "lacos_helpers"
    offenders = []
    for path in package.rglob("*.py"):
        if "course" in path.relative_to(package).parts or path.name in ("cli.py", "__init__.py")\
                and path.parent == package:
            continue
        if any(name.startswith("lacos_helpers.course") for name in _imports(path)):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"the method imports the course machinery: {offenders}"


def test_notebooks_import_only_public_names():
    """Notebooks use the package's public names (no ``_private`` helpers)."""
    import nbformat

    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(  # IPython magics -> pass, at their indentation
                line[:len(line) - len(line.lstrip())] + "pass"
                if line.lstrip().startswith(("%", "!")) else line
                for line in cell.source.splitlines())
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lacos"):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, (path.name, private)
                if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                        and not node.attr.startswith("__") and isinstance(node.value, ast.Name) \
                        and node.value.id in {"lacos_helpers", "training", "data", "lora",
                                              "quantization", "evaluation", "optim"}:
                    raise AssertionError(f"{path.name} uses {node.value.id}.{node.attr}")
