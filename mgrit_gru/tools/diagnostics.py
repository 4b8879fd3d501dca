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

Every function draws into ``ax`` (a new figure when None) and returns the Axes; nothing is
shown, so they work headless (``matplotlib.use("Agg")``).
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..atomic import save_figure
from ..checks import int_at_least, positive_float
from ..mgrit.hierarchy import Hierarchy

OPS = ("F", "C", "residual", "restrict", "correct", "coarsest")
"""Operations recorded in a trace (see `mgrit_gru.mgrit.MGRIT`'s ``trace``)."""

_OP_STYLE = {                                                # marker and colour per operation
    "F": ("o", "tab:blue"), "C": ("s", "tab:orange"), "residual": ("*", "tab:red"),
    "restrict": ("v", "tab:green"), "correct": ("^", "tab:purple"),
    "coarsest": ("D", "black"),
}


MAX_REPLAY_STEPS = 2 ** 20
"""Largest time grid `cycle_trace` replays on (a deeper hierarchy: record with ``trace=True``)."""


def _show(v, n=60):
    """A short repr for error messages."""
    text = repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def _is_history(h):
    """A residual history: a sequence of numbers (or a 1-d array)."""
    if isinstance(h, np.ndarray):
        return h.ndim == 1
    return isinstance(h, (list, tuple)) and all(isinstance(v, Real) for v in h)


def _history(item, name):
    """(cycle indices, residual norms) of an `MGRITInfo` or a plain list of norms; ``name``
    is the argument's name in errors."""
    if _is_history(item):
        k, r = 1, np.asarray(item, float)
    elif hasattr(item, "residual_history"):
        hist = list(item.residual_history)
        k = 1
        if item.initial_residual is not None:                # the relaxed initial guess: k = 0
            k, hist = 0, [item.initial_residual] + hist
        r = np.asarray(hist, float)
    else:
        raise TypeError(f"{name} must be an MGRITInfo or a list of residual norms, got "
                        f"{_show(item)}")
    if r.size == 0:
        raise ValueError(f"{name} holds no residual norm (an MGRITInfo of a solve that has not "
                         "run, or an empty list): nothing to plot")
    if np.any(r < 0):
        raise ValueError(f"{name}: residual norms must be >= 0, got {r.min()}")
    return np.arange(k, k + len(r)), r


def _solves(x, name):
    """[(name, solve)] for one solve (an `MGRITInfo` or a list of norms) or a list of them."""
    if _is_history(x) or hasattr(x, "residual_history"):
        return [(name, x)]
    if isinstance(x, (list, tuple, np.ndarray)):
        return [(f"{name}[{i}]", item) for i, item in enumerate(x)]
    raise TypeError(f"{name} must be an MGRITInfo, a list of residual norms, or a list of "
                    f"either, got {_show(x)}")


def plot_residual_history(infos_or_histories, labels=None, ax=None):
    """Residual norm ||r_k|| against cycle k on a log scale, one line per solve.

    Parameters
    ----------
    infos_or_histories : MGRITInfo, list of float, or a list of either
        One solve or several. An `MGRITInfo` contributes ``initial_residual`` (at k = 0, when
        measured) and ``residual_history`` (k = 1, 2, ...); a plain list is taken as
        ``residual_history``.
    labels : list of str, optional
        Legend entry per solve.
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes
        Its ``lines[i]`` holds solve i's (k, ||r_k||). A solve with a non-finite ||r|| (NaN,
        inf) is named in a "diverged" note; when every ||r|| is 0 the axes says "exact".

    Raises
    ------
    TypeError
        For anything but an `MGRITInfo` or a list of numbers (or a list of those).
    ValueError
        For a solve without a residual (an empty list, an `MGRITInfo` that has not run) or a
        negative one, and for a wrong number of labels.
    """
    items = _solves(infos_or_histories, "infos_or_histories")
    if not items:
        raise ValueError("infos_or_histories is an empty list of solves: nothing to plot")
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"got {len(labels)} labels for {len(items)} solves")
    data = [_history(item, name) for name, item in items]   # all checked before drawing
    ax = _axes(ax)
    positive, diverged = False, []
    for i, (k, r) in enumerate(data):
        ax.semilogy(k, r, marker="o", label=None if labels is None else labels[i])
        bad = ~np.isfinite(r)
        if bad.any():                                        # log scale drops these: say so
            j = int(np.argmax(bad))
            who = labels[i] if labels is not None else f"solve {i}" if len(data) > 1 else ""
            diverged.append(f"{who + ': ' if who else ''}||r|| = {r[j]} at cycle {k[j]}")
        positive = positive or bool(np.any(r[~bad] > 0))
    if not positive:                                         # nothing to put on a log scale
        ax.set_yscale("linear")
    if diverged:
        ax.text(0.5, 0.6, "diverged (non-finite residual)\n" + "\n".join(diverged),
                ha="center", color="tab:red", transform=ax.transAxes)
    elif not positive:
        one_level = all(getattr(item, "options", {}).get("levels") == 1 for _, item in items)
        ax.text(0.5, 0.6, "||r|| = 0: exact" +
                ("\n(one level is sequential stepping)" if one_level else ""), ha="center",
                transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))    # cycles are whole numbers
    ax.set_xlabel("cycle k")
    ax.set_ylabel(r"$\|r_k\|$")
    ax.set_title("MGRIT residual history")
    ax.grid(True, which="both", alpha=0.3)
    if labels is not None:
        ax.legend()
    return ax


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


def plot_error_vs_time(iterates, exact, ax=None, floor=1e-17, cf=None):
    """Error against time index after each cycle (log scale): finite termination made visible.

    Parameters
    ----------
    iterates : list of arrays (N+1, *shape), or an `MGRITInfo`
        ``iterates[k]`` = the fine iterate after k + 1 cycles (``record_iterates=True``).
    exact : array (N+1, *shape)
        The sequential solution u*(0..N) (for the GRU: ``gru_forward``'s ``cache["hs"]``).
    ax : matplotlib Axes, optional
    floor : float
        Errors below ``floor`` (exact zeros included) are drawn at ``floor`` so that exact
        points stay on the log-scale picture; a finite number > 0.
    cf : int, optional
        Draw faint vertical lines at the C-points (multiples of ``cf``, an integer >= 2).

    Returns
    -------
    ax : matplotlib Axes
        ``lines[k]`` holds (t, max(error, floor)) after cycle k + 1.
    """
    floor = positive_float(floor, "floor")
    if cf is not None:
        cf = int_at_least(cf, "cf", 2)
    err = error_vs_time(iterates, exact)
    ax = _axes(ax)
    t = np.arange(err.shape[1])
    colors = _cmap(len(err))
    for k, e in enumerate(err):
        ax.semilogy(t, np.maximum(e, floor), color=colors[k], label=f"after cycle {k + 1}")
    if cf is not None:
        for c in range(0, err.shape[1], cf):
            ax.axvline(c, color="0.85", lw=0.5, zorder=0)
    ax.set_xlabel("time index t")
    ax.set_ylabel(r"$\|u_k(t) - u^*(t)\|$")
    ax.set_title("error vs time after each cycle")
    ax.legend(fontsize="small")
    return ax


def _cmap(n):
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


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


def _check_trace(trace):
    """``trace`` as a list of (level, op) pairs, level an integer >= 0 and op one of `OPS`."""
    trace = list(trace)
    for e in trace:
        if not (isinstance(e, (list, tuple)) and len(e) == 2):
            raise TypeError(f"source must be an MGRITInfo, an MGRIT solver or a list of "
                            f"(level, op) pairs, got the entry {_show(e)}")
        level, op = e
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0 \
                or op not in OPS:
            raise ValueError(f"source: a trace entry is (level >= 0, op) with op one of {OPS}, "
                             f"got {_show(e)}")
    return trace


def _trace_of(source):
    """(trace, levels, cycles) from a list of (level, op), an `MGRITInfo`, or an `MGRIT` solver;
    levels and cycles (the cycles that ran) are None where unknown. A solve that ran no cycle
    gives its recorded trace or [], never a replayed cycle."""
    if isinstance(source, (list, tuple)):
        return _check_trace(source), None, None
    solver = hasattr(source, "hier")
    if not (solver or hasattr(source, "residual_history")):
        raise TypeError(f"source must be an MGRITInfo, an MGRIT solver or a list of (level, op) "
                        f"pairs, got {_show(source)}")
    info = getattr(source, "info", None) if solver else source
    opts = getattr(info, "options", None) or {}
    cycles = getattr(info, "iterations", None) if opts else None    # None: has not run
    trace = getattr(source, "trace", None)
    if trace or cycles == 0:
        return _check_trace(trace or []), opts.get("levels"), cycles
    if not opts and solver:                                  # a solver that has not run yet
        opts = dict(levels=len(source.levels), cf=source.hier.cfs, relax=source.relax,
                    cycle=source.cycle, skip=source.skip)
    if not opts:
        raise ValueError("no trace: pass an MGRITInfo, an MGRIT solver or a list of "
                         "(level, op) (solve with trace=True to record one)")
    trace = cycle_trace(opts["levels"], opts["cf"] or 2, opts["relax"], opts["cycle"],
                        opts["skip"], max(cycles or 0, 1))
    return trace, opts["levels"], cycles


def plot_cycle(source, ax=None):
    """Cycle diagram: level against operation, fine level on top (like XBraid's cycleplot).

    Parameters
    ----------
    source : MGRITInfo, MGRIT, or list of (level, op)
        Uses the recorded trace when the solve ran with ``trace=True``; otherwise replays the
        solver's options (levels, cf, relax, cycle, skip) for its number of cycles with
        `cycle_trace` (the building blocks do not depend on the problem).
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes
        ``lines[0]`` is the path through the levels; one marker series per operation kind
        (legend); a dashed vertical line at each fine residual (the cycle boundaries). A solve
        that stopped before its first cycle (``iterations == 0``: the initial guess met tol)
        is drawn as such: its recorded relaxation and residual if traced, a note "no cycle
        ran", no replayed cycle.

    Raises
    ------
    TypeError
        For a ``source`` of another kind, or a trace entry that is not a (level, op) pair.
    ValueError
        For an empty trace, a bad entry, or a solve with neither trace nor options.
    """
    trace, n_levels, cycles = _trace_of(source)
    if not trace and cycles != 0:
        raise ValueError("source: the trace is empty")
    ax = _axes(ax)
    x = np.arange(len(trace))
    lev = np.array([l for l, _ in trace], dtype=int)
    if trace:
        ax.plot(x, lev, color="0.6", lw=1, zorder=1)         # the path through the levels
    for op in OPS:
        idx = [i for i, (_, o) in enumerate(trace) if o == op]
        if idx:
            marker, color = _OP_STYLE[op]
            ax.scatter(x[idx], lev[idx], marker=marker, color=color, label=op, zorder=2)
    for i, (_, op) in enumerate(trace):
        if op == "residual":                                 # one fine residual per cycle
            ax.axvline(i, color="tab:red", ls="--", lw=0.6, alpha=0.5)
    n_levels = n_levels or int(lev.max()) + 1
    ax.set_yticks(range(n_levels))
    ax.set_ylim(n_levels - 0.5, -0.5)                        # fine level on top
    ax.set_xlabel("operation")
    ax.set_ylabel("level")
    if cycles == 0:                                          # stopped before its first cycle
        info = getattr(source, "info", source)
        why = ": the initial guess met tol" if getattr(info, "converged", False) else ""
        ax.text(0.5, 0.5, f"no cycle ran (0 iterations){why}", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_title(f"MGRIT: no cycle ran ({n_levels} levels)")
    else:
        ax.set_title(f"MGRIT cycles ({n_levels} levels)")
    if trace:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


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


# ----------------------------------------------------------------------------------------------
# the backward pass: adjoint residuals, and how exact the gradients are after few iterations
# ----------------------------------------------------------------------------------------------
def plot_forward_backward_residuals(fwd_info, bwd_info, ax=None, labels=("forward", "backward")):
    """The backward (adjoint) solve's residual history per cycle beside the forward one.

    Parameters
    ----------
    fwd_info : MGRITInfo or list of float
        From `mgrit_forward` (or its ``residual_history``).
    bwd_info : MGRITInfo or list of float
        From `mgrit_backward` (or its ``residual_history``).
    ax : matplotlib Axes, optional
    labels : (str, str)
        Legend entries of the two solves.

    Returns
    -------
    ax : matplotlib Axes
        ``lines[0]`` is the forward solve's (k, ||r_k||), ``lines[1]`` the backward one's.

    Notes
    -----
    The two residuals measure different things (states, resp. adjoints λ = ∂L/∂u), so compare
    their *slopes* (convergence factors), not their heights.
    """
    data = [_history(fwd_info, "fwd_info"), _history(bwd_info, "bwd_info")]
    ax = _axes(ax)
    for (k, r), label, marker in zip(data, labels, ("o", "s")):
        ax.semilogy(k, r, marker=marker, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cycle k")
    ax.set_ylabel(r"$\|r_k\|$")
    ax.set_title("MGRIT residuals: forward and backward (adjoint) solves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


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


def _iter_label(n):
    return "conv." if n is None else str(n)


def plot_gradient_error(grid, fwd_iters, bwd_iters, ax=None, kind="lines"):
    """Gradient error against forward / backward iteration counts (from `gradient_error_grid`).

    Parameters
    ----------
    grid : ndarray (len(fwd_iters), len(bwd_iters))
    fwd_iters, bwd_iters : sequence of int or None (None = converged)
    ax : matplotlib Axes, optional
    kind : {"lines", "heatmap"}
        ``"lines"``: error against backward iterations (log scale), one line per forward
        iteration count. ``"heatmap"``: log10(error) as an image, each cell annotated.

    Returns
    -------
    ax : matplotlib Axes
        ``"lines"``: ``lines[i]`` holds (backward iterations, grid[i]), labelled by the forward
        count. ``"heatmap"``: ``images[0]`` holds log10(grid); ``texts`` the annotations.
    """
    fwd_iters = _iter_counts(fwd_iters, "fwd_iters")
    bwd_iters = _iter_counts(bwd_iters, "bwd_iters")
    try:
        grid = np.asarray(grid, float)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be an array of gradient errors, got {_show(grid)}") from None
    if grid.shape != (len(fwd_iters), len(bwd_iters)):
        raise ValueError(f"grid has shape {grid.shape}, expected "
                         f"({len(fwd_iters)}, {len(bwd_iters)}) for the iteration counts")
    if np.any(grid < 0):
        raise ValueError(f"grid holds gradient errors, which are >= 0; got {grid.min()}")
    if kind not in ("lines", "heatmap"):
        raise ValueError(f"kind must be 'lines' or 'heatmap', got {kind!r}")
    ax = _axes(ax)
    xlabels = [_iter_label(n) for n in bwd_iters]
    if kind == "lines":
        xs = np.arange(len(bwd_iters))
        colors = _cmap(len(fwd_iters))
        for i, m in enumerate(fwd_iters):
            ax.semilogy(xs, grid[i], marker="o", color=colors[i],
                        label=f"{_iter_label(m)} forward it.")
        ax.set_xticks(xs, xlabels)
        ax.set_ylabel(r"gradient error $\|g - g_{BPTT}\| / \|g_{BPTT}\|$")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    else:
        with np.errstate(divide="ignore"):
            img = np.log10(np.maximum(grid, 1e-300))
        im = ax.imshow(img, origin="lower", cmap="viridis_r", aspect="auto")
        ax.figure.colorbar(im, ax=ax, label="log10 gradient error")
        mid = 0.5 * (img.min() + img.max())                  # dark half of viridis_r: white text
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.1e}", ha="center", va="center", fontsize="small",
                        color="white" if img[i, j] > mid else "black")
        ax.set_xticks(range(len(bwd_iters)), xlabels)
        ax.set_yticks(range(len(fwd_iters)), [_iter_label(m) for m in fwd_iters])
        ax.set_ylabel("forward iterations")
    ax.set_xlabel("backward iterations")
    ax.set_title("gradient error vs MGRIT iterations")
    return ax
