"""The numbers behind the diagnostics pictures: error against time, the cycle trace, and how
exact the gradients of an inexact forward and backward solve are.

- `error_vs_time`: ||u_k(t) − u*(t)|| per cycle k and time index t.
- `cycle_trace`: the building blocks a set of MGRIT options runs, replayed on a tiny problem.
- `gradient_error`: relative error of a backward pass's gradients against a reference.
- `gradient_error_grid`: that error after m forward and n backward iterations, for a grid of
  (m, n).

No plotting here (`mgrit_gru.tools.plots` draws these numbers), so nothing imports matplotlib.
"""
from __future__ import annotations

import math

import numpy as np

from ..checks import int_at_least

OPS = ("F", "C", "residual", "restrict", "correct", "coarsest")
"""Operations recorded in a trace (see `mgrit_gru.mgrit.MGRIT`'s ``trace``)."""


MAX_REPLAY_STEPS = 2 ** 20
"""Largest time grid `cycle_trace` replays on (a deeper hierarchy: record with ``trace=True``)."""


def _show(v, n=60):
    """A short repr for error messages."""
    text = repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def error_vs_time(iterates, exact):
    """Error ||u_k(t) − u*(t)|| (2-norm over the state) per iterate k and time index t.

    Parameters
    ----------
    iterates : list of arrays (N+1, *shape), or an `MGRITInfo` (its ``iterates``)
    exact : array (N+1, *shape)

    Returns
    -------
    err : ndarray (len(iterates), N+1)
    """
    its = iterates.iterates if hasattr(iterates, "iterates") else iterates
    if not isinstance(its, (list, tuple, np.ndarray)):
        raise TypeError(f"iterates must be an MGRITInfo or a list of arrays (N+1, *shape), got "
                        f"{_show(its)}")
    exact = np.asarray(exact)
    if exact.ndim == 0 or exact.shape[0] == 0 or not np.issubdtype(exact.dtype, np.number):
        raise ValueError(f"exact must be an array (N+1, *shape) of numbers: the solution at "
                         f"every time point, got {_show(exact)}")
    if len(its) == 0:
        raise ValueError("no iterates: solve with record_iterates=True")
    err = np.empty((len(its), exact.shape[0]))
    for k, u in enumerate(its):
        u = np.asarray(u)
        if u.shape != exact.shape:
            raise ValueError(f"iterate {k} has shape {u.shape}, the exact solution {exact.shape}")
        d = (u - exact).reshape(exact.shape[0], -1)
        err[k] = np.sqrt(np.sum(np.abs(d) ** 2, axis=1))     # 2-norm over the state at each t
    return err


def cycle_trace(levels, cf, relax="FCF", cycle="V", skip=True, iterations=1, min_coarse=1):
    """The trace of ``iterations`` MGRIT cycles with these options, replayed on a tiny problem.

    The sequence of building blocks depends only on the options, not on the problem, so a
    scalar Dahlquist problem on the smallest grid the hierarchy allows reproduces it.

    Parameters
    ----------
    levels : int
        Number of levels, >= 1.
    cf : int or sequence of int
        Coarsening factor(s), >= 2: one for all coarsenings or ``levels - 1`` of them.
    relax, cycle, skip, min_coarse
        As for `mgrit_gru.mgrit.MGRIT`.
    iterations : int
        Number of cycles, >= 1.

    Returns
    -------
    trace : list of (level, op)

    Raises
    ------
    ValueError
        For a bad option, or a hierarchy whose replay grid would exceed `MAX_REPLAY_STEPS`
        time steps (record the real solve's trace with ``trace=True`` instead).
    """
    from ..mgrit import MGRIT, Dahlquist
    from ..mgrit.hierarchy import coarsening_factors
    levels = int_at_least(levels, "levels", 1)
    iterations = int_at_least(iterations, "iterations", 1)
    min_coarse = int_at_least(min_coarse, "min_coarse", 1)
    cfs = coarsening_factors(cf, levels)
    stride = math.prod(cfs)
    # long enough that finite termination cannot end the replay early (2 cf points per cycle)
    need = 2 * (cfs[0] if cfs else 1) * (iterations + 2)
    n_steps = stride * max(min_coarse, 2, -(-need // stride))
    if n_steps > MAX_REPLAY_STEPS:
        raise ValueError(f"levels={levels} with cf={_show(cf)} needs a replay grid of "
                         f"{n_steps} time steps (more than MAX_REPLAY_STEPS = "
                         f"{MAX_REPLAY_STEPS}): use fewer levels or a smaller cf, or record "
                         "the solve's own trace with trace=True")
    problem = Dahlquist(np.array([0.7]), n_steps)
    solver = MGRIT(problem, levels=levels, cf=cfs, relax=relax, cycle=cycle, skip=skip,
                   max_iter=iterations, tol=0.0, min_coarse=min_coarse, trace=True)
    _, info = solver.solve()
    return info.trace


# ----------------------------------------------------------------------------------------------
# gradients after few forward and backward iterations
# ----------------------------------------------------------------------------------------------
def _flat_gradients(result, name):
    """(grads, dx, dh0[, ...]) -> {name: array}; dx / dh0 may be None (left out)."""
    if not isinstance(result, (list, tuple)):
        raise TypeError(f"{name} must be the tuple (grads, dx, dh0, ...) that mgrit_backward or "
                        f"gru_backward returns, got {type(result).__name__}")
    if len(result) < 3:
        raise ValueError(f"{name} must be the tuple (grads, dx, dh0, ...) that mgrit_backward "
                         f"or gru_backward returns, got {len(result)} item(s)")
    grads, dx, dh0 = result[:3]
    if not isinstance(grads, dict):
        raise TypeError(f"{name}[0] must be the dict of parameter gradients, got "
                        f"{type(grads).__name__}")
    out = {k: np.asarray(v) for k, v in grads.items()}
    if dx is not None:
        out["dx"] = np.asarray(dx)
    if dh0 is not None:
        out["dh0"] = np.asarray(dh0)
    return out


def gradient_error(result, reference, per_tensor=False):
    """Relative 2-norm error of a backward pass's gradients against a reference.

    Parameters
    ----------
    result, reference : tuple (grads, dx, dh0, ...)
        What `mgrit_backward` (extra items ignored) and `gru_backward` return.
    per_tensor : bool
        Also return each tensor's own relative error.

    Returns
    -------
    float or dict
        ``||g - g*|| / ||g*||`` over all tensors together (parameters, dx, dh0); with
        ``per_tensor`` a dict with that value under ``"all"`` and one entry per tensor. A tensor
        whose reference is zero reports its absolute error. dh0 can be tiny over long sequences
        (vanishing gradients), so its own relative error may look large while ``"all"`` is small.
    """
    a, b = _flat_gradients(result, "result"), _flat_gradients(reference, "reference")
    if set(a) != set(b):
        raise ValueError(f"the gradients have different tensors: {sorted(a)} vs {sorted(b)}")
    num = den = 0.0
    errs = {}
    for k in b:
        if a[k].shape != b[k].shape:
            raise ValueError(f"{k}: shape {a[k].shape} vs reference {b[k].shape}")
        d = float(np.sum((a[k].astype(np.float64) - b[k]) ** 2))
        n = float(np.sum(b[k].astype(np.float64) ** 2))
        num, den = num + d, den + n
        errs[k] = math.sqrt(d / n) if n > 0 else math.sqrt(d)
    total = math.sqrt(num / den) if den > 0 else math.sqrt(num)
    if not per_tensor:
        return total
    return {"all": total, **errs}


def _iter_counts(v, name):
    """``v`` as a list of iteration counts (integers >= 1, or None = to convergence)."""
    if not isinstance(v, (list, tuple, range, np.ndarray)) or len(v) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of iteration counts (integers "
                         f">= 1, or None = to convergence), got {_show(v)}")
    return [None if n is None else int_at_least(n, f"every entry of {name}", 1) for n in v]


def gradient_error_grid(params, x, dy=None, dh_T=None, fwd_iters=(1, 2, 3, 4),
                        bwd_iters=(1, 2, 3, 4), h0=None, cell="classic", dt=1.0,
                        reference=None, return_residuals=False, **options):
    """Gradient error after a fixed number of forward and backward MGRIT iterations.

    For every pair (forward iterations m, backward iterations n) run `mgrit_forward` with
    ``max_iter=m, tol=0`` and `mgrit_backward` with ``max_iter=n, tol=0`` and measure
    `gradient_error` against serial BPTT (`gru_forward` + `gru_backward`): the paper's central
    trade-off (Moon & Cyr train with m = 2, n = 1) as a table.

    Parameters
    ----------
    params, x, dy, dh_T, h0, cell, dt
        As for `gru_forward` / `gru_backward`.
    fwd_iters, bwd_iters : sequence of int or None
        Iteration counts; ``None`` means "to convergence" (tol 1e-13, at most 100 cycles).
    reference : tuple (grads, dx, dh0), optional
        Reference gradients (default: BPTT, computed here).
    return_residuals : bool
        Also return the final forward and backward residual of each pair.
    **options
        MGRIT options for both solves (``levels``, ``cf``, ``relax``, ``skip``, ``cycle``, ...).

    Returns
    -------
    grid : ndarray (len(fwd_iters), len(bwd_iters))
        ``grid[i, j]`` = error with ``fwd_iters[i]`` forward and ``bwd_iters[j]`` backward
        iterations.
    fwd_res, bwd_res : ndarray, same shape (only with ``return_residuals``)
    """
    from ..gru import gru_backward, gru_forward
    from ..solve import mgrit_backward, mgrit_forward
    for bad in ("max_iter", "tol", "comm"):
        if bad in options:
            raise ValueError(f"gradient_error_grid sets {bad} itself")
    fwd_iters = _iter_counts(fwd_iters, "fwd_iters")
    bwd_iters = _iter_counts(bwd_iters, "bwd_iters")
    if reference is None:
        cache = gru_forward(params, x, h0, cell=cell, dt=dt)[2]
        reference = gru_backward(params, cache, dy=dy, dh_T=dh_T)

    def budget(n):
        return dict(max_iter=100, tol=1e-13) if n is None else dict(max_iter=n, tol=0.0)

    shape = (len(fwd_iters), len(bwd_iters))
    grid, fres, bres = np.empty(shape), np.empty(shape), np.empty(shape)
    for i, m in enumerate(fwd_iters):
        fwd = mgrit_forward(params, x, h0, cell=cell, dt=dt, **budget(m), **options)[2]
        for j, n in enumerate(bwd_iters):
            out = mgrit_backward(params, fwd, dy, dh_T, **budget(n), **options)
            grid[i, j] = gradient_error(out, reference)
            fres[i, j], bres[i, j] = fwd.final_residual, out[3].final_residual
    return (grid, fres, bres) if return_residuals else grid
