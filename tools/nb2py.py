"""Inverse of py2nb: print a notebook as a percent-format source (to edit, then py2nb back).

    python tools/nb2py.py notebooks/NN_topic.ipynb > /tmp/NN_topic.py
"""

import json
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    nb = json.load(f)
parts = []
for cell in nb["cells"]:
    tags = cell.get("metadata", {}).get("tags")
    suffix = f" tags={json.dumps(tags)}" if tags else ""
    src = "".join(cell["source"])
    if cell["cell_type"] == "markdown":
        body = "\n".join(("# " + ln) if ln else "#" for ln in src.splitlines())
        parts.append(f"# %% [markdown]{suffix}\n{body}")
    else:
        parts.append(f"# %%{suffix}\n{src}")
print("\n\n".join(parts))
