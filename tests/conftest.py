"""Test configuration.

numba's CUDA simulator must be switched on before numba is first imported, so it is set here,
at collection time: on machines without a GPU (CI) every kernel then runs as Python threads.
A real GPU run sets MGRIT_GRU_REAL_CUDA=1 to keep the real target.
"""
import os

import matplotlib

if os.environ.get("MGRIT_GRU_REAL_CUDA") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
matplotlib.use("Agg")                                        # headless plots in tests
