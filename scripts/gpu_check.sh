#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the compiled Triton kernels against the reference path
# (every module, dims 1-3, both layouts, four dtypes), the kernel benchmark with its 80 %-of-HBM check,
# and the ResNet-50 training step. Neither the build nor the test suite needs a GPU; this is run by hand
# where one is available, with torch and Triton already installed (it installs nothing):
#
#   bash scripts/gpu_check.sh [OUTPUT_FOLDER]      # default ./gpu-results; a few minutes on an H100
#   METHODS=reference,timm,compile,fused ROUNDS=31 bash scripts/gpu_check.sh   # the whole table
#
# Every step runs even if an earlier one fails; the exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
failed=0

"$PYTHON" - <<'EOF' | tee "$out/device.txt"
import torch
import triton

props = torch.cuda.get_device_properties(0)
print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs; "
      f"torch {torch.__version__}, CUDA {torch.version.cuda}, Triton {triton.__version__}")
EOF
(( PIPESTATUS[0] == 0 )) || { echo "no usable CUDA device" >&2; exit 1; }

echo "== compiled Triton kernels vs the reference path"
"$PYTHON" tests/fused/triton_interpreter_check.py --device cuda 2>&1 | tee "$out/triton_cuda.txt"
(( PIPESTATUS[0] == 0 )) || failed=$((failed + 1))

echo "== kernel benchmark (ResNet-50 stage shapes)"
# torch.compile of 44 module-shape pairs would take most of a 10-minute slot: METHODS=... adds it back.
"$PYTHON" benchmarks/kernels.py --device cuda --rounds "${ROUNDS:-21}" \
  --methods "${METHODS:-reference,timm,fused}" --out "$out" 2>&1 | tail -n 60
(( PIPESTATUS[0] == 0 )) || failed=$((failed + 1))

echo "== ResNet-50 training step"
"$PYTHON" benchmarks/resnet_step.py --devices cuda --out "$out" 2>&1 | tail -n 20
(( PIPESTATUS[0] == 0 )) || failed=$((failed + 1))

echo "failed steps: $failed"
exit "$failed"
