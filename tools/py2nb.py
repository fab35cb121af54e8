"""Build a notebook from a percent-format source (authoring aid; outputs stay empty).

    python tools/py2nb.py SRC.py notebooks/NN_topic.ipynb

Cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown; each line's leading "# " is
stripped). ``# %% tags=["nbval-skip"]`` puts tags into the cell metadata.
"""

import hashlib
import json
import re
import sys
from pathlib import Path


def convert(text: str, stem: str = "notebook") -> dict:
    cells = []
    header = re.compile(r"^# %%(.*)$")
    current = None
    for line in text.splitlines():
        m = header.match(line)
        if m:
            if current:
                cells.append(current)
            rest = m.group(1).strip()
            kind = "markdown" if rest.startswith("[markdown]") else "code"
            meta = {}
            t = re.search(r"tags=(\[.*\])", rest)
            if t:
                meta["tags"] = json.loads(t.group(1))
            current = {"kind": kind, "meta": meta, "lines": []}
            continue
        if current is None:
            continue
        if current["kind"] == "markdown":
            line = line[2:] if line.startswith("# ") else ("" if line == "#" else line)
        current["lines"].append(line)
    if current:
        cells.append(current)
    out = []
    for index, c in enumerate(cells):
        lines = c["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        src = [ln + "\n" for ln in lines]
        if src:
            src[-1] = src[-1].rstrip("\n")
        cell_id = hashlib.sha1(f"{stem}:{index}".encode()).hexdigest()[:8]  # stable ids
        cell = {"cell_type": c["kind"], "id": cell_id, "metadata": c["meta"], "source": src}
        if c["kind"] == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    metadata = {"accelerator": "GPU", "kernelspec": kernelspec, "language_info": {"name": "python"}}
    return {"cells": out, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    nb = convert(Path(src).read_text(encoding="utf-8"), Path(dst).name)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
