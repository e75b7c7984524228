#!/usr/bin/env bash
# One device check (CUDA machine, its own python3 with torch): parity/host-sync tests + timings.
# Usage: OUT=<dir> bash benchmarks/gpu_run.sh
set -uo pipefail
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest tests/test_devices.py --device cuda -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | grep -E "^(FAILED|ERROR)|passed|failed"
rc=${PIPESTATUS[0]}
# the chunked PyTorch path on CUDA too (the default there is the fused Triton kernel)
INFOREG_DISABLE_TRITON=1 python3 -m pytest tests/test_devices.py --device cuda -q -p no:cacheprovider \
  -k "entropy or selective or Regularizer or top_p or min_p" 2>&1 | tee "$OUT/pytest_no_triton.log" \
  | grep -E "^(FAILED|ERROR)|passed|failed"
rc=$(( rc | PIPESTATUS[0] ))
# where each case (sync-free or not) first waits for the device, for the record
python3 - <<'PY' 2>&1 | tee "$OUT/sync_sites.log"
import sys, torch
sys.path.insert(0, "tests")
import test_devices as t
inputs = t._to(t._make_inputs(torch.float32), "cuda")
for name, (case, grads, free) in sorted(t.CASES.items()):
    print(f"{name} (expected sync-free: {free}): {t._sync_site(case, inputs, grads)}")
PY
timeout 300 python3 benchmarks/gpu_check.py "$OUT/gpu.md" > "$OUT/gpu.log" 2>&1
echo "gpu_check exit $?"; tail -40 "$OUT/gpu.log"
exit $rc
