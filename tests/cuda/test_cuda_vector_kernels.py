"""The backend's small kernels (`mgrit_gru.cuda.vector_kernels`) against NumPy, and their compile
check for sm_90 (in a subprocess without the simulator)."""
import textwrap

import numpy as np
import pytest
from _cuda_solve_helpers import B, H, I, close
from _nosim import run_without_simulator

from mgrit_gru import init_gru
from mgrit_gru.cuda import CudaGRU

pytestmark = pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_kernels(dtype):
    from mgrit_gru.cuda.vector_kernels import take_rows, window_mean
    gru = CudaGRU(init_gru(I, H, 1, dtype=dtype))
    rng = np.random.default_rng(1)
    src = rng.standard_normal((9, 2, B, H)).astype(dtype)
    idx = np.array([8, 3, 3, 0, 5], np.int64)
    out = gru.empty((5, 2, B, H))
    take_rows(gru.to_device(src), gru.to_device(idx, np.int64), out)
    close(gru.to_host(out), src[idx], dtype, "take_rows")
    gx = rng.standard_normal((10, B, 6)).astype(dtype)
    for span in (1, 4):
        out = gru.empty((10 - span + 1, B, 6))
        window_mean(gru.to_device(gx), span, out)
        want = np.stack([gx[a:a + span].mean(0) for a in range(10 - span + 1)])
        close(gru.to_host(out), want, dtype, f"window_mean span {span}")


PTX_SCRIPT = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from mgrit_gru.cuda.vector_kernels import vector_kernels, signatures
    for dtype in (np.float32, np.float64):
        ks = vector_kernels(dtype)
        assert set(signatures(dtype)) == set(ks.py_funcs)
        for name, sig in signatures(dtype).items():
            ptx, _ = cuda.compile_ptx(ks.py_funcs[name], sig, cc=(9, 0))
            assert ".entry" in ptx, name
            assert dtype is np.float64 or ".f64" not in ptx, f"float64 ops in float32 {name}"
            print(name, "ok")
""")


def test_vector_kernels_ptx_sm90():
    """The backend's own small kernels compile for sm_90 (outside the simulator)."""
    proc = run_without_simulator(PTX_SCRIPT)
    assert proc.stdout.count(" ok") == 6
