"""The package as users install it: one source of dependency versions (pyproject.toml), the
0.1 module names still importable, py.typed shipped, the course part never imported by the
method."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


def _colab_versions() -> dict[str, Version]:
    """``{canonical name: version}`` of Colab's published ``pip freeze``."""
    found = {}
    for line in (REPO / "tests" / "data" / "colab" / "pip-freeze.gpu.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*$", line.strip())
        if match:
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def _colab_check_pins() -> set[str]:
    """The packages ``tools/colab_versions_check.sh`` installs at Colab's version (SHARED)."""
    script = (REPO / "tools" / "colab_versions_check.sh").read_text()
    shared = re.search(r'^SHARED="([^"]*)"', script, re.M)
    assert shared, "SHARED=... not found in tools/colab_versions_check.sh"
    return {canonicalize_name(n) for n in shared[1].replace("\\\n", " ").split()}


def _lower_bound(req: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return min(bounds) if bounds else None


def test_lower_bounds_of_what_colab_ships_are_colabs_versions():
    """Where Colab ships a dependency, its lower bound is Colab's version and
    ``make colab-versions`` runs the tests with exactly that version. torch is the exception:
    Colab's build is CUDA's (2.11.0+cu128), the check installs the CPU build 2.13.0."""
    colab, pinned = _colab_versions(), _colab_check_pins()
    for name, req in _pyproject_requirements().items():
        name = canonicalize_name(name)
        if name not in colab:
            continue
        lower = _lower_bound(req)
        assert lower is not None, f"{name}: no lower bound"
        if name == "torch":
            assert lower <= Version(colab[name].base_version), (lower, colab[name])
            continue
        assert name in pinned, f"Colab ships {name}; colab_versions_check.sh does not pin it"
        assert lower == colab[name], f"{name}>={lower}: Colab ships {colab[name]}"


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
