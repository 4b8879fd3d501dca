"""The MGRIT cycle: relaxation, FAS restriction, coarse solve, correction, iteration.

Read next to Falgout et al., SISC 2014, and docs/theory/mgrit.md. On level l, with FAS forcing g
(zero on the fine grid), the equations are  u_i = Φ_l(u_{i-1}) + g_i  for i = 1..N_l.

- F-relaxation: every F-point from its predecessor, sweeping each C-interval left to right; all
  intervals at once, so a sweep is cf - 1 batched calls of the problem's `step` (one call of
  `Problem.sweep`, which makes them, when this rank owns the whole level: a GPU problem does
  the sweep in one launch).
- C-relaxation: every C-point from its preceding F-point (one batched call).
- FAS restriction (injection): v_j = u_{j cf} and
      g^c_j = Φ_l(u_{j cf - 1}) + g_{j cf} - Φ_c(v_{j-1})
  i.e. what the fine grid gives at the C-point minus what one coarse step predicts.
- Coarsest level: sequential stepping. Correction: u_{j cf} <- v_j, then F-relaxation
  (interpolation = injection + F-relaxation).

Every rank owns the points lo..hi of each level (see `hierarchy`) and stores them with one ghost
slot in front for point lo - 1, the left neighbour's last point. The only messages are that ghost
state (one per sweep, sent as soon as the neighbour's last point is final) and one reduction of
the residual norm per iteration, so the answer does not depend on the number of ranks.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..checks import check_flag
from .comm import as_comm
from .hierarchy import Hierarchy
from .options import MGRITOptions
from .problem import rows_of


class MGRITDivergedError(FloatingPointError):
    """The residual became NaN or Inf."""


@dataclass
class MGRITInfo:
    """What a solve did.

    ``residual_history[k]`` is the fine-grid residual norm ||r|| after k + 1 cycles (measured,
    as XBraid does, after the relaxation that opens the next cycle; the last entry is the returned
    solution's own residual). ``initial_residual`` is that of the relaxed initial guess (None with
    ``skip``: the first cycle does no fine-grid work). ``conv_factors[k]`` = r_k / r_{k-1}; NaN
    where it would not be a per-cycle factor: the first with skip (no r_0), and the last when a
    solve with FCF relaxation ran out of cycles (that residual is measured after the final
    F-relaxation alone, the others after FCF: its ratio would look like a stall).
    ``level_times`` / ``phase_times`` are seconds per level / per phase ("relax", "residual",
    "restrict", "correct", "coarsest"), summed over the solve: host time, which for a GPU
    problem is the time to queue the work unless its vectors ask for a wait at each phase's
    ends (``sync_timers``: ``MGRIT_GRU_SYNC_TIMERS=1`` for the CUDA backend).
    """

    residual_history: list = field(default_factory=list)
    initial_residual: float | None = None
    conv_factors: list = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    diverged: bool = False
    cycle_times: list = field(default_factory=list)
    level_times: list = field(default_factory=list)
    phase_times: dict = field(default_factory=dict)
    comm_time: float = 0.0
    wall_time: float = 0.0
    iterates: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    trace: list | None = None                                # (level, op) per building block

    @property
    def final_residual(self):
        """The returned solution's residual: the last of ``residual_history``, or the first
        measured one when the solve stopped there (a warm start, an exact zero solution)."""
        return self.residual_history[-1] if self.residual_history else self.initial_residual


class MGRIT:
    """Multigrid reduction in time for a batched one-step `Problem`.

    Parameters
    ----------
    problem : Problem
    options : MGRITOptions, optional
        Levels, coarsening, relaxation, cycle, stopping rule, skip (defaults: `MGRITOptions`'s).
    comm : None or mpi4py communicator
    verbose : bool
        Print XBraid-style iteration lines (rank 0).
    record_iterates : bool
        Keep a copy of this rank's fine iterate after every cycle (for diagnostics).
    fine_ranges : list of (lo, hi), optional
        Explicit fine points per rank (see `Hierarchy`).
    trace : bool
        Record every building block as ``(level, op)`` in ``info.trace`` (op: "F", "C",
        "residual", "restrict", "correct", "coarsest"), for `diagnostics.plot_cycle`.
    **option_values
        Any `MGRITOptions` field (``levels=2, cf=2``), applied on top of ``options``.
    """

    def __init__(self, problem, options=None, *, comm=None, verbose=False,
                 record_iterates=False, fine_ranges=None, trace=False, **option_values):
        self.options = opts = MGRITOptions.build(options, **option_values)
        self.problem = problem
        self.comm = as_comm(comm)
        self.hier = Hierarchy(problem.n_steps, opts.cfs, opts.levels, opts.min_coarse,
                              self.comm.rank, self.comm.size, fine_ranges)
        self.levels = self.hier.levels
        self.relax = opts.relax_per_level
        self.cycle, self.max_iter, self.tol, self.tol_type = (opts.cycle, opts.max_iter,
                                                              opts.tol, opts.tol_type)
        self.norm, self.skip, self.c_weight = opts.norm, opts.skip, opts.c_weight
        self.divergence_factor = opts.divergence_factor
        self.verbose = check_flag(verbose, "verbose")
        self.record_iterates = check_flag(record_iterates, "record_iterates")
        self.vec = problem.vec
        self.U = [None] * len(self.levels)                   # per level: ghost + owned points
        self.G = [None] * len(self.levels)                   # per level: FAS forcing (l > 0)
        self._timers = {}
        # vector operations that only queue work (a GPU's) may ask for a wait at each timer's
        # ends, so that phase_times / level_times measure the work, not the queueing
        self._sync = self.vec.synchronize if getattr(self.vec, "sync_timers", False) else None
        self.trace = [] if check_flag(trace, "trace") else None

    def _log(self, l, op):
        if self.trace is not None:
            self.trace.append((l, op))

    # ------------------------------------------------------------------------------------------
    # index helpers: level-l point i lives in slot i - lo + 1 (slot 0 is the ghost point lo - 1)
    # ------------------------------------------------------------------------------------------
    def _points(self, l, offset, start=None):
        """Owned points i >= max(lo, 1) with i % cf == offset, as (first, count)."""
        lv = self.levels[l]
        lo = max(lv.lo, 1) if start is None else start
        first = lo + (offset - lo) % lv.cf
        count = 0 if first > lv.hi else (lv.hi - first) // lv.cf + 1
        return first, count

    def _rows(self, A, slot, count, step):
        """View of ``count`` rows of A from ``slot`` every ``step`` (`rows_of`)."""
        return rows_of(self.vec, A, slot, count, step)

    def _step(self, l, first, count, step_pts, out_slot_first=None, out=None, g=True, store=False):
        """Φ_l from the points first-1, first-1+step_pts, ... into out (default: in place)."""
        lv, U = self.levels[l], self.U[l]
        s = first - lv.lo + 1                                # slot of the first target point
        src = self._rows(U, s - 1, count, step_pts)
        dst = self._rows(U, s, count, step_pts) if out is None else out
        G = self.G[l]
        gv = self._rows(G, s, count, step_pts) if (g and G is not None) else None
        t = range((first - 1) * lv.stride, (first - 1 + step_pts * (count - 1)) * lv.stride + 1,
                  step_pts * lv.stride)
        self.problem.step(l, src, t, lv.stride, dst, gv, store)
        return dst

    def _march(self, l, first, count, store=False):
        """Sequential Φ_l from point first-1 through first+count-1 (`Problem.march`)."""
        lv = self.levels[l]
        s = first - lv.lo + 1
        u = self._rows(self.U[l], s - 1, count + 1, 1)       # the start point and the count targets
        G = self.G[l]
        g = None if G is None else self._rows(G, s - 1, count + 1, 1)
        t = range((first - 1) * lv.stride, (first - 2 + count) * lv.stride + 1, lv.stride)
        self.problem.march(l, u, t, lv.stride, g, store)

    def _send(self, A, dest, tag):
        """Send A's last point (this rank's last owned point) to ``dest``."""
        self.comm.isend(self.vec.to_host(A[-1]), dest, tag)

    def _recv(self, A, source, tag):
        """Receive ``source``'s last point into A's ghost slot (via the host for device arrays)."""
        if isinstance(A, np.ndarray):
            self.comm.recv(A[0], source, tag)
        else:
            buf = np.empty(self.vec.shape, self.vec.dtype)
            self.comm.recv(buf, source, tag)
            self.vec.from_host(A[0], buf)

    @contextlib.contextmanager
    def _timed(self, l, phase):
        """Add the time the block takes (after a device sync) to the (level, phase) timer."""
        if self._sync:
            self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                self._sync()
            key = (l, phase)
            self._timers[key] = self._timers.get(key, 0.0) + time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------
    # setup
    # ------------------------------------------------------------------------------------------
    def _alloc(self, l):
        """Level l's arrays on first use (zeroed; the fine one is left to `_init_fine`, which
        writes every slot that is ever read); True if they were allocated just now."""
        lv = self.levels[l]
        if self.U[l] is None and not lv.empty:
            # slot 0 at lo = 0 (the "point -1") is the one slot no one writes, and no one reads it
            self.U[l] = self.vec.empty(lv.count + 1) if l == 0 else self.vec.zeros(lv.count + 1)
            if l > 0:
                self.G[l] = self.vec.zeros(lv.count + 1)
            return True
        return False

    def _init_fine(self, u_init=None):
        lv = self.levels[0]
        self._alloc(0)
        U = self.U[0]
        lo = max(lv.lo - 1, 0)
        if u_init is not None:                               # caller's guess for points lo-1..hi
            self.vec.from_host(U[(1 if lv.lo == 0 else 0):], u_init[lo: lv.hi + 1])
        else:
            self.problem.initial_guess_into(U[(1 if lv.lo == 0 else 0):], range(lo, lv.hi + 1))
        if lv.lo == 0:
            self.vec.from_host(U[1], self.problem.initial())

    # ------------------------------------------------------------------------------------------
    # the building blocks
    # ------------------------------------------------------------------------------------------
    def f_relax(self, l, store=False):
        """F-relaxation on level l; afterwards the ghost slot holds the left neighbour's u[lo-1]."""
        lv, comm = self.levels[l], self.comm
        if lv.empty:
            return
        self._log(l, "F")
        if lv.left is None and lv.right is None:             # one rank: the whole sweep at once
            with self._timed(l, "relax"):
                self._sweep(l, store)
            return
        with self._timed(l, "relax"):
            for k in range(lv.cf):                           # stage k: F-points at offset k
                if k > 0:
                    if lv.lo % lv.cf == k and lv.left is not None:
                        self._recv(self.U[l], lv.left, l)    # our first point needs theirs
                    first, count = self._points(l, k)
                    if count:
                        self._step(l, first, count, lv.cf, store=store)
                if lv.hi % lv.cf == k and lv.right is not None:
                    self._send(self.U[l], lv.right, l)   # our last point is final now
            if lv.lo % lv.cf == 0 and lv.lo > 0 and lv.left is not None:
                self._recv(self.U[l], lv.left, l)       # the F-point before our C-point
            comm.waitall()

    def _sweep(self, l, store=False):
        """F-relaxation of a level this rank owns whole, by one `Problem.sweep` call: every
        interval's cf - 1 F-points from its C-point (the last interval may be shorter)."""
        lv = self.levels[l]
        first, count = self._points(l, 1)                    # first F-point of each interval
        if count == 0:
            return
        m = lv.cf - 1
        n_rows = (count - 1) * lv.cf + min(m, lv.hi - (first + (count - 1) * lv.cf) + 1)
        s = first - lv.lo + 1
        G = self.G[l]
        t = range((first - 1) * lv.stride, (first - 1 + lv.cf * (count - 1)) * lv.stride + 1,
                  lv.cf * lv.stride)
        self.problem.sweep(l, self._rows(self.U[l], s - 1, count, lv.cf), t, lv.stride,
                           self._rows(self.U[l], s, n_rows, 1), m, lv.cf,
                           None if G is None else self._rows(G, s, n_rows, 1), store)

    def phi_at_c(self, l, store=False):
        """Φ_l(u_{i-1}) + g_i at this rank's C-points i >= 1: ``(first, count, values)``."""
        lv = self.levels[l]
        first, count = self._points(l, 0)
        if count == 0:
            return first, 0, None
        with self._timed(l, "residual"):
            out = self.vec.empty(count)                      # written in full by the step
            self._step(l, first, count, lv.cf, out=out, store=store)
        return first, count, out

    def c_relax(self, l):
        lv = self.levels[l]
        if lv.empty:
            return
        self._log(l, "C")
        if self.c_weight == 1.0:                             # u_C <- Φ(u_{C-1}) + g_C, in place:
            first, count = self._points(l, 0)                # one batched step, no scratch
            if count:
                with self._timed(l, "relax"):
                    self._step(l, first, count, lv.cf)
            return
        first, count, phi = self.phi_at_c(l)
        if count == 0:
            return
        C = self._rows(self.U[l], first - lv.lo + 1, count, lv.cf)
        self.vec.axpby(C, 1.0 - self.c_weight, C, self.c_weight, phi)   # (1 - ω) u_C + ω Φ(u_{C-1})

    def relax_level(self, l):
        self.f_relax(l)
        if self.relax[l] == "FCF":
            self.c_relax(l)
            self.f_relax(l)

    def residual_norm(self, phi_c):
        """Norm over time of r_i = Φ(u_{i-1}) - u_i at the fine C-points (after relaxation)."""
        lv = self.levels[0]
        self._log(0, "residual")
        first, count, phi = phi_c
        local = 0.0
        if count:
            C = self._rows(self.U[0], first - lv.lo + 1, count, lv.cf)
            local = self.vec.diff_norm(phi, C, self.norm)   # Σ|r|² or max|r|, r = Φ(u_{C-1}) - u_C
        if self.norm == "max":
            return self.comm.allreduce_max(local)
        return math.sqrt(self.comm.allreduce_sum(local))

    def restrict(self, l, phi_c=None):
        """Level l -> l+1: inject the C-points; FAS forcing from ``phi_c`` (None: skip, g = 0)."""
        lv, lc, comm = self.levels[l], self.levels[l + 1], self.comm
        fresh = self._alloc(l + 1)
        self._log(l, "restrict")
        if lc.empty:
            return
        with self._timed(l + 1, "restrict"):
            V, U = self.U[l + 1], self.U[l]
            s = lc.lo * lv.cf - lv.lo + 1                    # slot of level-l point lo_c * cf
            self.vec.assign(V[1:], self._rows(U, s, lc.count, lv.cf))
            if phi_c is None:                                # skip: plain coarse problem, g = 0
                if not fresh:                                # (an earlier solve's g is stale)
                    self.G[l + 1] = self.vec.zeros(lc.count + 1)
                return
            if lc.right is not None:
                self._send(V, lc.right, 100 + l + 1)
            if lc.left is not None:
                self._recv(V, lc.left, 100 + l + 1)
            comm.waitall()
            first, count = max(lc.lo, 1), lc.hi - max(lc.lo, 1) + 1
            if count > 0:
                phi_coarse = self.vec.empty(count)
                self._step(l + 1, first, count, 1, out=phi_coarse, g=False)
                # g_j = Φ_l(u_{j cf - 1}) + g_{j cf} - Φ_c(v_{j-1}); phi_c already holds the first two
                self.vec.fas(self.G[l + 1][first - lc.lo + 1:], phi_c[2], None, phi_coarse)

    def correct(self, l):
        """u_{j cf} <- v_j on level l (C-points), from level l+1."""
        lv, lc = self.levels[l], self.levels[l + 1]
        self._log(l, "correct")
        if lc.empty:
            return
        with self._timed(l, "correct"):
            s = lc.lo * lv.cf - lv.lo + 1
            self.vec.assign(self._rows(self.U[l], s, lc.count, lv.cf), self.U[l + 1][1:])

    def coarsest_solve(self, l, store=False):
        """Sequential stepping on level l, pipelined from rank to rank."""
        lv, comm = self.levels[l], self.comm
        self._alloc(l)
        self._log(l, "coarsest")
        if lv.empty:
            return
        with self._timed(l, "coarsest"):
            if lv.left is not None:
                self._recv(self.U[l], lv.left, 200 + l)  # wait for the left part to finish
            first = max(lv.lo, 1)
            if lv.hi >= first:
                self._march(l, first, lv.hi - first + 1, store=store)
            if lv.right is not None:
                self._send(self.U[l], lv.right, 200 + l)
            comm.waitall()

    # ------------------------------------------------------------------------------------------
    # cycles
    # ------------------------------------------------------------------------------------------
    def _coarse_cycle(self, l, kind, skip_down):
        """Approximately solve level l's FAS problem (l >= 1), leaving its points corrected."""
        if l == len(self.levels) - 1:
            self.coarsest_solve(l)
            return
        if skip_down:
            self.restrict(l, None)
        else:
            self.relax_level(l)
            self.restrict(l, self.phi_at_c(l))
        self._solve_below(l + 1, kind, skip_down)
        self.correct(l)
        self.f_relax(l)                                      # interpolate: spread the correction

    def _solve_below(self, l, kind, skip_down):
        """The coarse solve for level l-1: one cycle on level l (F-cycle: an F- then a V-cycle)."""
        self._coarse_cycle(l, kind, skip_down)
        if kind == "F" and l < len(self.levels) - 1:
            self._coarse_cycle(l, "V", False)

    def solve(self, u_init=None, host=True):
        """Run MGRIT cycles until ``tol`` or ``max_iter``.

        Parameters
        ----------
        u_init : array (N+1, *shape), optional
            Initial guess at every fine point (point 0 is replaced by the problem's u_0).
            A given guess turns ``skip`` off for this solve: skip's first cycle replaces the
            C-points by a plain coarse solve, which would throw a good guess away (a warm
            start, or the exact solution: then the first residual would not be ~0).
        host : bool
            False: return the solver's own array of the fine points instead of a host copy
            (a device array for a device problem: nothing crosses the bus; not a copy, so
            read it before the next solve).

        Returns
        -------
        u : array (hi - lo + 1, *shape)
            This rank's fine points lo..hi (`local_range`); `gather` collects all of them.
        info : MGRITInfo
        """
        if u_init is not None:
            want = (self.problem.n_steps + 1,) + tuple(self.problem.shape)
            if getattr(u_init, "shape", None) != want:
                raise ValueError(f"u_init must have shape {want} (every fine point), got "
                                 f"{getattr(u_init, 'shape', type(u_init).__name__)}")
        skip = self.skip and u_init is None                  # never discard a caller's guess
        info = MGRITInfo(options={**self.options.to_dict(), "cf": self.hier.cfs,
                                  "relax": self.relax, "skip": skip, "ranks": self.comm.size})
        self._timers = {}
        comm_t0 = self.comm.comm_time
        t_start = time.perf_counter()
        self._init_fine(u_init)
        self.info = info
        if self.trace is not None:                           # a fresh trace per solve
            self.trace = info.trace = []
        if len(self.levels) == 1:                            # one level: sequential stepping
            self.coarsest_solve(0, store=True)
            info.residual_history.append(self.residual_norm((1, 0, None)))
            info.iterations, info.converged = 1, True
            info.cycle_times.append(time.perf_counter() - t_start)
            return self._finish(info, t_start, comm_t0, host)
        first_norm = None
        finished = False
        for k in range(self.max_iter):
            t_cycle = time.perf_counter()
            if k == 0 and skip:
                self.restrict(0, None)
                self._solve_below(1, self.cycle, True)
            else:
                self.f_relax(0)
                if self.record_iterates and k > 0:
                    info.iterates.append(self.vec.to_host(self.U[0][1:]))
                if self.relax[0] == "FCF":
                    self.c_relax(0)
                    self.f_relax(0)
                phi_c = self.phi_at_c(0)
                r = self.residual_norm(phi_c)
                first_norm = self._record(info, k, r, first_norm, t_start)
                if self._stop(info, r, first_norm):
                    finished = True
                    break
                self.restrict(0, phi_c)
                self._solve_below(1, self.cycle, False)
            self.correct(0)
            info.iterations = k + 1
            info.cycle_times.append(time.perf_counter() - t_cycle)
        if not finished:                                     # final F-relaxation, keep the gates
            self.f_relax(0, store=True)
            if self.record_iterates:
                info.iterates.append(self.vec.to_host(self.U[0][1:]))
            phi_c = self.phi_at_c(0, store=True)
            r = self.residual_norm(phi_c)
            # measured after F only, the others after the cycle's FCF: not a per-cycle factor
            partial = self.relax[0] == "FCF"
            first_norm = self._record(info, info.iterations, r, first_norm, t_start,
                                      final_f=partial)
            self._stop(info, r, first_norm)
        else:                                                # the relaxed iterate is the answer:
            self.f_relax(0, store=True)                      # one more sweep stores its gates
            self.phi_at_c(0, store=True)
        return self._finish(info, t_start, comm_t0, host)

    def _record(self, info, k, r, first_norm, t_start, final_f=False):
        if not math.isfinite(r):
            raise MGRITDivergedError(
                f"MGRIT residual became {r} at cycle {k}: the iteration diverged or the states "
                "overflowed (check the inputs, dt and the coarse propagator)")
        if k == 0:
            info.initial_residual = r
        else:
            prev = info.residual_history[-1] if info.residual_history else info.initial_residual
            info.residual_history.append(r)
            info.conv_factors.append(r / prev if prev and not final_f else float("nan"))
        if self.verbose and self.comm.rank == 0:
            cf = (f"{info.conv_factors[-1]:.2e}" if (k > 0 and info.conv_factors and
                  math.isfinite(info.conv_factors[-1])) else "   --   ")  # skip: no r_0
            what = "final (F-relaxed only)" if final_f else f"conv factor = {cf}"
            # XBraid's wall time: since the solve began (the line falls mid-cycle, after the
            # relaxation that measures r, so a per-cycle time would cover part of two cycles)
            print(f"  iter {k:3d}   ||r|| = {r:.6e}   {what}   "
                  f"wall time = {time.perf_counter() - t_start:.3f} s", flush=True)
        return r if first_norm is None else first_norm

    def _stop(self, info, r, first_norm):
        target = self.tol if self.tol_type == "absolute" else self.tol * (first_norm or 0.0)
        if r <= target:
            info.converged = True
            return True
        if first_norm and r > self.divergence_factor * first_norm:
            info.diverged = True
            warnings.warn(f"MGRIT diverged: ||r|| = {r:.3e} grew past {self.divergence_factor:g} "
                          f"times its first value {first_norm:.3e}", RuntimeWarning, stacklevel=3)
            return True
        return False

    def _finish(self, info, t_start, comm_t0, host=True):
        info.wall_time = time.perf_counter() - t_start
        info.comm_time = self.comm.comm_time - comm_t0
        info.level_times = [sum(v for (l, _), v in self._timers.items() if l == lev)
                            for lev in range(len(self.levels))]
        for (l, phase), v in self._timers.items():
            info.phase_times[phase] = info.phase_times.get(phase, 0.0) + v
        if self.levels[0].empty:
            return None, info
        return (self.vec.to_host(self.U[0][1:]) if host else self.U[0][1:]), info

    @property
    def local_range(self):
        """This rank's fine points (lo, hi), inclusive."""
        return self.levels[0].lo, self.levels[0].hi
