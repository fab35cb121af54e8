"""Fail when a course notebook is committed with outputs or execution counts (strip them with
`nbstripout notebooks/*.ipynb`), or when a markdown cell holds lines of Python outside a fenced
code block (nbval never runs them: a figure the text promises would never render). Standard
library only, so it runs before any set-up."""

import json
import re
import sys
from pathlib import Path

# Lines that are Python statements, not prose: an assignment from a call, an import, an assert,
# a plotting or printing call.
CODE_LINE = re.compile(
    r"^\s*(?:"
    r"[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*=\s*[A-Za-z_][\w.]*\("
    r"|import\s+[A-Za-z_][\w.]*\s*$|from\s+[\w.]+\s+import\s+\w"
    r"|assert\s"
    r"|(?:print|display|plt\.\w+|ax\.\w+|fig\.\w+)\("
    r")")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8")).get("cells", [])


def dirty_cells(path: Path) -> list[int]:
    """Indices of code cells with outputs or an execution count."""
    return [i for i, cell in enumerate(_cells(path))
            if cell.get("cell_type") == "code"
            and (cell.get("outputs") or cell.get("execution_count") is not None)]


def code_in_markdown(source: str) -> list[str]:
    """Lines of ``source`` (a markdown cell) that are Python statements, outside ``` fences."""
    found, fenced = [], False
    for line in source.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced and CODE_LINE.match(line):
            found.append(line.strip())
    return found


def markdown_with_code(path: Path) -> dict[int, list[str]]:
    """Markdown cell index -> its lines of Python."""
    return {i: lines for i, cell in enumerate(_cells(path))
            if cell.get("cell_type") == "markdown"
            and (lines := code_in_markdown("".join(cell.get("source", []))))}


def main(folders: list[str]) -> int:
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        print(f"check_notebooks: no notebooks found in {folders}")
        return 1
    bad = {str(p): cells for p in paths if (cells := dirty_cells(p))}
    for path, cells in bad.items():
        print(f"check_notebooks: {path} has outputs committed in code cells {cells}")
    if bad:
        print("strip them with: .venv/bin/nbstripout notebooks/*.ipynb")
    code = {str(p): cells for p in paths if (cells := markdown_with_code(p))}
    for path, cells in code.items():
        for index, lines in cells.items():
            print(f"check_notebooks: {path} markdown cell {index} holds Python "
                  f"(nbval never runs it; move it to a code cell): {lines[0]!r}")
    if bad or code:
        return 1
    print(f"check_notebooks: {len(paths)} notebooks clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["notebooks"]))
