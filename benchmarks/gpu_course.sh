#!/usr/bin/env bash
# The GPU course run, prepared for the first GPU machine (lent for a few minutes, no internet):
# the CUDA tests, then notebooks 00-04 in the `colab` profile with a short schedule, on a random
# BLOOM-560m written on the spot (BLOOM's real shapes; the Hub is unreachable there), printing
# minutes per notebook. Under 10 minutes on one H100-class GPU.
#
#   bash benchmarks/gpu_course.sh [OUT_DIR]
#
# What the machine must have: a CUDA torch and transformers (preinstalled); whatever else the
# course needs comes from ./wheels (ignored by git; fill it here with
# `pip download -d wheels bitsandbytes peft datasets accelerate nbclient nbformat ipykernel ...`
# and carry it). Real data: a copy of the data folder at ./data (ignored; carry it), else the
# generated dataset. Nothing is fetched from the network.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="$(mkdir -p "${1:-${OUT:-build/gpu-course}}" && cd "${1:-${OUT:-build/gpu-course}}" && pwd)"
PY="${PYTHON:-python3}"
STEPS="${STEPS:-30}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
export LACOS_STATIC_WIDGETS=1 TOKENIZERS_PARALLELISM=false LACOS_RUN_DIR="$OUT/runs"
if [ -f data/README.md ]; then
  export LACOS_DATA_DIR="$(pwd)/data"
else
  export LACOS_DATA_SOURCE=generated  # named: the colab profile refuses generated data otherwise
fi
{
  start=$(date +%s)
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo "== install"
  if [ -d wheels ]; then
    $PY -m pip install --quiet --no-index --find-links wheels -e ".[search]" || exit 1
  else
    $PY -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
  fi
  $PY -m lacos_helpers env
  echo "== CUDA tests"
  $PY -m pytest tests/test_gpu.py tests/test_gpu_path_on_cpu.py tests/test_precision.py \
    tests/test_notebook_portability.py -q -p no:cacheprovider
  echo "== a random BLOOM-560m (real shapes, float16 shards, a tokenizer)"
  MODEL="$OUT/bloom-560m-random"
  $PY - "$MODEL" <<'PY'
import sys
from lacos_helpers import data
from lacos_helpers.rehearsal.checkpoint import write_random_bloom
texts = data.training_texts(data.load_nli_triplets("en", limit=4000, seed=0))
print(write_random_bloom(sys.argv[1], "560m", tokenizer_texts=texts))
PY
  echo "== notebooks 00-04, colab profile, $STEPS training steps"
  LACOS_MODEL_ID="$MODEL" LACOS_OVERRIDES="{\"train.steps\": $STEPS, \"eval.sts_limit\": 300}" \
    $PY -m lacos_helpers.course --profile colab --out "$OUT" --only 00 01 02 03 04
  rc=$?
  $PY - "$OUT/summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
for row in summary["notebooks"]:
    print(f"{row['notebook']:<36} {row['status']:>6} {row['seconds'] / 60:6.2f} min")
print(f"{'00-04':<36} {'':>6} {summary['total_seconds'] / 60:6.2f} min")
PY
  echo "== total $(( $(date +%s) - start )) s"
  exit $rc
} 2>&1 | tee "$OUT/gpu_course.log"
exit "${PIPESTATUS[0]}"
