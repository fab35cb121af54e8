"""Run the whole course headless: every ``notebooks/NN_*.ipynb`` in order, in one profile.

``make course``: executed copies to ``build/executed/``, key figures to ``build/reports/``, a
summary (seconds, status, key figures per notebook) to ``build/summary.md`` and ``.json``."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from lacos_helpers import config
from lacos_helpers.course.publish import REPO_ROOT, course_notebooks

CELL_TIMEOUT_S = 3600


def find_notebooks(folder: Path, selection: list[str] | None = None) -> list[Path]:
    """Course notebooks ``NN_topic.ipynb`` in ``folder``, sorted; ``selection`` filters by prefix
    or name (``["00", "01_blockwise_quantization"]``)."""
    notebooks = course_notebooks(folder)
    if selection:
        notebooks = [p for p in notebooks if any(p.stem.startswith(s) or p.name == s
                                                 for s in selection)]
        if not notebooks:
            raise ValueError(f"no notebook in {folder} matches {selection}")
    if not notebooks:
        raise FileNotFoundError(f"no NN_*.ipynb notebooks in {folder}")
    return notebooks


def execute_notebook(path: Path, out_dir: Path, profile: str) -> dict:
    """Execute one notebook in a fresh kernel; returns its summary row."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out_dir = out_dir.resolve()  # the kernel runs in the notebook's folder
    report_file = out_dir / "reports" / f"{path.stem}.json"
    report_file.unlink(missing_ok=True)
    os.environ["LACOS_PROFILE"] = profile
    os.environ["LACOS_REPORT_FILE"] = str(report_file)
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # The kernel app warns at every start that it runs over TCP on localhost; its errors still
    # show (log level ERROR), the notebook's own warnings are untouched.
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        client.execute()
    except CellExecutionError as exc:
        status, error = "failed", str(exc).strip().splitlines()[-1][:300]
    except Exception as exc:  # kernel died, timeout ...
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - start
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / "executed" / path.name)
    figures = json.loads(report_file.read_text()) if report_file.exists() else {}
    return {"notebook": path.name, "status": status, "seconds": round(seconds, 1),
            "figures": figures, "error": error}


def format_summary(rows: list[dict], profile: str, total_s: float) -> str:
    lines = [f"# LACoS course run: profile `{profile}`", "",
             f"Total: {total_s / 60:.1f} min, {sum(r['status'] == 'ok' for r in rows)}/"
             f"{len(rows)} notebooks ok.", "",
             "| notebook | status | seconds | key figures |", "|---|---|---|---|"]
    for row in rows:
        figs = "; ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in row["figures"].items())
        if row["error"]:
            figs = f"ERROR: {row['error']}" + (f"; {figs}" if figs else "")
        lines.append(f"| {row['notebook']} | {row['status']} | {row['seconds']:.0f} | {figs} |")
    return "\n".join(lines) + "\n"


def run_course(profile: str, out_dir: Path, notebooks_dir: Path,
               selection: list[str] | None = None) -> int:
    """Execute the course; returns the number of failed notebooks."""
    from tqdm.auto import tqdm

    config.load_profile(profile)  # unknown profile -> clear error before any work
    notebooks = find_notebooks(notebooks_dir, selection)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"Running {len(notebooks)} notebooks in profile {profile!r}; output in {out_dir}")
    rows, start = [], time.perf_counter()
    bar = tqdm(notebooks, unit="notebook")
    for path in bar:
        bar.set_description(path.stem)
        row = execute_notebook(path, out_dir, profile)
        rows.append(row)
        tqdm.write(f"{row['status']:>6}  {row['seconds']:7.1f} s  {path.name}"
                   + (f"  {row['error']}" if row["error"] else ""))
    total = time.perf_counter() - start
    summary = format_summary(rows, profile, total)
    (out_dir / "summary.md").write_text(summary)
    (out_dir / "summary.json").write_text(json.dumps(
        {"profile": profile, "total_seconds": round(total, 1), "notebooks": rows}, indent=1,
        ensure_ascii=False))
    print(summary)
    return sum(r["status"] != "ok" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None,
                        help=f"one of {', '.join(config.PROFILES)} "
                             "(default: LACOS_PROFILE or auto)")
    parser.add_argument("--out", default=str(REPO_ROOT / "build"), help="output folder")
    parser.add_argument("--notebooks", default=str(REPO_ROOT / "notebooks"), help="notebook folder")
    parser.add_argument("--only", nargs="*", help="run only these notebooks (name or NN prefix)")
    args = parser.parse_args(argv)
    profile = args.profile or config.default_profile_name()
    failed = run_course(profile, Path(args.out), Path(args.notebooks), args.only)
    return 1 if failed else 0
