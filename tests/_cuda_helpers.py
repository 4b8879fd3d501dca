"""What the CUDA kernel tests share: tolerances, NaN poisoning, the real-GPU marker."""
import numpy as np
import pytest

from mgrit_gru.cuda import cuda_available

GATES = ("r", "z", "n", "ghn")
DTYPES = (np.float64, np.float32)
real_gpu = pytest.mark.skipif(not cuda_available(), reason="needs a real CUDA GPU")


def close(got, want, dtype):
    """float64: 1e-10 absolute; float32: 1e-5 relative to the largest reference entry."""
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), "unwritten (NaN-poisoned) or non-finite output"
    err = np.max(np.abs(got - want)) if got.size else 0.0
    tol = 1e-10 if dtype == np.float64 else 1e-5 * max(1.0, np.max(np.abs(want)))
    assert err <= tol, f"max error {err:.3g} > {tol:.3g}"


def nan(shape, dtype):
    """An output buffer poisoned with NaN: an element a kernel forgets to write shows."""
    return np.full(shape, np.nan, dtype)
