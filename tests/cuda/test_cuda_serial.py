"""Serial forward and BPTT on the GPU (`mgrit_gru.cuda.serial`): the persistent scan and the
one-launch-per-step baseline against the NumPy GRU, with host and device inputs.

Runs under numba's CUDA simulator on CPU (tests/conftest.py) with `strict_device_arrays`
(tests/conftest.py). Tests marked `real_gpu` need a GPU.
"""
import numpy as np
import pytest
from _cuda_helpers import real_gpu
from _cuda_solve_helpers import H, I, close, data

from mgrit_gru import gru_backward, gru_forward, init_gru

pytestmark = pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py


@pytest.mark.parametrize("dtype, cell, L", [(np.float64, "implicit", 2), (np.float32, "classic", 1)])
def test_serial_forward_backward_equal_numpy(dtype, cell, L):
    p, x, h0, dy, dh_T = data(dtype, 6, L, seed=2)
    y_c, hT_c, cache_c = gru_forward(p, x, h0, cell=cell, dt=0.7, backend="cuda")
    y_n, hT_n, cache_n = gru_forward(p, x, h0, cell=cell, dt=0.7)
    close(y_c, y_n, dtype, "y")
    close(hT_c, hT_n, dtype, "h_T")
    g_c, dx_c, dh0_c = gru_backward(p, cache_c, dy, dh_T)
    g_n, dx_n, dh0_n = gru_backward(p, cache_n, dy, dh_T)
    for k in g_n:
        close(g_c[k], g_n[k], dtype, k)
    close(dx_c, dx_n, dtype, "dx")
    close(dh0_c, dh0_n, dtype, "dh0")
    g_c2, dx_c2, dh0_c2 = gru_backward(p, cache_c, None, dh_T, backend="cuda")   # no dy
    g_n2, dx_n2, dh0_n2 = gru_backward(p, cache_n, None, dh_T)
    for k in g_n2:
        close(g_c2[k], g_n2[k], dtype, f"no dy: {k}")
    close(dx_c2, dx_n2, dtype, "no dy: dx")
    close(dh0_c2, dh0_n2, dtype, "no dy: dh0")
    with pytest.raises(ValueError, match="backend"):
        gru_backward(p, cache_c, dy, backend="numpy")
    with pytest.raises(ValueError, match="not this model"):
        gru_backward(init_gru(I, H + 1, L, dtype=dtype), cache_c, None)


@pytest.mark.parametrize("launches", ["scan", "per_step"])
def test_serial_device_in_device_out_equals_host_api(launches):
    """gru_forward / gru_backward (cuda) with x, dy on the device: y, h_T, dx stay there,
    with the host API's numbers; a NumPy-backend call refuses a device x by name."""
    from numba import cuda
    from mgrit_gru.cuda.serial import gru_backward as cuda_backward
    from mgrit_gru.cuda.serial import gru_forward as cuda_forward
    p, x, h0, dy, dh_T = data(np.float64, 6, 2, seed=5)
    y, hT, c = cuda_forward(p, x, h0, cell="implicit", launches=launches)
    g, dx, dh0 = cuda_backward(p, c, dy, dh_T, launches=launches)
    d_y, d_hT, d_c = cuda_forward(p, cuda.to_device(x), cuda.to_device(h0), cell="implicit",
                                  launches=launches)
    np.testing.assert_array_equal(d_y.copy_to_host(), y)
    np.testing.assert_array_equal(d_hT.copy_to_host(), hT)
    for dy_in in (dy, cuda.to_device(dy)):
        d_g, d_dx, d_dh0 = cuda_backward(p, d_c, dy_in, cuda.to_device(dh_T), launches=launches)
        np.testing.assert_array_equal(d_dx.copy_to_host(), dx)
        np.testing.assert_array_equal(d_dh0, dh0)
        for k in g:
            np.testing.assert_array_equal(d_g[k], g[k])
    with pytest.raises(ValueError, match="x is a GPU array: use backend='cuda'"):
        gru_forward(p, cuda.to_device(x))
    with pytest.raises(ValueError, match="dy must have shape"):
        cuda_backward(p, d_c, cuda.to_device(dy[:5].copy()))


def test_serial_per_step_launches_equal_the_scan():
    """The one-launch-per-step baseline (benchmark rows) = the persistent scan = NumPy."""
    from mgrit_gru.cuda import serial
    p, x, h0, dy, dh_T = data(np.float64, 5, 2, seed=4)
    y_n, _, cache_n = gru_forward(p, x, h0, cell="implicit")
    g_n, dx_n, dh0_n = gru_backward(p, cache_n, dy, dh_T)
    for launches in ("per_step", "scan"):
        y_c, _, cache_c = serial.gru_forward(p, x, h0, cell="implicit", launches=launches)
        close(y_c, y_n, np.float64, f"y {launches}")
        g_c, dx_c, dh0_c = serial.gru_backward(p, cache_c, dy, dh_T, launches=launches)
        for k in g_n:
            close(g_c[k], g_n[k], np.float64, f"{k} {launches}")
        close(dx_c, dx_n, np.float64, f"dx {launches}")
        close(dh0_c, dh0_n, np.float64, f"dh0 {launches}")
    with pytest.raises(ValueError, match="launches"):
        serial.gru_forward(p, x, h0, launches="graph")


# ----------------------------------------------------------------------------------------------
# real GPU only: production sizes
# ----------------------------------------------------------------------------------------------
@real_gpu
def test_real_gpu_serial_h256():
    dtype, T, Hs = np.float32, 256, 256
    p = init_gru(Hs, Hs, 2, seed=1, dtype=dtype)
    x = np.random.default_rng(1).standard_normal((T, 4, Hs)).astype(dtype)
    y_c, _, c_c = gru_forward(p, x, backend="cuda")
    y_n, _, c_n = gru_forward(p, x)
    close(y_c, y_n, dtype, "y")
    g_c, dx_c, _ = gru_backward(p, c_c, np.ones_like(y_n))
    g_n, dx_n, _ = gru_backward(p, c_n, np.ones_like(y_n))
    for k in g_n:
        close(g_c[k], g_n[k], dtype, k)
    close(dx_c, dx_n, dtype, "dx")
