"""The notebooks run where their users are: on a Colab GPU the model sits on ``cuda:0`` while a
tokenizer builds its batch on the CPU, and ``.numpy()`` refuses a CUDA tensor. Checked over the
code cells of every notebook and student copy (nbval runs them on a CPU only, where both
mistakes pass unnoticed), and markdown cells never hold code that nbval would not run."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("student/*.ipynb")])


def code_cells(path: Path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def _python(source: str) -> ast.Module:
    """A cell's Python (IPython magics and shell lines blanked)."""
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    return ast.parse("\n".join(lines))


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def numpy_without_cpu(source: str) -> list[int]:
    """Lines that call ``.numpy()`` on anything but ``.cpu()`` (a CUDA tensor raises there)."""
    bad = []
    for node in ast.walk(_python(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "numpy" and not node.args):
            receiver = node.func.value
            on_cpu = (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute)
                      and receiver.func.attr == "cpu")
            if not on_cpu:
                bad.append(node.lineno)
    return bad


def _moved(call: ast.Call, parents: dict) -> bool:
    parent = parents.get(call)
    if isinstance(parent, ast.Attribute) and parent.attr == "to":
        return isinstance(parents.get(parent), ast.Call)
    if isinstance(parent, ast.Call) and call in parent.args:
        func = parent.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name == "to_device"
    return False


def batches_not_moved(source: str) -> list[int]:
    """Lines where a tokenizer builds a tensor batch (``return_tensors="pt"``) that is not moved
    to the model's device on the spot (``.to(device)`` or ``runtime.to_device(batch, model)``)."""
    tree = _python(source)
    parents = _parents(tree)
    bad = []
    for node in ast.walk(tree):
        builds_batch = isinstance(node, ast.Call) and any(
            k.arg == "return_tensors" and isinstance(k.value, ast.Constant)
            and k.value.value == "pt" for k in node.keywords)
        if builds_batch and not _moved(node, parents):
            bad.append(node.lineno)
    return bad


def test_the_checks_find_what_breaks_on_a_gpu():
    assert numpy_without_cpu("x = model(b).last_hidden_state.numpy()") == [1]
    assert numpy_without_cpu("ax.plot(t.cpu().numpy())\nnp.asarray(t.numpy())") == [2]
    assert batches_not_moved('batch = tokenizer(s, return_tensors="pt")\nmodel(**batch)') == [1]
    assert batches_not_moved('b = tokenizer(s, return_tensors="pt").to(device)') == []
    assert batches_not_moved('b = runtime.to_device(tok(s, return_tensors="pt"), model)') == []
    assert batches_not_moved('b = tok(s, return_tensors="pt").input_ids') == [1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_moves_batches_and_brings_tensors_back_through_the_cpu(path):
    problems = [f"cell {i}, line {line}: .numpy() without .cpu()"
                for i, src in code_cells(path) for line in numpy_without_cpu(src)]
    problems += [f"cell {i}, line {line}: a tokenizer batch not moved to the model's device"
                 for i, src in code_cells(path) for line in batches_not_moved(src)]
    assert not problems, f"{path.name}: " + "; ".join(problems)


def _check_notebooks():
    spec = importlib.util.spec_from_file_location("check_notebooks",
                                                  ROOT / ".ci" / "check_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_in_a_markdown_cell_is_found():
    check = _check_notebooks()
    text = ("The pictures show why.\nfig = plotting.plot_projections(projections, {})\n"
            "```python\nx = f(1)\n```\nfrom lacos_helpers import data\nimport torch")
    assert check.code_in_markdown(text) == [
        "fig = plotting.plot_projections(projections, {})", "from lacos_helpers import data",
        "import torch"]
    assert check.code_in_markdown("Spearman = rank correlation (no code here).") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_markdown_cell_holds_code(path):
    assert _check_notebooks().markdown_with_code(path) == {}


# Third-party modules the notebooks import -> the distribution that brings them. IPython comes
# with every Jupyter kernel (Colab's, Binder's, the `jupyter` extra's).
DISTRIBUTIONS = {"bitsandbytes": "bitsandbytes", "matplotlib": "matplotlib", "numpy": "numpy",
                 "peft": "peft", "scipy": "scipy", "torch": "torch",
                 "transformers": "transformers", "sentence_transformers": "sentence-transformers",
                 "faiss": "faiss-cpu", "sklearn": "scikit-learn", "datasets": "datasets"}
IMPORT_GUARDED = {"sentence_transformers"}  # chapter 6 says how to install it when missing


def _imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(_python(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def _listed_requirements() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(line.split(">")[0].split("=")[0].split("<")[0].strip().lower())
    return names


def test_every_library_a_notebook_imports_is_in_the_course_package_list():
    """A notebook user installs requirements.txt (Binder and Colab: the package's core and the
    extras their cells name): a library a notebook imports must be listed there."""
    import sys

    listed = _listed_requirements()
    missing = {}
    for path in ROOT.glob("notebooks/*.ipynb"):
        for _, src in code_cells(path):
            for module in _imported_modules(src) - set(sys.stdlib_module_names):
                if module in ("lacos_helpers", "IPython") or module in IMPORT_GUARDED:
                    continue
                distribution = DISTRIBUTIONS.get(module, module)
                if distribution not in listed:
                    missing.setdefault(distribution, set()).add(path.name)
    assert not missing, f"imported by notebooks, not in requirements.txt: {missing}"


def test_notebooks_quantize_with_the_profile_s_compute():
    """``quantize_model`` defaults to LLM.int8 compute: a notebook that leaves ``compute`` out
    runs another 8-bit scheme than its profile's (the cpu profile is weight-only)."""
    calls = []
    for path in ROOT.glob("notebooks/*.ipynb"):
        for i, src in code_cells(path):
            for node in ast.walk(_python(src)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "quantize_model"):
                    calls.append((path.name, i, {k.arg for k in node.keywords}))
    assert calls, "chapter 2 casts the backbone with quantize_model"
    for name, cell, keywords in calls:
        assert "compute" in keywords, f"{name} cell {cell}: quantize_model without compute="
