"""`mgrit_forward`: the GRU forward pass solved parallel-in-time by MGRIT.

Data flows one way: GRU parameters and inputs -> an MGRIT problem (`mgrit_gru.problems`) -> the
generic solver (`mgrit_gru.mgrit`) -> outputs shaped like the serial `gru_forward`'s, and a
`ForwardInfo` holding what `mgrit_backward` needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import check_cell, check_h0, check_sequence, choice, gru_dims, int_at_least
from ..mgrit import MGRIT, Hierarchy, MGRITOptions, as_comm
from .backends import get_backend, small_to_host
from .ranks import gather_rows, same_on_every_rank
from .record import ForwardInfo, extend

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

    def __post_init__(self):
        self.start = int_at_least(self.start, "TimeSlice.start", 0)   # (1.5 or "3": refused,
        self.n_steps = int_at_least(self.n_steps, "TimeSlice.n_steps", 1)   # not truncated)
        rows = np.shape(self.x)[0] if np.ndim(self.x) else 0
        if self.start + rows > self.n_steps:
            raise ValueError(f"TimeSlice holds steps {self.start} .. {self.start + rows - 1}, "
                             f"past the sequence's n_steps = {self.n_steps}")


def input_rows(n_steps, comm=None, levels=3, cf=4, min_coarse=1, *, options=None, rank=None,
               size=None):
    """Fine steps ``(start, stop)`` whose inputs this rank needs for `mgrit_forward`.

    They are the steps into the rank's own points plus a short halo on the left (at most the
    coarsest stride): coarse steps that start at a point left of its first one. ``rank`` and
    ``size`` (both, instead of ``comm``) ask for any rank of a planned run, without MPI.
    ``options`` (an `MGRITOptions`), if given, stands for ``levels``, ``cf`` and ``min_coarse``.
    """
    if options is not None:
        levels, cf, min_coarse = options.levels, options.cfs, options.min_coarse
    if (rank is None) != (size is None):
        raise ValueError("pass rank and size together (or neither: comm's)")
    if rank is None:
        comm = as_comm(comm)
        rank, size = comm.rank, comm.size
    elif not (isinstance(rank, (int, np.integer)) and isinstance(size, (int, np.integer))
              and 0 <= rank < size):
        raise ValueError(f"rank must lie in 0..size-1, got rank={rank!r}, size={size!r}")
    hier = Hierarchy(n_steps, cf, levels, min_coarse, int(rank), int(size))
    return _rows_needed(hier)


def _rows_needed(hier):
    hi = hier.levels[0].hi
    start = min((max(lv.lo, 1) - 1) * lv.stride for lv in hier.levels if not lv.empty)
    return max(start, 0), hi


def mgrit_forward(params, x, h0=None, *, options=None, cell="classic", dt=1.0, comm=None,
                  backend="numpy", gather="all", verbose=False, record_iterates=False,
                  trace=False, **option_values):
    """Forward pass of the stacked GRU solved by MGRIT (parallel-in-time when ``comm`` has ranks).

    Parameters
    ----------
    params : dict
        GRU parameters (`init_gru` names).
    x : ndarray (T, B, I) or TimeSlice or GPU array
        The inputs; under MPI a `TimeSlice` holding only this rank's rows (see `input_rows`).
        With ``backend="cuda"`` also a GPU array (numba device array, CuPy, a PyTorch CUDA
        tensor; the parameters' dtype; C-contiguous): copied once on the device (the caller may
        refill it before `mgrit_backward`), and y, h_T are returned as numba device arrays (no
        host copy either way; `mgrit_backward` then returns dx on the device too).
    h0 : ndarray (L, B, H), optional
    options : MGRITOptions, optional
        The solver's options. Any of its fields may also be given as a keyword (``levels=3,
        cf=4, relax="FCF", max_iter=10, tol=1e-9, skip=True, cycle, tol_type, norm,
        min_coarse, c_weight, coarse_input``), on top of ``options``. ``relax`` may be one per
        level, ``cf`` one per coarsening; ``coarse_input`` is the coarse step's input: the fine
        input at the interval start ("inject", the paper) or the interval mean ("average").
    cell : {"classic", "implicit"}
        Fine-level cell; level l >= 1 uses the implicit cell with step dt * (cf_0 ... cf_{l-1})
        (dt * cf^l for one cf).
    dt : float
        Fine step size (1 = nn.GRU for the classic cell).
    comm : mpi4py communicator, optional
        Split the time axis across its ranks.
    backend : {"numpy", "cuda"}
        "cuda": states, inputs, weights and gates on one GPU for the whole solve (one rank;
        `mgrit_gru.cuda.problems`); y and h_T come back to the host at the end.
    gather : {"all", "root", "local"}
        Under MPI: full ``y`` on every rank, only on rank 0 (None elsewhere), or each rank's own
        rows (``info.y_rows`` says which; ``info.dy_rows`` which rows of dy `mgrit_backward`
        needs here, one more at the front).
    verbose, record_iterates, trace
        XBraid-style lines per cycle; a copy of the iterate per cycle; the cycle's building
        blocks in ``info.trace`` (for `mgrit_gru.diagnostics.plot_cycle`).

    Returns
    -------
    y : ndarray (T, B, H)
        Top layer's states (see ``gather``).
    h_T : ndarray (L, B, H)
        Final states (on every rank).
    info : ForwardInfo
        ``residual_history``, ``conv_factors``, ``iterations``, ``converged``, timings, and what
        `mgrit_backward` needs.
    """
    comm = as_comm(comm)                     # first: under MPI an error on one rank below
    be = get_backend(backend)                # then ends the job (abort_on_error), no hang
    options = MGRITOptions.build(options, **option_values)
    choice(gather, "gather", GATHERS)
    L, I, H, dtype = gru_dims(params)
    cell, dt = check_cell(cell, dt)
    d_x = be.device_input(x, "x", (None, None, I), dtype, contiguous=True)
    if d_x is not None:                                      # on the device: y, h_T stay there
        T, offset = d_x.shape[0], 0
        x_loc, h0 = d_x, check_h0(small_to_host(h0), L, d_x.shape[1], H, dtype)
    elif isinstance(x, TimeSlice):
        T, offset = int(x.n_steps), int(x.start)
        x_loc, h0 = check_sequence(x.x, h0, L, I, H, dtype)
    else:
        x_loc, h0 = check_sequence(x, h0, L, I, H, dtype)
        T, offset = x_loc.shape[0], 0
    same_on_every_rank(comm, options, T=T, B=x_loc.shape[1], layers=L, input_size=I,
                       hidden_size=H, dtype=dtype.name, cell=cell, dt=dt, gather=gather,
                       backend=be.name)
    hier = Hierarchy(T, options.cfs, options.levels, options.min_coarse, comm.rank, comm.size)
    start, stop = _rows_needed(hier)
    if offset > start or offset + x_loc.shape[0] < stop:
        raise ValueError(f"rank {comm.rank} needs the inputs of steps {start}..{stop - 1} but x "
                         f"holds steps {offset}..{offset + x_loc.shape[0] - 1}")
    x_loc = x_loc[start - offset: stop - offset]             # keep only the rows we need
    lo = hier.levels[0].lo
    fwd_cls = be.problems(comm.size)[0]
    problem = fwd_cls(params, x_loc, h0, T, cell, dt, options.coarse_input, t_offset=start,
                      store_from=max(lo, 1) - 1)
    solver = MGRIT(problem, options, comm=comm, verbose=verbose,
                   record_iterates=record_iterates, trace=trace)
    with be.scope():
        u, info = solver.solve(host=d_x is None)
    lo, hi = solver.local_range
    info = extend(info, ForwardInfo, problem=problem, solver=solver, backend=be.name,
                  # a copy: an optimiser updates params in place, and mgrit_backward must
                  # notice when they changed between the forward and the backward pass
                  params_snapshot={k: np.array(v, copy=True) for k, v in params.items()},
                  y_rows=(max(lo, 1) - 1, hi),
                  # the adjoint here forces the points lo - 1 .. hi with dy_{i-1}
                  dy_rows=(max(lo - 2, 0), hi), device_io=d_x is not None)
    if d_x is not None:                                      # fresh device arrays (one rank)
        return (*be.outputs(problem, u), info)
    y_loc = u[max(lo, 1) - lo:, L - 1]                       # y_t = u_{t+1}'s top layer
    if comm.size == 1:
        return y_loc, u[-1].copy(), info
    h_T = comm.bcast(u[-1].copy() if hi == T else None, root=comm.size - 1)
    if gather == "local":
        return y_loc, h_T, info
    y = gather_rows(comm, info.y_rows[0], y_loc, T, None if gather == "all" else 0)
    return y, h_T, info
