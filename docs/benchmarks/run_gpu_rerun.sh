#!/usr/bin/env bash
# The second GPU call of 2026-11-27 (H200), after run_gpu_check.sh: the (T, B) pairs its run
# lost (the bench ran out of GPU memory at T = 16384, B = 32: earlier rows' solves were still
# allocated; cuDNN refused T = 65536), with the fixes (rows free their solves, cuDNN in chunks),
# then the small tests on the real GPU with a longer time box (40 s cut them at 22 tests).
set -u
export OUT=${OUT:-$(mktemp -d)}
S=$(mktemp -d) && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
  --target "$S" .whl/numpy-2.4*.whl && export PYTHONPATH="$S:$PWD" || exit 1
export MGRIT_GRU_REAL_CUDA=1
timeout 230 python3 - > "$OUT/bench_cuda.jsonl" 2> "$OUT/bench_table.txt" <<'PY'
import json, os
from mgrit_gru.tools.bench_cuda import bench_cuda
pairs = [(65536, 1), (16384, 32), (65536, 32)]
for r in bench_cuda(pairs=pairs, hidden=256, dtype="float32", cell="implicit", repeat=3,
                    out=os.environ["OUT"] + "/bench_cuda.json", deadline_s=90):
    print(json.dumps(r), flush=True)
PY
echo "bench: rc=$?"
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader
MGRIT_GRU_POISON=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -W ignore::Warning \
  tests/cuda/test_cuda_scan.py tests/cuda/test_cuda_backend.py tests/cuda/test_cuda_vector_kernels.py tests/tools/test_bench_cuda.py > "$OUT/pytest_small.log" 2>&1
echo "small tests on the GPU: rc=$?"; tail -15 "$OUT/pytest_small.log" | cut -c1-400
grep -v "Warning\|warn(" "$OUT/bench_table.txt" | tail -40
