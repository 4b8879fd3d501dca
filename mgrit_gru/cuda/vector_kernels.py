"""Small data-movement kernels the device MGRIT problems need besides `kernels.py`.

- `fill`: out[...] = value on (n, L, B, H) views (the solver's ``zeros``; a device allocation is
  uninitialised, and ``0 * garbage`` can be NaN, so an axpby cannot stand in for it).
- `take_rows`: out[i] = src[idx[i]] on (n, L, B, H): the adjoint's forward states in reversed
  time, one gather at the start of the backward solve (numba device arrays have no negative-stride
  views, see `mgrit_gru.cuda.problems`).
- `window_mean`: out[a] = mean(gx[a : a + span]) on (T, B, P) tables: the interval-averaged
  coarse input projection (``coarse_input="average"``), once per level.

Thread layout as in `kernels.axpby`: one block per point i with threads striding over the
contiguous (L, B, H) elements (coalesced), or, for `window_mean`, one thread per output element
along the contiguous P axis. Same factory pattern: specialised on the floating type, so float32
kernels do float32 arithmetic; `signatures` gives the PTX signatures (tests compile them for sm_90).
"""
from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np
from numba import cuda, types

from .kernels import RED as THREADS
from .kernels import _nb_type, threads, unit_of


def _make(dtype, nb_t):
    def fill(out, value):
        """out[i, k, b, j] = value; one block per point i, threads along the flattened (k, b, j)."""
        n_pt, L, B, H = out.shape
        i = cuda.blockIdx.x
        for e in range(cuda.threadIdx.x, L * B * H, cuda.blockDim.x):
            k, bb, j = unit_of(e, B, H)
            out[i, k, bb, j] = value

    def take_rows(src, idx, out):
        """out[i] = src[idx[i]] over (L, B, H); one block per output point i."""
        n_pt, L, B, H = out.shape
        i = cuda.blockIdx.x
        r = idx[i]
        for e in range(cuda.threadIdx.x, L * B * H, cuda.blockDim.x):
            k, bb, j = unit_of(e, B, H)
            out[i, k, bb, j] = src[r, k, bb, j]

    def window_mean(gx, span, out):
        """out[a, b, p] = (1/span) Σ_{m < span} gx[a + m, b, p]: one thread per output element,
        consecutive threads on consecutive p (coalesced), the sum in a fixed order."""
        R, B, P = out.shape
        e = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if e < R * B * P:
            a = e // (B * P)
            rem = e - a * B * P
            b = rem // P
            p = rem - b * P
            acc = gx[a, b, p]
            for m in range(1, span):
                acc += gx[a + m, b, p]
            out[a, b, p] = acc / dtype.type(span)

    return {"fill": fill, "take_rows": take_rows, "window_mean": window_mean}


@lru_cache(maxsize=None)
def vector_kernels(dtype):
    """The kernels for one floating type (numba dispatchers; ``py_funcs`` for compile_ptx)."""
    dtype, nb_t = _nb_type(dtype)
    funcs = _make(dtype, nb_t)
    ns = SimpleNamespace(**{name: cuda.jit(f) for name, f in funcs.items()})
    ns.py_funcs = funcs
    return ns


def signatures(dtype):
    """Argument types of each kernel (arrays of any layout), keyed by name."""
    _, f = _nb_type(dtype)
    a3, a4 = f[:, :, :], f[:, :, :, :]
    return {"fill": types.void(a4, f),
            "take_rows": types.void(a4, types.int64[:], a4),
            "window_mean": types.void(a3, types.int64, a3)}


def fill(out, value):
    """out[...] = value on an (n, L, B, H) device array; one launch."""
    n, L, B, H = out.shape
    if n:
        vector_kernels(out.dtype).fill[n, threads(L * B * H)](out, out.dtype.type(value))
    return out


def take_rows(src, idx, out):
    """out[i] = src[idx[i]] on (n, L, B, H) device arrays, idx an (n,) int64 device array."""
    n, L, B, H = out.shape
    if n:
        vector_kernels(out.dtype).take_rows[n, threads(L * B * H)](src, idx, out)
    return out


def window_mean(gx, span, out):
    """out[a] = mean(gx[a : a + span]) for a < out.shape[0] (<= gx.shape[0] - span + 1)."""
    R, B, P = out.shape
    n = R * B * P
    if n:
        vector_kernels(out.dtype).window_mean[(n + THREADS - 1) // THREADS, THREADS](
            gx, np.int64(span), out)
    return out
