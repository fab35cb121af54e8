"""Where the course is published (``[tool.lacos]`` of ``pyproject.toml``) and what is generated
from it at the top of every notebook and student copy: the Colab / Binder badges and the Colab
install cell (``python -m lacos_helpers.course.publish``, run by ``make student``)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_TAG = "nbval-skip"  # the install cell never runs under nbval (it is Colab-only)
# Colab brings torch, transformers, Jupyter; the course adds the rest. A GPU runtime runs the
# `colab` profile; a CPU-only runtime the `cpu` profile, which needs the offline decoder too.
COLAB_EXTRAS = "search"
COLAB_CPU_EXTRAS = "search,offline-model"


@dataclass(frozen=True)
class Publication:
    """``repository`` on GitHub (``owner/name``) and the release ``ref`` (a tag)."""

    repository: str
    ref: str

    def install_spec(self, extras: str = COLAB_EXTRAS) -> str:
        """What the install cell asks pip for (``extras``: those of a GPU runtime by default)."""
        return (f"lacos-helpers[{extras}] @ "
                f"git+https://github.com/{self.repository}@{self.ref}")

    @property
    def constraints_url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repository}/{self.ref}/constraints.txt"


def publication(pyproject: Path = REPO_ROOT / "pyproject.toml") -> Publication:
    """The ``[tool.lacos]`` table of ``pyproject.toml``."""
    table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("lacos")
    if not table or not table.get("repository") or not table.get("ref"):
        raise ValueError(f"{pyproject} needs [tool.lacos] repository = 'owner/name' and "
                         "ref = 'vX.Y.Z' (where the course is published)")
    return Publication(table["repository"], table["ref"])


def badges(path_in_repo: str, pub: Publication) -> str:
    """Markdown for the Colab and Binder badges of the notebook at ``path_in_repo``."""
    colab = (f"https://colab.research.google.com/github/{pub.repository}/blob/{pub.ref}/"
             f"{path_in_repo}")
    binder = (f"https://mybinder.org/v2/gh/{pub.repository}/{pub.ref}"
              f"?labpath={quote(path_in_repo, safe='')}")
    colab_svg = "https://colab.research.google.com/assets/colab-badge.svg"
    return (f"[![Open In Colab]({colab_svg})]({colab})\n"
            f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})")


def install_cell(pub: Publication) -> str:
    """The Colab install cell: the pinned release, capped by its constraints (nothing that
    Colab ships is upgraded or downgraded); a failure says exactly what to do instead."""
    return f'''# Colab only: install the course at a pinned release (elsewhere: nothing happens).
import sys

if "google.colab" in sys.modules:
    import subprocess

    import torch  # Colab ships it

    REPOSITORY, REF = "{pub.repository}", "{pub.ref}"  # where the course is published
    # a GPU runtime runs the colab profile; a CPU-only one the cpu profile, with its offline model
    EXTRAS = "{COLAB_EXTRAS}" if torch.cuda.is_available() else "{COLAB_CPU_EXTRAS}"
    SPEC = f"lacos-helpers[{{EXTRAS}}] @ git+https://github.com/{{REPOSITORY}}@{{REF}}"
    CONSTRAINTS = f"https://raw.githubusercontent.com/{{REPOSITORY}}/{{REF}}/constraints.txt"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "-c", CONSTRAINTS, SPEC]
    if subprocess.run(pip).returncode != 0:
        raise RuntimeError(
            f"Installing {{SPEC}} failed. Instead: (1) set REF above to another release tag or "
            "a branch such as 'main' and run this cell again; (2) upload a wheel built with "
            "`python -m build` in the repository and run `%pip install lacos_helpers-*.whl`; "
            f"(3) `!git clone https://github.com/{{REPOSITORY}}` then "
            f"`%pip install -e ./<folder>[{{EXTRAS}}]`.")'''


def apply(nb, path_in_repo: str, pub: Publication) -> bool:
    """Set the badges (first lines of the first markdown cell) and the install cell (if any) of
    ``nb``; returns whether anything changed."""
    changed = False
    header = next((cell for cell in nb.cells if cell.cell_type == "markdown"), None)
    if header is not None:
        rest = [line for line in header.source.splitlines()
                if not line.startswith(("[![Open In Colab]", "[![Binder]"))]
        while rest and not rest[0].strip():
            rest.pop(0)
        new_header = badges(path_in_repo, pub) + "\n\n" + "\n".join(rest)
        changed = new_header != header.source
        header.source = new_header
    cell = next((cell for cell in nb.cells if cell.cell_type == "code" and "google.colab" in
                 cell.source and INSTALL_TAG in cell.metadata.get("tags", [])), None)
    if cell is not None and cell.source != install_cell(pub):
        cell.source, changed = install_cell(pub), True
    return changed


def course_notebooks(folder: Path) -> list[Path]:
    """The course notebooks ``NN_topic.ipynb`` in ``folder``, in order."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description="write the badges and install cells")
    parser.add_argument("folder", nargs="?", default=str(REPO_ROOT / "notebooks"))
    args = parser.parse_args(argv)
    pub = publication()
    folder = Path(args.folder)
    changed = 0
    for path in course_notebooks(folder):
        nb = nbformat.read(path, as_version=4)
        if apply(nb, f"{folder.name}/{path.name}", pub):
            nbformat.write(nb, path)
            changed += 1
    print(f"{pub.repository}@{pub.ref}: {changed} notebook(s) updated in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
