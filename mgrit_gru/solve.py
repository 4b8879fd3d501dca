"""Public entry points: the GRU forward (and backward) pass solved parallel-in-time by MGRIT.

Data flows one way: GRU parameters and inputs -> an MGRIT problem (`problems`) -> the generic
solver (`mgrit`) -> outputs shaped like the serial `gru_forward`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gru import check_cell, check_sequence, gru_dims
from .mgrit import MGRIT, Hierarchy, as_comm
from .problems import GRUForwardProblem

BACKENDS = ("numpy", "cuda")
GATHERS = ("all", "root", "local")


@dataclass
class TimeSlice:
    """This rank's rows of a long input sequence, for runs where no rank holds all of x.

    Attributes
    ----------
    x : ndarray (stop - start, B, I)
        Inputs of fine steps ``start .. stop - 1``.
    start : int
        Fine step index of ``x[0]``.
    n_steps : int
        Length T of the whole sequence.

    Use `input_rows` to learn which rows a rank needs.
    """

    x: np.ndarray
    start: int
    n_steps: int


def input_rows(n_steps, comm=None, levels=3, cf=4, min_coarse=1):
    """Fine steps ``(start, stop)`` whose inputs this rank needs for `mgrit_forward`.

    They are the steps into the rank's own points plus a short halo on the left (at most the
    coarsest stride): coarse steps that start at a point left of its first one.
    """
    comm = as_comm(comm)
    hier = Hierarchy(n_steps, cf, levels, min_coarse, comm.rank, comm.size)
    return _rows_needed(hier)


def _rows_needed(hier):
    hi = hier.levels[0].hi
    start = min((max(lv.lo, 1) - 1) * lv.stride for lv in hier.levels if not lv.empty)
    return max(start, 0), hi


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cuda":
        raise NotImplementedError("backend='cuda' for mgrit_forward is not available yet")


def mgrit_forward(params, x, h0=None, *, cell="classic", levels=3, cf=4, relax="FCF",
                  max_iter=10, tol=1e-9, skip=True, comm=None, backend="numpy", dt=1.0,
                  coarse_input="inject", cycle="V", tol_type="absolute", norm="2",
                  min_coarse=1, c_weight=1.0, gather="all", verbose=False,
                  record_iterates=False):
    """Forward pass of the stacked GRU solved by MGRIT (parallel-in-time when ``comm`` has ranks).

    Parameters
    ----------
    params : dict
        GRU parameters (`init_gru` names).
    x : ndarray (T, B, I) or TimeSlice
        The inputs; under MPI a `TimeSlice` holding only this rank's rows (see `input_rows`).
    h0 : ndarray (L, B, H), optional
    cell : {"classic", "implicit"}
        Fine-level cell; coarse levels use the implicit cell with dt = cf^l.
    levels, cf, relax, max_iter, tol, skip
        MGRIT options (see `mgrit_gru.mgrit.MGRIT`); ``relax`` and ``cf`` may be per level.
    comm : mpi4py communicator, optional
        Split the time axis across its ranks.
    backend : {"numpy"}
    dt : float
        Fine step size (1 = nn.GRU for the classic cell).
    coarse_input : {"inject", "average"}
        Coarse-step input: the fine input at the interval start (the paper) or the interval mean.
    cycle, tol_type, norm, min_coarse, c_weight, verbose, record_iterates
        Further solver options.
    gather : {"all", "root", "local"}
        Under MPI: full ``y`` on every rank, only on rank 0 (None elsewhere), or each rank's own
        rows (``info.y_rows`` says which).

    Returns
    -------
    y : ndarray (T, B, H)
        Top layer's states (see ``gather``).
    h_T : ndarray (L, B, H)
        Final states (on every rank).
    info : MGRITInfo
        ``residual_history``, ``conv_factors``, ``iterations``, ``converged``, timings, and what
        `mgrit_backward` needs (``info.problem``, ``info.solver``).
    """
    _check_backend(backend)
    if gather not in GATHERS:
        raise ValueError(f"gather must be one of {GATHERS}, got {gather!r}")
    L, I, H, dtype = gru_dims(params)
    cell, dt = check_cell(cell, dt)
    comm = as_comm(comm)
    if isinstance(x, TimeSlice):
        T, offset = int(x.n_steps), int(x.start)
        x_loc, h0 = check_sequence(x.x, h0, L, I, H, dtype)
    else:
        x_loc, h0 = check_sequence(x, h0, L, I, H, dtype)
        T, offset = x_loc.shape[0], 0
    hier = Hierarchy(T, cf, levels, min_coarse, comm.rank, comm.size)
    start, stop = _rows_needed(hier)
    if offset > start or offset + x_loc.shape[0] < stop:
        raise ValueError(f"rank {comm.rank} needs the inputs of steps {start}..{stop - 1} but x "
                         f"holds steps {offset}..{offset + x_loc.shape[0] - 1}")
    x_loc = x_loc[start - offset: stop - offset]             # keep only the rows we need
    lo = hier.levels[0].lo
    problem = GRUForwardProblem(params, x_loc, h0, T, cell, dt, coarse_input, t_offset=start,
                                store_from=max(lo, 1) - 1)
    solver = MGRIT(problem, levels=levels, cf=cf, relax=relax, c_weight=c_weight, cycle=cycle,
                   max_iter=max_iter, tol=tol, tol_type=tol_type, norm=norm, skip=skip,
                   min_coarse=min_coarse, comm=comm,
                   verbose=verbose, record_iterates=record_iterates)
    u, info = solver.solve()
    info.problem, info.solver = problem, solver
    lo, hi = solver.local_range
    y_loc = u[max(lo, 1) - lo:, L - 1]                       # y_t = u_{t+1}'s top layer
    info.y_rows = (max(lo, 1) - 1, hi)
    if comm.size == 1:
        return y_loc, u[-1].copy(), info
    h_T = comm.bcast(u[-1].copy() if hi == T else None, root=comm.size - 1)
    if gather == "local":
        return y_loc, h_T, info
    root = None if gather == "all" else 0
    y = _gather_rows(comm, info.y_rows[0], y_loc, T, root)
    return y, h_T, info


def _gather_rows(comm, start, rows, n_total, root):
    """Assemble each rank's ``rows`` (starting at ``start``) into one (n_total, ...) array."""
    mpi = comm.comm
    parts = mpi.allgather((start, rows)) if root is None else mpi.gather((start, rows), root=root)
    if parts is None:
        return None
    out = np.empty((n_total,) + rows.shape[1:], rows.dtype)
    for s, r in parts:
        out[s: s + len(r)] = r
    return out
