"""What the tests of the CUDA backend's solves share: a tiny problem and the backend's stated
accuracy (float64: 1e-10 absolute; float32: 1e-5 relative)."""
import os

import numpy as np

from mgrit_gru import init_gru

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
I, H, B = 3, 4, 2


def close(got, want, dtype, what=""):
    """float64: 1e-10 absolute; float32: 1e-5 relative to the largest reference entry."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    assert np.all(np.isfinite(got)), f"{what}: unwritten (NaN) or non-finite"
    err = np.max(np.abs(got - want)) if got.size else 0.0
    tol = 1e-10 if dtype == np.float64 else 1e-5 * max(1.0, np.max(np.abs(want)))
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


def close_hist(got, want, dtype, what):
    """Residual histories: float64 to 1e-10 relative; float32 to 1e-5 relative to the largest
    entry (a float32 residual near 1e-7 is round-off, and so is its difference)."""
    assert len(got) == len(want), what
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(want), err_msg=what)


def data(dtype, T, L, seed=0):
    p = init_gru(I, H, L, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = 0.5 * rng.standard_normal((L, B, H)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_T = rng.standard_normal((L, B, H)).astype(dtype)
    return p, x, h0, dy, dh_T
