#!/usr/bin/env bash
# Does the course run on the library versions Google Colab ships? Builds .colab-venv with
# Colab's versions (tests/data/colab/pip-freeze.gpu.txt) of every library the course shares with
# Colab (transformers, peft, datasets, accelerate, tokenizers, huggingface_hub, numpy,
# matplotlib, safetensors, sentence-transformers, scikit-learn, scipy ...), then runs the
# package tests and the notebooks (ci profile) there, and the Jupyter stack Colab's kernel runs
# (ipykernel 6, IPython 7, ipywidgets 7 ...).
# Usage: tools/colab_versions_check.sh [--reuse] [pytest args]   (make colab-versions)
#   --reuse: keep an existing .colab-venv (reinstalls nothing: faster reruns)
#   pytest args are added to the run; naming a test file or folder (tests/test_export.py) runs
#   only what they name instead of tests and notebooks
# Differences from Colab that remain: torch is the CPU build 2.13.0 (Colab: 2.11.0+cu128, a
# CUDA build that cannot be installed here), Python is 3.11 (Colab: 3.13, no CPU torch wheel of
# 3.13 here), and there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.colab-venv
FREEZE=tests/data/colab/pip-freeze.gpu.txt
SHARED="transformers peft datasets accelerate tokenizers huggingface_hub numpy matplotlib \
safetensors sentence-transformers scikit-learn scipy tqdm packaging pyarrow fsspec \
ipywidgets widgetsnbextension jupyterlab_widgets ipykernel ipython jupyter_client nbclient \
nbformat pytest"
REUSE=0
if [[ "${1:-}" == "--reuse" ]]; then REUSE=1; shift; fi
selects=0
for arg in "$@"; do [[ -e "${arg%%::*}" ]] && selects=1; done
if [[ $selects == 0 ]]; then set -- tests notebooks "$@"; fi
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
for name in $SHARED; do
  grep -i -E "^${name//-/[-_]}==" "$FREEZE" >> "$pins" || { echo "$name: not in $FREEZE"; exit 1; }
done
echo "Colab's versions used here ($(grep -o '([0-9-]*,' "$FREEZE" | head -1 | tr -d '(,')):"
sed 's/^/  /' "$pins"
if [[ $REUSE == 1 && -x "$VENV/bin/python" ]]; then
  echo "reusing $VENV"
else
  rm -rf "$VENV" && python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "torch==2.13.0"
  "$VENV/bin/pip" install --quiet -c "$pins" -e ".[dev,offline-model]"
fi
"$VENV/bin/pip" list 2>/dev/null | grep -i -E "^(torch|transformers|peft|datasets|accelerate|\
tokenizers|numpy|sentence-transformers|ipywidgets|ipykernel|ipython) "
rm -rf build/colab-venv-runs
LACOS_PROFILE=ci LACOS_RUN_DIR="$(pwd)/build/colab-venv-runs" MPLBACKEND=Agg LACOS_STATIC_WIDGETS=1 \
  "$VENV/bin/python" -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider \
  -q "$@"
