"""Would the Colab install cell change anything that Colab ships? Checked offline of Colab:

1. build a stand-in of Colab's GPU runtime: a venv (Python 3.13 when available, as on Colab)
   whose site-packages hold one metadata-only ``*.dist-info`` per package and version of
   ``tests/data/colab/pip-freeze.gpu.txt`` (Colab's published ``pip freeze``);
2. ``pip install --dry-run --report`` of the install cell's spec against this checkout, with
   ``constraints.txt`` (as the cell does);
3. print what pip would install and fail when it would upgrade or downgrade a package that
   Colab ships.

    .venv/bin/python tools/colab_dry_run.py [--json report.json]

Needs the package index (PyPI), not the Hub. Exit 0: nothing Colab ships is touched.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FREEZE = ROOT / "tests" / "data" / "colab" / "pip-freeze.gpu.txt"
EXTRAS = "search"  # as the Colab install cell (lacos_helpers.course.publish.COLAB_EXTRAS)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def colab_packages(freeze: Path = FREEZE) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a ``pip freeze``."""
    found = {}
    for line in freeze.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*$", line.strip())
        if match:
            found[canonical(match[1])] = match[2]
    return found


def find_python(version: str = "3.13") -> str:
    """A Python of Colab's minor version if this machine has one, else this interpreter."""
    candidates = [*sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}")),
                  shutil.which(f"python{version}")]
    for candidate in candidates:
        if candidate and subprocess.run([str(candidate), "-c", "pass"],
                                        capture_output=True).returncode == 0:
            return str(candidate)
    return sys.executable


def build_standin(folder: Path, packages: dict[str, str], python: str) -> Path:
    """A venv without pip whose site-packages list ``packages`` as installed."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(folder)], check=True)
    interpreter = folder / "bin" / "python"
    site = Path(subprocess.run([str(interpreter), "-c", "import sysconfig; print("
                                "sysconfig.get_paths()['purelib'])"], check=True,
                               capture_output=True, text=True).stdout.strip())
    for name, version in packages.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                       f"Version: {version}\n")
        (info / "INSTALLER").write_text("colab-standin\n")
        (info / "RECORD").write_text("")
    return interpreter


def dry_run(interpreter: Path, report: Path) -> dict:
    """pip's ``--dry-run --report`` of the Colab spec against ``interpreter``'s packages."""
    spec = f"lacos-helpers[{EXTRAS}] @ {ROOT.as_uri()}"
    cmd = [sys.executable, "-m", "pip", "--python", str(interpreter), "install", "--dry-run",
           "--quiet", "--report", str(report), "-c", str(ROOT / "constraints.txt"), spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(report.read_text())


def changes(report: dict, packages: dict[str, str]) -> dict[str, list]:
    """What the install would do: new packages, and changes to packages Colab ships."""
    out = {"new": [], "changed": []}
    for item in report.get("install", []):
        meta = item["metadata"]
        name, version = canonical(meta["name"]), meta["version"]
        if name == "lacos-helpers":
            continue
        if name in packages:
            out["changed"].append((name, packages[name], version))
        else:
            out["new"].append((name, version))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args(argv)
    packages = colab_packages()
    python = find_python()
    with tempfile.TemporaryDirectory(prefix="colab-standin-") as tmp:
        interpreter = build_standin(Path(tmp) / "venv", packages, python)
        version = subprocess.run([str(interpreter), "-c", "import platform; "
                                  "print(platform.python_version())"], capture_output=True,
                                 text=True).stdout.strip()
        result = changes(dry_run(interpreter, Path(tmp) / "report.json"), packages)
    summary = {"colab_packages": len(packages), "python": version, **result}
    print(f"Colab stand-in: {len(packages)} packages, Python {version}")
    print("would install (new to Colab): " + (", ".join(f"{n}=={v}" for n, v in result["new"])
                                                or "nothing"))
    for name, old, new in result["changed"]:
        print(f"WOULD CHANGE {name}: Colab has {old}, the install would put {new}")
    if not result["changed"]:
        print("nothing that Colab ships would be upgraded or downgraded")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 1 if result["changed"] else 0


if __name__ == "__main__":
    sys.exit(main())
