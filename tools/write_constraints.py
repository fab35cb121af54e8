"""Write constraints.txt: an upper bound for every direct dependency of the course (core and
extras) = the version installed here, i.e. the versions CI ran. Run it after a deliberate
upgrade, then `make test`:

    .venv/bin/python tools/write_constraints.py > constraints.txt
"""

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
specs = list(project["dependencies"])
for extra in project["optional-dependencies"].values():
    specs += extra
names = sorted({Requirement(s).name.lower() for s in specs} - {project["name"]})
print("# Upper bounds = the versions CI ran (tools/write_constraints.py). Used by `make setup`,")
print("# Binder and the Colab install cell: pip installs nothing newer than what was tested.")
for name in names:
    print(f"{name}<={metadata.version(name).split('+')[0]}")  # no local label (+cpu)
