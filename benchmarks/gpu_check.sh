#!/usr/bin/env bash
# The GPU check, prepared for a GPU machine lent for a few minutes (none is available to CI):
# install the course next to the machine's own CUDA torch, run the CUDA tests, rehearse BLOOM
# 560m (colab profile's batch) and 7b1 (batch 2 x 16 and the paper's batch) on CUDA, print the
# records. Under 10 minutes in all on one H100-class GPU.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Packages the machine lacks (bitsandbytes, peft, datasets ...) come from ./wheels when that
# folder exists (make it here with `pip download -d wheels bitsandbytes peft datasets ...`
# and carry it); nothing is fetched from the network.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-build/gpu}}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 LACOS_DATA_SOURCE="${LACOS_DATA_SOURCE:-generated}"
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo "== install"
  if [ -d wheels ]; then
    $PY -m pip install --quiet --no-index --find-links wheels -e . || exit 1
  else
    $PY -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
  fi
  $PY -m lacos_helpers env
  echo "== CUDA tests"
  $PY -m pytest tests/test_gpu.py tests/test_quantization.py tests/test_precision.py -q \
    -p no:cacheprovider -k "cuda or gpu or precision"
  echo "== rehearsals"
  for args in "--shape bloom-560m --profile colab --batch 32 --max-length 64 --steps 3" \
              "--shape bloom-7b1 --profile paper --batch 2 --max-length 16 --steps 2" \
              "--shape bloom-7b1 --profile paper --batch 2 --max-length 16 --steps 2 --recipe lean" \
              "--shape bloom-7b1 --profile paper --batch 64 --max-length 75 --steps 2"; do
    $PY -m lacos_helpers rehearse --device cuda $args --json "$OUT/gpu_rehearsals.jsonl" \
      | tail -1
  done
} 2>&1 | tee "$OUT/gpu_check.log"
