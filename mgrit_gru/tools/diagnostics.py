"""Pictures of an MGRIT solve: residual history, error versus time, and the cycle diagram.

Three plots answer the three questions one asks of a parallel-in-time solve:

- `plot_residual_history`: how fast does the residual ||r_k|| fall, cycle after cycle
  (semilogy, several solves on one axes, one marker per cycle)?
- `plot_error_vs_time`: *where* in time is the iterate already right?  The error
  ||u_k(t) − u*(t)|| against the time index t after each cycle k makes MGRIT's finite
  termination visible: the exact region grows from the left by cf (F) or 2 cf (FCF) points
  per cycle.
- `plot_cycle`: *what* did the solver do?  A cycle diagram (level against operation, fine
  level on top) like XBraid's ``cycleplot``, drawn from the solver's trace (``trace=True``) or
  replayed from its options.

For the backward pass (`mgrit_backward`): `plot_forward_backward_residuals` puts the adjoint
solve's residual history beside the forward one, and `gradient_error_grid` / `plot_gradient_error`
show how exact the gradients are after few forward and backward iterations (`gradient_error`
against BPTT): the cost/accuracy trade-off behind training with inexact solves.

Every plot draws into ``ax`` (a new figure when None) and returns the Axes; nothing is
shown, so they work headless (``matplotlib.use("Agg")``), and matplotlib is imported only when
one is drawn.

The numbers are computed in `mgrit_gru.tools.measures` and drawn by `mgrit_gru.tools.plots`;
this module gathers both under one name and adds the solve report: `plot_solve` (the three
pictures in one figure) and `solve_and_report` (the work behind ``mgrit-gru solve``).
"""
from __future__ import annotations

import math

import numpy as np

from ..atomic import save_figure
from ..checks import positive_float
from ..mgrit.hierarchy import Hierarchy
from .measures import (MAX_REPLAY_STEPS, OPS, cycle_trace, error_vs_time, gradient_error,
                       gradient_error_grid)
from .plots import (plot_cycle, plot_error_vs_time, plot_forward_backward_residuals,
                    plot_gradient_error, plot_residual_history)

__all__ = ["MAX_REPLAY_STEPS", "OPS", "cycle_trace", "error_vs_time", "gradient_error",
           "gradient_error_grid", "plot_cycle", "plot_error_vs_time",
           "plot_forward_backward_residuals", "plot_gradient_error", "plot_residual_history",
           "plot_solve", "solve_and_report"]


def plot_solve(info, exact=None, cf=None, labels=None):
    """One figure with the three pictures of a solve: residual history, error vs time, cycles.

    Parameters
    ----------
    info : MGRITInfo
        From a solve with ``record_iterates=True`` when ``exact`` is given.
    exact : array (N+1, *shape), optional
        The sequential solution; without it the error panel is left out.
    cf : int, optional
        Marks C-points in the error panel.
    labels : list of str, optional
        Legend of the residual panel.

    Returns
    -------
    fig : matplotlib Figure
        Axes in the order residual history, (error vs time,) cycle diagram.
    """
    import matplotlib.pyplot as plt
    n = 3 if exact is not None else 2
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.2))
    plot_residual_history(info, labels=labels, ax=axes[0])
    if exact is not None:
        plot_error_vs_time(info, exact, ax=axes[1], cf=cf)
    plot_cycle(info, ax=axes[-1])
    fig.tight_layout()
    return fig


def solve_and_report(seq_len=64, hidden=8, batch=2, input_size=4, layers=1, cell="classic",
                     dt=1.0, options=None, seed=0, dtype="float64", plot=None, verbose=True,
                     print_fn=print, iters=None, **option_values):
    """Random GRU and inputs, solved by MGRIT and serially; print the comparison, save plots.

    The work behind ``mgrit-gru solve``. Prints XBraid-style iteration lines (``verbose``), the
    residual history, and the largest error of y and h_T against `gru_forward`; with ``plot``
    (a .png path) saves the `plot_solve` figure there.

    ``options`` (an `MGRITOptions`; default: 10 iterations, the other defaults) or its fields
    as keywords (``iters`` stands for ``max_iter``) set the solve.

    A solve that ran out of iterations because its residual stopped falling at the dtype's
    round-off (float32 with the float64 default ``tol``) is said to have stalled, with a
    tolerance it can reach.

    Returns
    -------
    dict
        ``residual_history``, ``iterations``, ``converged``, ``stalled``, ``err_y``, ``err_hT``,
        ``plot``.
    """
    from ..gru import gru_forward, init_gru
    from ..mgrit import MGRITOptions
    from ..solve import mgrit_forward
    dtype = np.dtype(dtype)
    dt = positive_float(dt, "dt")                            # before it is printed with :g
    if iters is not None:
        option_values["max_iter"] = iters
    if options is None:
        option_values.setdefault("max_iter", 10)
    o = MGRITOptions.build(options, **option_values)         # the options the header shows,
    Hierarchy(seq_len, o.cfs, o.levels, o.min_coarse)        # checked before it is printed
    params = init_gru(input_size, hidden, layers, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((seq_len, batch, input_size)).astype(dtype)
    print_fn(f"MGRIT solve: T={seq_len} B={batch} I={input_size} H={hidden} L={layers} "
             f"cell={cell} dt={dt:g} levels={o.levels} cf={o.cf} relax={o.relax} "
             f"max_iter={o.max_iter} tol={o.tol:g} skip={o.skip} coarse_input={o.coarse_input} "
             f"dtype={dtype.name}")
    y, h_T, info = mgrit_forward(params, x, options=o, cell=cell, dt=dt, verbose=verbose,
                                 record_iterates=plot is not None,
                                 trace=plot is not None)   # the cycle diagram as it ran
    y_ref, h_ref, cache = gru_forward(params, x, cell=cell, dt=dt)
    err_y = float(np.max(np.abs(y - y_ref)))
    err_h = float(np.max(np.abs(h_T - h_ref)))
    print_fn("residual history: " + "  ".join(f"{r:.3e}" for r in info.residual_history))
    print_fn(f"iterations = {info.iterations}   converged = {info.converged}   "
             f"wall time = {info.wall_time:.3f} s")
    print_fn(f"max |y - y_serial| = {err_y:.3e}   max |h_T - h_T_serial| = {err_h:.3e}")
    stalled = _stalled_at_roundoff(info, dtype, y_ref)
    if stalled:
        reach = 10.0 ** math.ceil(math.log10(10 * max(info.residual_history[-3:])))
        print_fn(f"the residual stalled at {dtype.name} round-off (about "
                 f"{info.residual_history[-1]:.0e}): tol={o.tol:g} is below what {dtype.name} "
                 f"can reach; a tol of {reach:.0e} converges")
    if plot is not None:
        import matplotlib.pyplot as plt
        cf0 = info.options["cf"][0] if info.options.get("cf") else None
        fig = plot_solve(info, exact=cache["hs"] if info.iterates else None, cf=cf0)
        save_figure(fig, plot, dpi=110)
        plt.close(fig)
        print_fn(f"plots saved to {plot}")
    return dict(residual_history=list(info.residual_history), iterations=info.iterations,
                converged=info.converged, stalled=stalled, err_y=err_y, err_hT=err_h, plot=plot)


def _stalled_at_roundoff(info, dtype, y):
    """Whether an unconverged solve's residual stopped falling (less than 2x over its last two
    cycles) at a height round-off explains: below 100 · eps · sqrt(entries) · max(|y|, 1),
    the size of the rounding errors of the states the residual is taken over."""
    hist = info.residual_history
    if info.converged or len(hist) < 3 or not all(math.isfinite(r) for r in hist[-3:]):
        return False
    floor = 100 * np.finfo(dtype).eps * math.sqrt(y.size) * max(float(np.max(np.abs(y))), 1.0)
    return hist[-1] > 0.5 * hist[-3] and max(hist[-3:]) < floor
