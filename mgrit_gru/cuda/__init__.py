"""numba.cuda kernels and the device backend (`CudaGRU`) for GPU-resident time stepping.

Importing this package needs numba; a GPU is needed only to launch kernels on real hardware
(`cuda_available`), the simulator (NUMBA_ENABLE_CUDASIM=1) runs them on the CPU.
"""
from numba.cuda import config as _config

from .backend import CudaGRU, cuda_available

if _config.ENABLE_CUDASIM:                                   # its shared arrays race (see there)
    from .simulator import patch_shared_arrays
    patch_shared_arrays()

__all__ = ["CudaGRU", "cuda_available"]
