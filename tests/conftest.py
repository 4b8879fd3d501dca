"""Test configuration.

numba's CUDA simulator must be switched on before numba is first imported, so it is set here,
at collection time: on machines without a GPU (CI) every kernel then runs as Python threads.
A real GPU run sets MGRIT_GRU_REAL_CUDA=1 to keep the real target.

The test modules sit in folders that mirror the package (tests/cuda/ for mgrit_gru/cuda/, ...);
the modules of shared test code (_cuda_helpers.py, _solver_cases.py, ...) sit here, in tests/,
which is put on sys.path so that a test module in any folder imports them by name.
"""
import os
import sys

import matplotlib
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

if os.environ.get("MGRIT_GRU_REAL_CUDA") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    # The simulator runs each CUDA thread as a Python thread while the launching thread polls
    # them in a busy loop; at Python's default GIL switch interval (5 ms) the poller holds the
    # GIL for most of each slice. 0.1 ms halves the CUDA tests' time (measured: 35 s -> 15 s
    # for one MGRIT test on 2 cores) and does not change what any kernel computes.
    sys.setswitchinterval(1e-4)
matplotlib.use("Agg")                                        # headless plots in tests


def pytest_sessionstart(session):
    """A run that asked for the real GPU and has none must fail, not pass with every real-GPU
    test skipped (a broken driver on the GPU machine would otherwise look green)."""
    if os.environ.get("MGRIT_GRU_REAL_CUDA") == "1":
        from mgrit_gru.cuda import cuda_available
        if not cuda_available():
            pytest.exit("MGRIT_GRU_REAL_CUDA=1 but no CUDA GPU is usable (driver, device?)",
                        returncode=3)


@pytest.fixture
def strict_device_arrays(monkeypatch):
    """Make the simulator's device arrays as strict as real ones, and poison allocations.

    The simulator is more permissive than real device arrays: here a slice with a negative step,
    arithmetic on a device array or a copy into a strided device view raises (as on a GPU), and
    every device array `CudaGRU.empty` allocates is NaN-poisoned (an output a kernel forgets to
    write shows). The tests of the CUDA backend's solves ask for it with
    ``pytest.mark.usefixtures("strict_device_arrays")``; on a real GPU it does nothing.
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        yield
        return
    import numpy as np
    from numba.cuda.simulator.cudadrv import devicearray as sim

    from mgrit_gru.cuda import CudaGRU

    orig_getitem, orig_to_dev = sim.FakeCUDAArray.__getitem__, sim.FakeCUDAArray.copy_to_device
    orig_to_host = sim.FakeCUDAArray.copy_to_host

    def getitem(self, idx):
        for k in idx if isinstance(idx, tuple) else (idx,):
            if isinstance(k, slice) and k.step is not None and k.step < 0:
                raise NotImplementedError("device arrays have no negative-stride views")
        return orig_getitem(self, idx)

    def to_dev(self, ary, stream=0):
        assert self.is_c_contiguous(), "copy_to_device into a strided device view"
        return orig_to_dev(self, ary, stream)

    def to_host(self, ary=None, stream=0):
        assert all(s >= 0 for s in self.strides), "D->H copy of a negative-stride view"
        return orig_to_host(self, ary, stream)

    def no_math(self, other):
        raise TypeError("no arithmetic on device arrays")

    monkeypatch.setattr(sim.FakeCUDAArray, "__getitem__", getitem)
    monkeypatch.setattr(sim.FakeCUDAArray, "copy_to_device", to_dev)
    monkeypatch.setattr(sim.FakeCUDAArray, "copy_to_host", to_host)
    for op in ("__add__", "__sub__", "__mul__", "__truediv__", "__neg__"):
        monkeypatch.setattr(sim.FakeCUDAArray, op, no_math, raising=False)
    orig_empty = CudaGRU.empty

    def poisoned(self, shape, dtype=None):
        a = orig_empty(self, shape, dtype)
        if np.dtype(a.dtype).kind == "f":
            a.copy_to_device(np.full(a.shape, np.nan, a.dtype))
        return a

    monkeypatch.setattr(CudaGRU, "empty", poisoned)
    yield
