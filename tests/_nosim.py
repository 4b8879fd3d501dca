"""Run a Python snippet in a subprocess without numba's CUDA simulator (for PTX compilation).

The test process has NUMBA_ENABLE_CUDASIM=1 (conftest.py); `numba.cuda.compile_ptx` needs the
real target and NVVM from numba-cuda[cu13], but no GPU.
"""
import importlib.metadata
import os
import subprocess
import sys

import pytest


def _nvvm_installed():
    try:
        importlib.metadata.version("nvidia-nvvm")            # what numba-cuda[cu13] brings
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def run_without_simulator(script, timeout=300):
    """Run ``script`` with the checkout first on PYTHONPATH; skip if NVVM is missing."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0 and ("NVVM" in proc.stderr or "libnvvm" in proc.stderr) \
            and not _nvvm_installed():                       # installed and failing: a failure
        pytest.skip("NVVM not installed (pip install numba-cuda[cu13])")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
