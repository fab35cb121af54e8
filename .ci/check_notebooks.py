"""Fail when a course notebook is committed with outputs or execution counts (strip them with
`nbstripout notebooks/*.ipynb`). Standard library only, so it runs before any set-up."""

import json
import sys
from pathlib import Path


def dirty_cells(path: Path) -> list[int]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [i for i, cell in enumerate(nb.get("cells", []))
            if cell.get("cell_type") == "code"
            and (cell.get("outputs") or cell.get("execution_count") is not None)]


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
        return 1
    print(f"check_notebooks: {len(paths)} notebooks clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["notebooks"]))
