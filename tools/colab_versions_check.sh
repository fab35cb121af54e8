#!/usr/bin/env bash
# Does the course run on the library versions Google Colab ships? Builds .colab-venv with
# Colab's versions (tests/data/colab/pip-freeze.gpu.txt) of every library the course shares with
# Colab (transformers, peft, datasets, accelerate, tokenizers, huggingface_hub, numpy,
# matplotlib, safetensors, sentence-transformers, scikit-learn, scipy ...), then runs the
# package tests and the notebooks (ci profile) there.
# Differences from Colab that remain: torch is the CPU build 2.13.0 (Colab: 2.11.0+cu128, a
# CUDA build that cannot be installed here), Python is 3.11 (Colab: 3.13, no CPU torch wheel of
# 3.13 here), and there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.colab-venv
FREEZE=tests/data/colab/pip-freeze.gpu.txt
SHARED="transformers peft datasets accelerate tokenizers huggingface_hub numpy matplotlib \
safetensors sentence-transformers scikit-learn scipy tqdm packaging pyarrow fsspec"
rm -rf "$VENV" && python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "torch==2.13.0"
pins=$(mktemp)
for name in $SHARED; do
  grep -i -E "^${name//-/[-_]}==" "$FREEZE" >> "$pins"
done
echo "Colab's versions used here:"; sed 's/^/  /' "$pins"
"$VENV/bin/pip" install --quiet -c "$pins" -e ".[dev,offline-model]"
"$VENV/bin/pip" list 2>/dev/null | grep -i -E "^(torch|transformers|peft|datasets|accelerate|tokenizers|numpy|sentence-transformers) "
LACOS_PROFILE=ci LACOS_RUN_DIR="$(pwd)/build/colab-venv-runs" MPLBACKEND=Agg LACOS_STATIC_WIDGETS=1 \
  "$VENV/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider \
  -q -m "not slow" "$@"
