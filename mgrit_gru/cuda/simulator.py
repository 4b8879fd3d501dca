"""A fix for numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), applied when this package is
imported with the simulator on (`mgrit_gru.cuda`).

The simulator runs the threads of a block as Python threads. ``cuda.shared.array`` with a static
shape looks the block's array up by the calling line and creates it when it is missing, with no
lock: two threads that get there together can each create one, and then write and read two
different "shared" arrays (a tree reduction reads memory nobody wrote). Rare at Python's default
GIL switch interval, it was seen in 3 of 200 `norms` launches at 1e-6 s. `patch_shared_arrays`
puts the same lookup under a lock. Dynamic shared memory (``shape=0``) was never affected.
"""
import sys
import threading

import numpy as np

_lock = threading.Lock()


def patch_shared_arrays():
    """Make the simulator's static ``cuda.shared.array`` thread-safe (idempotent)."""
    from numba.cuda.simulator import kernelapi
    shared = kernelapi.FakeCUDAShared
    if getattr(shared.array, "_mgrit_gru_locked", False):
        return
    unlocked = shared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:              # dynamic: one buffer, no lookup
            return unlocked(self, shape, dtype, alignment)
        from numba.core import types
        from numba.np import numpy_support
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)                            # the kernel's line, as numba keys it
        key = (caller.f_code.co_filename, caller.f_lineno)
        with _lock:
            res = self._allocations.get(key)
            if res is None:
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    array._mgrit_gru_locked = True
    shared.array = array
