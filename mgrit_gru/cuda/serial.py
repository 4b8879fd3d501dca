"""Serial forward pass and BPTT on the device: `gru_forward` / `gru_backward` with backend="cuda".

The same recurrences as `mgrit_gru.gru.gru_forward` / `gru_backward`. By default each runs as ONE
launch of a persistent kernel (`CudaGRU.scan` / `CudaGRU.vjp_scan`, see `scan_kernels`): the
blocks march through all T steps together, with a grid-wide barrier between steps. States, gates
and cotangents stay on the device; the host sees x and h0 going in, and y, h_T (forward) or grads,
dx, dh0 (backward) coming out, once per call.

``launches="per_step"`` keeps the naive baseline: one `CudaGRU.step` launch per step (the
backward: one `axpby` for the output cotangent and one `vjp`), bound by the host cost of a
launch from Python (argument marshalling of ~20 arrays), tens of times slower than the
persistent scan at B = 1 (docs/cuda.md has the measurements). The benchmark reports both.
"""
from __future__ import annotations

import numpy as np

from ..checks import (check_cell, check_cotangent, check_h0, check_sequence, gru_dims,
                      require_cotangent)
from .backend import GATES, CudaGRU, as_device, check_device, small_to_host, view
from .problems import input_gradient, outputs_on_device, reversed_dy, to_host


LAUNCHES = ("scan", "per_step")


def _check_launches(launches):
    if launches not in LAUNCHES:
        raise ValueError(f"launches must be one of {LAUNCHES}, got {launches!r}")


def forward_device(gru, x, h0, dt, launches="scan"):
    """Serial stepping on device arrays: x (T, B, I), h0 (L, B, H) -> (hs, gates, t_index).

    ``hs`` (T+1, L, B, H) holds u_0..u_T, ``gates`` the (T, L, B, H) tables `gru_backward`
    needs. One persistent launch (``launches="scan"``) or one launch per step ("per_step");
    nothing is copied to the host.
    """
    _check_launches(launches)
    T = x.shape[0]
    L, B, H = h0.shape
    gx0 = gru.project(x)
    hs = gru.empty((T + 1, L, B, H))
    gru.copy(h0.reshape(1, L, B, H), hs[0:1])
    gates = {g: gru.empty((T, L, B, H)) for g in GATES}
    tix = gru.to_device(np.arange(T + 1), np.int64)        # views tix[t:t+1]: no transfer per step
    if launches == "scan":
        gru.scan(hs, tix[:T], gx0, dt, gates=gates)
    else:
        for t in range(T):
            gru.step(hs[t:t + 1], tix[t:t + 1], gx0, dt, hs[t + 1:t + 2], gates=gates)
    return hs, gates, tix


def gru_forward(params, x, h0=None, cell="classic", dt=1.0, launches="scan"):
    """`mgrit_gru.gru.gru_forward` on the device (same arguments and returns).

    x may be a GPU array (numba, CuPy, a PyTorch CUDA tensor; the parameters' dtype): then y
    and h_T are returned as device arrays, and `gru_backward` returns dx on the device.
    The cache holds device arrays (states, gates, x) and is only for `gru_backward` with the
    cuda backend. ``launches``: "scan" (one persistent launch) or "per_step" (the baseline).
    """
    _check_launches(launches)
    L, I, H, dtype = gru_dims(params)
    d_x = as_device(x)
    if d_x is None:
        x, h0 = check_sequence(x, h0, L, I, H, dtype)
    else:
        check_device(d_x, "x", (None, None, I), dtype, contiguous=True)
        h0 = check_h0(small_to_host(h0), L, d_x.shape[1], H, dtype)
    cell, dt = check_cell(cell, dt)
    gru = CudaGRU(params, cell, dtype=dtype)
    device_io = d_x is not None                              # the cache keeps its own x
    d_x = gru.private_copy(d_x) if device_io else gru.to_device(x)
    hs, gates, tix = forward_device(gru, d_x, gru.to_device(h0), dt, launches)
    T, B = d_x.shape[:2]
    if device_io:                                            # fresh copies, left on the device
        y, h_T = outputs_on_device(gru, hs)
    else:
        top = view(hs, (slice(1, None), slice(L - 1, L)))   # y_t: u_{t+1}, top layer
        y, h_T = to_host(gru, top)[:, 0], gru.to_host(hs[T:T + 1])[0]
    cache = {"backend": "cuda", "x": d_x, "hs": hs, "gates": gates, "cell": cell, "dt": dt,
             "tix": tix, "shape": (T, B, L, I, H), "dtype": np.dtype(dtype),
             "device_io": device_io}
    return y, h_T, cache


def backward_device(gru, params, cache, dy=None, lam=None, launches="scan", input_grad=True):
    """BPTT on device arrays: dy (T, B, H) on the host or the device, or None; lam (1, L, B, H)
    = λ_T, overwritten with λ_0. Returns (grads, dx) as device arrays.

    "scan": one `vjp_scan` launch for the recurrence μ_t = J_tᵀ μ_{t+1} + dy_{t-1} (top layer) in
    reversed time, μ_t = λ_t + dy_{t-1} being the cotangent the step t-1 VJP takes; "per_step": two
    launches per step (the output cotangent, then the VJP).
    """
    _check_launches(launches)
    hs, gates, tix, dt = cache["hs"], cache["gates"], cache["tix"], cache["dt"]
    T, B, L, I, H = cache["shape"]
    dgx = gru.empty((T, L, B, 3 * H))
    dgh = gru.empty((T, L, B, 3 * H))
    if launches == "scan":
        mus = gru.empty((T + 1, L, B, H))
        gru.copy(lam, mus[0:1])
        rev = gru.to_device(np.arange(T - 1, -1, -1), np.int64)    # step T-1-s at scan index s
        f = None
        if dy is not None:
            f = reversed_dy(gru, dy, rev)                    # f[s] = dy_{T-1-s}, zero at s = T
            top = view(mus, (slice(0, 1), slice(L - 1, L)))
            gru.axpby(1.0, top, 1.0, f[0:1], top)            # μ_T = λ_T + dy_{T-1}
        gru.vjp_scan(hs, rev, mus, gates, rev, dt, fine=True, f=f, dg=(dgx, dgh))
        gru.copy(mus[T:T + 1], lam)
    else:
        d_dy = None if dy is None else gru.to_device(dy).reshape(T, 1, B, H)  # C-contiguous
        top = view(lam, (slice(None), slice(L - 1, L)))
        for t in reversed(range(T)):
            if d_dy is not None:
                gru.axpby(1.0, top, 1.0, d_dy[t:t + 1], top)   # λ += dy_t on the top layer
            gru.vjp(hs[t:t + 1], lam, tix[t:t + 1], dt, lam, fine=True, gates=gates,
                    dg=(dgx, dgh))
    grads = gru.param_grads(cache["x"], hs, dgx, dgh)
    return grads, (input_gradient(gru, params, dgx[:, 0]) if input_grad else None)


def gru_backward(params, cache, dy=None, dh_T=None, launches="scan", input_grad=True):
    """`mgrit_gru.gru.gru_backward` on the device for a cache from `gru_forward` (cuda)."""
    _check_launches(launches)
    L, I, H, dtype = gru_dims(params)
    if not isinstance(cache, dict) or cache.get("backend") != "cuda":
        raise ValueError("cache must be the third output of gru_forward(..., backend='cuda')")
    T, B, L_c, I_c, H_c = cache["shape"]
    if (L_c, I_c, H_c) != (L, I, H) or cache["dtype"] != dtype:
        raise ValueError(f"cache holds a GRU with (L, I, H) = {(L_c, I_c, H_c)} "
                         f"({cache['dtype']}) but params give {(L, I, H)} ({dtype}): "
                         "not this model's cache")
    d_dy = as_device(dy)                                     # on the GPU: used in place
    if d_dy is None:
        dy = check_cotangent(dy, (T, B, H), dtype, "dy")
    else:
        dy = check_device(d_dy, "dy", (T, B, H), dtype, contiguous=True)
    dh_T = check_cotangent(small_to_host(dh_T), (L, B, H), dtype, "dh_T")
    require_cotangent(dy, dh_T, "gru_backward")
    gru = CudaGRU(params, cache["cell"], dtype=dtype)         # this call's params, like NumPy's
    lam = gru.to_device((np.zeros((L, B, H), dtype) if dh_T is None else dh_T)[None])
    grads, dx = backward_device(gru, params, cache, dy, lam, launches, input_grad)
    grads = {k: gru.to_host(v) for k, v in grads.items()}
    if dx is not None and not cache.get("device_io"):
        dx = gru.to_host(dx)
    return grads, dx, gru.to_host(lam)[0]
