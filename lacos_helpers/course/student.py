"""Student copies of the notebooks (``python -m lacos_helpers.course.student notebooks student``;
``--check``: exit 1 when the committed copies are stale): in each code cell tagged ``solution``
the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (no markers: the whole cell)
become ``raise NotImplementedError``; the checker calls that follow stay."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lacos_helpers.course import publish

BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
STUB = 'raise NotImplementedError("Exercise: replace this line with your solution")'


def stub_solution(source: str) -> str:
    """Replace each BEGIN/END SOLUTION block by a stub; no markers -> the whole cell."""
    out, inside, found = [], False, False
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin and not inside:
            inside, found = True, True
            out.append(f"{begin.group(1)}# YOUR CODE HERE")
            out.append(f"{begin.group(1)}{STUB}")
        elif END.match(line):
            if not inside:
                raise ValueError("'### END SOLUTION' without a matching BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without a matching END")
    if not found:
        return f"# YOUR CODE HERE\n{STUB}"
    return "\n".join(out)


def student_copies(src: Path, dst_folder: str = "student") -> dict[str, str]:
    """{name: text} of the student copies of the notebooks in ``src`` that hold a ``solution``
    cell: outputs cleared, each ``solution`` cell stubbed and tagged ``exercise`` instead,
    badges that open the copy in ``dst_folder``."""
    import nbformat

    pub, copies = publish.publication(), {}
    for path in publish.course_notebooks(src):
        nb = nbformat.read(path, as_version=4)
        if not any("solution" in c.metadata.get("tags", []) for c in nb.cells):
            continue
        for cell in (c for c in nb.cells if c.cell_type == "code"):
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.get("tags", [])
            if "solution" in tags:
                cell.source = stub_solution(cell.source)
                cell.metadata["tags"] = [t for t in tags if t != "solution"] + ["exercise"]
        publish.apply(nb, f"{dst_folder}/{path.name}", pub)
        copies[path.name] = nbformat.writes(nb) + "\n"
    return copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="generate or check the student notebooks")
    parser.add_argument("src", nargs="?", default="notebooks")
    parser.add_argument("dst", nargs="?", default="student")
    parser.add_argument("--check", action="store_true", help="fail if the copies are stale")
    args = parser.parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    wanted = student_copies(src, dst.name)
    present = {p.name for p in dst.glob("*.ipynb")} if dst.is_dir() else set()
    if args.check:
        stale = sorted(n for n, text in wanted.items()
                       if not (dst / n).exists() or (dst / n).read_text() != text)
        extra = sorted(present - set(wanted))
        if stale or extra:
            print(f"student copies stale: {stale}, extra: {extra}; run `make student`")
            return 1
        print(f"student copies current ({len(wanted)} notebooks)")
        return 0
    dst.mkdir(parents=True, exist_ok=True)
    for name in present - set(wanted):
        (dst / name).unlink()
    for name, text in wanted.items():
        (dst / name).write_text(text)
    print(f"wrote {len(wanted)} student notebooks to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
