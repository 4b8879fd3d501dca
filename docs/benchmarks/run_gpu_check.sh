#!/usr/bin/env bash
# One GPU check for the CUDA backend (see /work/shared/GPU.md and docs/cuda.md), run from the
# repository root on the GPU machine:  bash docs/benchmarks/run_gpu_check.sh
# Before the session, on a machine with network, put a numpy 2.4 wheel for CPython 3.12 in .whl/
# (the GPU machine's numpy 2.5 breaks numba-cuda 0.30.4):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl numpy==2.4.6
# .whl/ is git-ignored: the device tool must carry it (run(..., carry=[".whl"])).
# Budget: ~1-2 min of tests, then the benchmark (serial one-launch-per-step rows dominate).
# Results: $OUT/bench_cuda.json (full) and $OUT/*.log; the table is printed last.
set -u
OUT=${OUT:-$(mktemp -d)}
ls .whl/numpy-2.4*.whl >/dev/null 2>&1 || { echo "no numpy 2.4 wheel in .whl/ (see header)"; exit 2; }
S=$(mktemp -d) && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
  --target "$S" .whl/numpy-2.4*.whl && export PYTHONPATH="$S:$PWD" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import numpy, numba, numba.cuda as c; print(numpy.__version__, numba.__version__, c.is_available())"
# 1. correctness first: kernels and backend against NumPy on the real GPU (real_gpu tests run)
MGRIT_GRU_REAL_CUDA=1 timeout 300 python3 -m pytest -q -x tests/test_cuda_kernels.py \
  tests/test_cuda_backend.py 2>&1 | tee "$OUT/pytest.log" | tail -15
[ "${PIPESTATUS[0]}" = 0 ] || { echo "tests failed: no timings"; exit 1; }
# 2. timings: serial vs MGRIT vs cuDNN, T = 1024..65536, B = 1 and 32, H = 256, float32
timeout 420 python3 -m mgrit_gru.cli bench --backend cuda --repeat 3 --out "$OUT/bench_cuda.json" \
  > "$OUT/bench_cuda.jsonl" 2> "$OUT/bench_table.txt"
rc=$?
cat "$OUT/bench_table.txt"
exit $rc
