"""The pictures of an MGRIT solve, each drawn into one matplotlib Axes.

- `plot_residual_history`: ||r_k|| against cycle k (semilogy), one line per solve.
- `plot_error_vs_time`: the error against the time index after each cycle (finite termination).
- `plot_cycle`: the cycle diagram, from a recorded trace or replayed from the options.
- `plot_forward_backward_residuals`: the adjoint solve's residual history beside the forward one.
- `plot_gradient_error`: a `gradient_error_grid` as lines or a heat map.

The numbers come from `mgrit_gru.tools.measures`. Every function draws into ``ax`` (a new figure
when None) and returns the Axes; nothing is shown, so they work headless
(``matplotlib.use("Agg")``). Matplotlib is imported when a picture is drawn, not before.
"""
from __future__ import annotations

from numbers import Real

import numpy as np

from ..checks import int_at_least, positive_float
from .measures import OPS, _iter_counts, _show, cycle_trace, error_vs_time

_OP_STYLE = {                                                # marker and colour per operation
    "F": ("o", "tab:blue"), "C": ("s", "tab:orange"), "residual": ("*", "tab:red"),
    "restrict": ("v", "tab:green"), "correct": ("^", "tab:purple"),
    "coarsest": ("D", "black"),
}


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def _cmap(n):
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


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
    from matplotlib.ticker import MaxNLocator
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
            ax.axvline(c, color="0.92", lw=0.4, zorder=0)
    ax.grid(True, axis="y", which="major", color="0.92", lw=0.4)
    ax.set_axisbelow(True)
    ax.set_xlabel("time index t")
    ax.set_ylabel(r"$\|u_k(t) - u^*(t)\|$")
    ax.set_title("error vs time after each cycle")
    _legend_off_the_data(ax, t, np.maximum(err, floor))
    return ax


_LEGEND_SPOTS = {                                            # loc: (x0, x1, y0, y1), axes fraction
    "center right": (0.62, 0.99, 0.30, 0.70), "lower right": (0.62, 0.99, 0.01, 0.40),
    "upper left": (0.01, 0.38, 0.60, 0.99), "lower left": (0.01, 0.38, 0.01, 0.40),
    "upper right": (0.62, 0.99, 0.60, 0.99), "center left": (0.01, 0.38, 0.30, 0.70),
}


def _legend_off_the_data(ax, t, curves):
    """A legend in a corner of ``ax`` that no curve (t, curves[k]) on the log axis crosses,
    outside on the right when every corner holds data."""
    n = len(curves)
    x0, x1 = ax.get_xlim()
    y0, y1 = np.log10(ax.get_ylim())
    # the curves as axes-fraction points, dense along every segment (the jumps included)
    fine = np.linspace(0.0, 1.0, 20)
    ts = (t[:-1, None] + np.outer(np.diff(t), fine)).ravel()
    xs, ys = [], []
    for c in curves:
        lc = np.log10(c)
        xs.append((ts - x0) / (x1 - x0))
        ys.append(((lc[:-1, None] + np.outer(np.diff(lc), fine)).ravel() - y0) / (y1 - y0))
    xs, ys = np.concatenate(xs) if xs else np.zeros(0), np.concatenate(ys) if ys else np.zeros(0)
    height = min(0.09 * (n + 1), 0.98)
    for loc, (a, b, c, d) in _LEGEND_SPOTS.items():
        mid = 0.5 * (c + d)
        c, d = {"lower": (c, c + height), "upper": (d - height, d)}.get(
            loc.split()[0], (mid - height / 2, mid + height / 2))
        if not np.any((xs >= a) & (xs <= b) & (ys >= c) & (ys <= d)):
            ax.legend(fontsize="small", loc=loc)
            return
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


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


def _first_cycles(trace, cycles, max_cycles):
    """(the part of ``trace`` up to the end of its first ``max_cycles`` cycles, the number of
    cycles in the trace). A cycle ends at a fine residual; a residual with no coarse correction
    before it (skip=False: the relaxed initial guess) is not one."""
    res = [i for i, (level, op) in enumerate(trace) if level == 0 and op == "residual"]
    if not res:
        return trace, cycles or 0
    first = res[0]
    initial = int(not any(op == "restrict" for _, op in trace[:first]))
    total = cycles if cycles is not None else max(len(res) - initial, 0)
    keep = max_cycles + initial
    if total <= max_cycles or len(res) <= keep:
        return trace, total
    return trace[: res[keep - 1] + 1], total


def plot_cycle(source, ax=None, max_cycles=3):
    """Cycle diagram: level against operation, fine level on top (like XBraid's cycleplot).

    Parameters
    ----------
    source : MGRITInfo, MGRIT, or list of (level, op)
        Uses the recorded trace when the solve ran with ``trace=True``; otherwise replays the
        solver's options (levels, cf, relax, cycle, skip) for its number of cycles with
        `cycle_trace` (the building blocks do not depend on the problem).
    ax : matplotlib Axes, optional
        Without one, a new figure as wide as the drawn operations need.
    max_cycles : int
        Draw at most the first ``max_cycles`` cycles (>= 1; the title says so when the solve
        ran more): a diagram of ten cycles is too dense to read, and every cycle of a solve
        with fixed options does the same.

    Returns
    -------
    ax : matplotlib Axes
        ``lines[0]`` is the path through the levels (of the cycles drawn); one marker series
        per operation kind (legend); a dashed vertical line at each fine residual (the cycle
        boundaries). A solve that stopped before its first cycle (``iterations == 0``: the
        initial guess met tol) is drawn as such: its recorded relaxation and residual if
        traced, a note "no cycle ran", no replayed cycle.

    Raises
    ------
    TypeError
        For a ``source`` of another kind, or a trace entry that is not a (level, op) pair.
    ValueError
        For an empty trace, a bad entry, or a solve with neither trace nor options.
    """
    max_cycles = int_at_least(max_cycles, "max_cycles", 1)
    trace, n_levels, cycles = _trace_of(source)
    if not trace and cycles != 0:
        raise ValueError("source: the trace is empty")
    n_all = max(int(l) for l, _ in trace) + 1 if trace else 1
    trace, total = _first_cycles(trace, cycles, max_cycles)
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(min(max(6.0, 2.5 + 0.16 * len(trace)), 16.0), 4))
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
    n_levels = n_levels or n_all
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
    elif total > max_cycles:
        ax.set_title(f"MGRIT cycles ({n_levels} levels): the first {max_cycles} of {total} "
                     "cycles")
    else:
        ax.set_title(f"MGRIT cycles ({n_levels} levels)")
    if trace:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


# ----------------------------------------------------------------------------------------------
# the backward pass: adjoint residuals and gradient errors
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
    from matplotlib.ticker import MaxNLocator
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
