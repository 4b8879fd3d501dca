#!/usr/bin/env bash
# One GPU check for the CUDA backend (see docs/cuda.md), run from the
# repository root on the GPU machine:  bash docs/benchmarks/run_gpu_check.sh
# Beforehand, on a machine with network, put a numpy 2.4 wheel for CPython 3.12 in .whl/
# (the GPU machine's numpy 2.5 breaks numba-cuda 0.30.4):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl numpy==2.4.6
# .whl/ is git-ignored: when the check runs on another machine, copy .whl/ there with the tree.
#
# Starting the machine may itself take minutes (an H200 took ~5 on 2026-11-26): where GPU time
# is rationed, run this once with a limit of about 555 s and release the machine after.
# Order (most wanted first, each step time-boxed; at most 535 s of time boxes in all):
#   1. the real-GPU tests (production sizes): first the persistent scans at several grid sizes
#      alone (a hang there means the grid barrier deadlocked: stop), then kernels, MGRIT and
#      serial against NumPy
#   2. the benchmark, T = 16384, B = 1 first (the target), then T = 65536, B = 1, then
#      B = 32 at T = 16384 and 65536 (the latter never measured: the deadline cut it on
#      2026-11-27), the short sequences last; JSON rewritten after each (T, B)
#   3. a host profile of one MGRIT forward+backward (where the launch overhead goes), then the
#      persistent scan's µs per step against its grid size (scan_blocks_sweep)
#   4. the small tests on the real GPU (multi-block scans at tiny sizes, every backend path; all
#      of them take ~4 minutes, mostly numba compiles: the time box runs as many as fit, and
#      skips the real_gpu ones step 1 ran; on 2026-11-27 all passed over three runs)
#   5. the launch-limit tests (H = 512 and 1024 blocks, a 1 M-row projection): last, so that
#      their kernel compiles cannot push step 1 past its time box and cost the timings
# Results under $OUT (8 files: the most the device tool brings back): gpu.txt,
# pytest_{barrier,real,small}.log (real: step 1b, then step 5), bench_cuda.json (every record,
# rewritten after each (T, B)), bench_table.txt, profile.txt, scan_blocks.jsonl.
set -u
export OUT=${OUT:-$(mktemp -d)}                              # step 2 reads it from the environment
ls .whl/numpy-2.4*.whl >/dev/null 2>&1 || { echo "no numpy 2.4 wheel in .whl/ (see header)"; exit 2; }
S=$(mktemp -d) && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
  --target "$S" .whl/numpy-2.4*.whl && export PYTHONPATH="$S:$PWD" || exit 1
export MGRIT_GRU_REAL_CUDA=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import numpy, numba, numba.cuda as c; print(numpy.__version__, numba.__version__, \
c.is_available(), c.get_current_device().MULTIPROCESSOR_COUNT)" | tee -a "$OUT/gpu.txt"

# 1a. the grid barrier at production sizes, alone: a timeout here means it deadlocked, so stop
#     (faulthandler dumps where every thread was after 40 s)
MGRIT_GRU_POISON=1 timeout 55 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=40 \
  -k real_gpu_scans_h256 tests/cuda/test_cuda_scan.py > "$OUT/pytest_barrier.log" 2>&1
rc=$?
echo "real-GPU barrier tests: rc=$rc"; tail -12 "$OUT/pytest_barrier.log" | cut -c1-400
[ $rc = 124 ] && { echo "the scans timed out (a deadlocked barrier?): no timings"; exit 1; }

# 1b. the other kernels and MGRIT at production sizes against NumPy (a timeout here is slow
#     compiles or NumPy references, not a hang: go on to the timings)
MGRIT_GRU_POISON=1 timeout 85 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=80 \
  -k "real_gpu and not scans_h256 and not large_hidden and not gridDim" tests/cuda/test_cuda_kernels.py \
  tests/cuda/test_cuda_backend.py tests/cuda/test_cuda_problems.py tests/cuda/test_cuda_serial.py \
  > "$OUT/pytest_real.log" 2>&1
echo "real-GPU tests: rc=$?"; tail -25 "$OUT/pytest_real.log" | cut -c1-400

# 2. timings: serial (persistent, per-step) vs MGRIT vs cuDNN, H = 256, float32
timeout 200 python3 - > /dev/null 2> "$OUT/bench_table.txt" <<'PY'
import json, os
from mgrit_gru.tools.bench_cuda import bench_cuda
pairs = [(16384, 1), (65536, 1), (16384, 32), (65536, 32), (4096, 1), (1024, 1), (1024, 32),
         (4096, 32)]
for r in bench_cuda(pairs=pairs, hidden=256, dtype="float32", cell="implicit", repeat=3,
                    out=os.environ["OUT"] + "/bench_cuda.json", deadline_s=120):
    print(json.dumps(r), flush=True)
PY
echo "bench: rc=$?"

# 3. where the host time of one MGRIT forward+backward goes (T = 16384, B = 1)
timeout 35 python3 -W ignore::Warning - > "$OUT/profile.txt" 2>&1 <<'PY'
import cProfile, pstats
import numpy as np
from numba import cuda
from mgrit_gru.gru import init_gru
from mgrit_gru.solve import mgrit_backward, mgrit_forward
T, B, H = 16384, 1, 256
p = init_gru(H, H, 1, seed=0, dtype=np.float32)
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, H)).astype(np.float32)
dy = rng.standard_normal((T, B, H)).astype(np.float32)
o = dict(levels=3, cf=4, relax="FCF", tol=0.0)
def run():
    fi = mgrit_forward(p, x, backend="cuda", cell="implicit", max_iter=2, **o)[2]
    mgrit_backward(p, fi, dy, backend="cuda", max_iter=1, **o)
    cuda.synchronize()
run()
pr = cProfile.Profile(); pr.enable(); run(); pr.disable()
st = pstats.Stats(pr); st.sort_stats("tottime").print_stats(30)
st.sort_stats("cumulative").print_stats(40)
PY
echo "profile: rc=$?"

# 3b. the persistent scan's grid size (barrier cost vs items per block), T = 4096, B = 1 and 32
timeout 35 python3 - > "$OUT/scan_blocks.jsonl" 2>&1 <<'PY'
import json
from mgrit_gru.tools.bench_cuda import scan_blocks_sweep
for B, blocks in ((1, (4, 8, 16, 32)), (32, (16, 32, 64, 132))):
    for r in scan_blocks_sweep(T=4096, B=B, blocks=blocks):
        print(json.dumps(r), flush=True)
PY
echo "scan blocks: rc=$?"; cut -c1-300 "$OUT/scan_blocks.jsonl"

# 4. the small tests on the real GPU (multi-block scans at tiny sizes, every backend path)
#    (no -x: one failure must not hide the rest; 75 s cuts the last ones, the log says where)
MGRIT_GRU_POISON=1 timeout 75 python3 -m pytest -q -p no:cacheprovider -W ignore::Warning \
  -k "not real_gpu" tests/cuda/test_cuda_scan.py tests/cuda/test_cuda_backend.py \
  tests/cuda/test_cuda_vector_kernels.py tests/tools/test_bench_cuda.py > "$OUT/pytest_small.log" 2>&1
echo "small tests on the GPU: rc=$?"; tail -6 "$OUT/pytest_small.log" | cut -c1-400

# 5. launch limits: blocks of 512 and 1024 threads (launch_bounds), 66000 projection row tiles
echo "== launch-limit tests" >> "$OUT/pytest_real.log"
MGRIT_GRU_POISON=1 timeout 50 python3 -m pytest -q -p no:cacheprovider -W ignore::Warning \
  -k "large_hidden or gridDim" tests/cuda/test_cuda_kernels.py >> "$OUT/pytest_real.log" 2>&1
echo "launch-limit tests: rc=$?"; tail -4 "$OUT/pytest_real.log" | cut -c1-400

cat "$OUT/bench_table.txt"
