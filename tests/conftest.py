"""Test configuration.

numba's CUDA simulator must be switched on before numba is first imported, so it is set here,
at collection time: on machines without a GPU (CI) every kernel then runs as Python threads.
A real GPU run sets MGRIT_GRU_REAL_CUDA=1 to keep the real target.
"""
import os
import sys

import matplotlib

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
        import pytest
        from mgrit_gru.cuda import cuda_available
        if not cuda_available():
            pytest.exit("MGRIT_GRU_REAL_CUDA=1 but no CUDA GPU is usable (driver, device?)",
                        returncode=3)
