"""Public entry points: the GRU forward (and backward) pass solved parallel-in-time by MGRIT.

Data flows one way: GRU parameters and inputs -> an MGRIT problem (`problems`) -> the generic
solver (`mgrit`) -> outputs shaped like the serial `gru_forward`'s.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .checks import check_flag, int_at_least, real_array
from .gru import (cell_update, check_cell, check_h0, check_sequence, check_unchanged, gru_dims,
                  input_gradient, on_gpu, param_grads)
from .mgrit import MGRIT, Hierarchy, as_comm
from .problems import GRUAdjointProblem, GRUForwardProblem

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

    def __post_init__(self):
        self.start = int_at_least(self.start, "TimeSlice.start", 0)   # (1.5 or "3": refused,
        self.n_steps = int_at_least(self.n_steps, "TimeSlice.n_steps", 1)   # not truncated)
        rows = np.shape(self.x)[0] if np.ndim(self.x) else 0
        if self.start + rows > self.n_steps:
            raise ValueError(f"TimeSlice holds steps {self.start} .. {self.start + rows - 1}, "
                             f"past the sequence's n_steps = {self.n_steps}")


def input_rows(n_steps, comm=None, levels=3, cf=4, min_coarse=1, *, rank=None, size=None):
    """Fine steps ``(start, stop)`` whose inputs this rank needs for `mgrit_forward`.

    They are the steps into the rank's own points plus a short halo on the left (at most the
    coarsest stride): coarse steps that start at a point left of its first one. ``rank`` and
    ``size`` (both, instead of ``comm``) ask for any rank of a planned run, without MPI.
    """
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


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def _problem_classes(backend, comm):
    """(forward, adjoint) problem classes of ``backend``; cuda: one GPU, one rank."""
    if backend == "numpy":
        return GRUForwardProblem, GRUAdjointProblem
    if comm.size > 1:
        raise NotImplementedError("backend='cuda' runs on one GPU: comm must have one rank")
    from .cuda.problems import CudaAdjointProblem, CudaForwardProblem
    return CudaForwardProblem, CudaAdjointProblem


def _device_input(a, name, shape, dtype, backend, contiguous=False):
    """``a`` as a checked numba device array if it lives on a GPU, else None (a host array)."""
    if not on_gpu(a):
        return None
    if backend != "cuda":
        raise ValueError(f"{name} is a GPU array: use backend='cuda' (or copy it to the host)")
    from .cuda.backend import as_device, check_device
    return check_device(as_device(a), name, shape, dtype, contiguous)


def _small_to_host(a):
    """A small array (h0, dh_T) given on the device: copied to the host (L*B*H numbers)."""
    if on_gpu(a):
        from .cuda.backend import small_to_host
        return small_to_host(a)
    return a


def _device_scope(backend):
    """Around a CUDA solve: no device frees until it ends (`cuda.backend.solve_scope`)."""
    if backend != "cuda":
        return contextlib.nullcontext()
    from .cuda.backend import solve_scope
    return solve_scope()


def mgrit_forward(params, x, h0=None, *, cell="classic", levels=3, cf=4, relax="FCF",
                  max_iter=10, tol=1e-9, skip=True, comm=None, backend="numpy", dt=1.0,
                  coarse_input="inject", cycle="V", tol_type="absolute", norm="2",
                  min_coarse=1, c_weight=1.0, gather="all", verbose=False,
                  record_iterates=False, trace=False):
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
    cell : {"classic", "implicit"}
        Fine-level cell; level l >= 1 uses the implicit cell with step dt * (cf_0 ... cf_{l-1})
        (dt * cf^l for one cf).
    levels, cf, relax, max_iter, tol, skip
        MGRIT options (see `mgrit_gru.mgrit.MGRIT`); ``relax`` may be one per level, ``cf``
        one per coarsening (a list of ``levels - 1`` factors).
    comm : mpi4py communicator, optional
        Split the time axis across its ranks.
    backend : {"numpy", "cuda"}
        "cuda": states, inputs, weights and gates on one GPU for the whole solve (one rank;
        `mgrit_gru.cuda.problems`); y and h_T come back to the host at the end.
    dt : float
        Fine step size (1 = nn.GRU for the classic cell).
    coarse_input : {"inject", "average"}
        Coarse-step input: the fine input at the interval start (the paper) or the interval mean.
    cycle, tol_type, norm, min_coarse, c_weight, verbose, record_iterates, trace
        Further solver options (``trace``: record the cycle's building blocks in
        ``info.trace`` for `mgrit_gru.diagnostics.plot_cycle`).
    gather : {"all", "root", "local"}
        Under MPI: full ``y`` on every rank, only on rank 0 (None elsewhere), or each rank's own
        rows (``info.y_rows`` says which; ``info.dy_rows`` which rows of dy `mgrit_backward`
        needs here, one more at the front).

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
    comm = as_comm(comm)                     # first: under MPI an error on one rank below
    _check_backend(backend)                  # then ends the job (abort_on_error), no hang
    if gather not in GATHERS:
        raise ValueError(f"gather must be one of {GATHERS}, got {gather!r}")
    L, I, H, dtype = gru_dims(params)
    cell, dt = check_cell(cell, dt)
    d_x = _device_input(x, "x", (None, None, I), dtype, backend, contiguous=True)
    if d_x is not None:                                      # on the device: y, h_T stay there
        T, offset = d_x.shape[0], 0
        x_loc, h0 = d_x, check_h0(_small_to_host(h0), L, d_x.shape[1], H, dtype)
    elif isinstance(x, TimeSlice):
        T, offset = int(x.n_steps), int(x.start)
        x_loc, h0 = check_sequence(x.x, h0, L, I, H, dtype)
    else:
        x_loc, h0 = check_sequence(x, h0, L, I, H, dtype)
        T, offset = x_loc.shape[0], 0
    _same_on_every_rank(comm, T=T, B=x_loc.shape[1], layers=L, input_size=I, hidden_size=H,
                        dtype=dtype.name, cell=cell, dt=dt, levels=levels, cf=cf, relax=relax,
                        max_iter=max_iter, tol=tol, skip=skip, coarse_input=coarse_input,
                        cycle=cycle, tol_type=tol_type, norm=norm, min_coarse=min_coarse,
                        c_weight=c_weight, gather=gather, backend=backend)
    hier = Hierarchy(T, cf, levels, min_coarse, comm.rank, comm.size)
    start, stop = _rows_needed(hier)
    if offset > start or offset + x_loc.shape[0] < stop:
        raise ValueError(f"rank {comm.rank} needs the inputs of steps {start}..{stop - 1} but x "
                         f"holds steps {offset}..{offset + x_loc.shape[0] - 1}")
    x_loc = x_loc[start - offset: stop - offset]             # keep only the rows we need
    lo = hier.levels[0].lo
    fwd_cls = _problem_classes(backend, comm)[0]
    problem = fwd_cls(params, x_loc, h0, T, cell, dt, coarse_input, t_offset=start,
                      store_from=max(lo, 1) - 1)
    solver = MGRIT(problem, levels=levels, cf=cf, relax=relax, c_weight=c_weight, cycle=cycle,
                   max_iter=max_iter, tol=tol, tol_type=tol_type, norm=norm, skip=skip,
                   min_coarse=min_coarse, comm=comm,
                   verbose=verbose, record_iterates=record_iterates, trace=trace)
    with _device_scope(backend):
        u, info = solver.solve(host=d_x is None)
    info.problem, info.solver = problem, solver
    # a copy, not a reference: an optimizer updates params in place, and mgrit_backward must
    # notice when the parameters changed between the forward and the backward pass
    info.params_snapshot = {k: np.array(v, copy=True) for k, v in params.items()}
    lo, hi = solver.local_range
    info.y_rows = (max(lo, 1) - 1, hi)
    # the adjoint on this rank forces the points i = lo - 1 .. hi with dy_{i-1} (mirrored ranges)
    info.dy_rows = (max(lo - 2, 0), hi)
    if d_x is not None:                                      # fresh device arrays (one rank)
        from .cuda.problems import outputs_on_device
        return (*outputs_on_device(problem.gru, u), info)
    y_loc = u[max(lo, 1) - lo:, L - 1]                       # y_t = u_{t+1}'s top layer
    if comm.size == 1:
        return y_loc, u[-1].copy(), info
    h_T = comm.bcast(u[-1].copy() if hi == T else None, root=comm.size - 1)
    if gather == "local":
        return y_loc, h_T, info
    root = None if gather == "all" else 0
    y = _gather_rows(comm, info.y_rows[0], y_loc, T, root)
    return y, h_T, info


_NEEDED_EVERYWHERE = {
    "dy_given": "every rank needs dy: the whole array, or a TimeSlice of at least its rows "
                "fwd.dy_rows (after gather='root', broadcast dy from rank 0)",
    "dh_T_given": "every rank needs dh_T, the whole (L, B, H) array"}


def _same_on_every_rank(comm, **options):
    """ValueError on every rank unless ``options`` are equal on every rank of ``comm``.

    Ranks that disagree (on T, levels, whether dy was given, ...) would follow different
    message patterns and wait for each other forever, or sum gradients of different losses.
    One allgather of a few small values per solve, before the solve's first message.
    """
    if comm.size == 1:
        return
    every = comm.comm.allgather(options)
    differ = [k for k in options
              if not all(np.array_equal(o[k], options[k]) or repr(o[k]) == repr(options[k])
                         for o in every)]
    if differ:
        raise ValueError("the ranks disagree on " + "; ".join(
            f"{k} ({', '.join(f'rank {r}: {o[k]!r}' for r, o in enumerate(every))})"
            for k in differ) + ": every rank must pass the same" + "".join(
            f"; {_NEEDED_EVERYWHERE[k]}" for k in differ if k in _NEEDED_EVERYWHERE))


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


def _reversed(fsolver):
    """The forward communicator with the rank order reversed: in reversed time the last forward
    rank holds the first adjoint points, and the solver's neighbours follow rank order.

    A new communicator per call: the caller frees it (`_free`) after the backward solve. MPI has
    few context ids (MPICH: 2048 per process), so keeping one per backward pass made a training
    run crash after ~2000 steps.
    """
    comm = fsolver.comm
    if comm.size == 1:
        return comm
    return as_comm(comm.comm.Split(0, comm.size - 1 - comm.rank))


def _free(rcomm, fsolver):
    """Free the communicator `_reversed` made (collective: every rank calls it once the
    backward solve is done)."""
    if rcomm is not fsolver.comm:
        rcomm.comm.Free()


def _mirror_ranges(fine_ranges, n_steps):
    """Backward ownership: rank q takes the steps forward rank P-1-q stored, in reversed time.

    Forward rank p stored the steps lo_p - 1 .. hi_p - 1 (those into its points); the step into
    adjoint point s is forward step N - s, so rank q owns s = N - hi_p + 1 .. N - lo_p + 1
    (clipped to 0..N; the first block also takes the initial point s = 0).
    """
    out = []
    for lo, hi in reversed(fine_ranges):
        out.append((n_steps - hi + 1, min(n_steps - lo + 1, n_steps)))
    out[0] = (0, out[0][1])
    return out


def _rows_of(d, n_steps, name, trailing):
    """A cotangent given in full (T, ...) or as a TimeSlice: ``(rows, first_row)``."""
    if d is None:
        return None, 0
    if isinstance(d, TimeSlice):
        if d.n_steps != n_steps:
            raise ValueError(f"{name}.n_steps is {d.n_steps} but the sequence has {n_steps} steps")
        rows, first = real_array(d.x, f"{name}.x"), d.start
    else:
        rows, first = real_array(d, name), 0
        if rows.shape[:1] != (n_steps,):
            raise ValueError(f"{name} must have shape {(n_steps,) + trailing}, got {rows.shape}")
    if rows.ndim != 1 + len(trailing) or rows.shape[1:] != trailing:
        raise ValueError(f"{name} rows must have shape (*, {', '.join(map(str, trailing))}), "
                         f"got {rows.shape}")
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{name} contains NaN or Inf")
    return rows, first


def mgrit_backward(params, fwd, dy=None, dh_T=None, *, levels=3, cf=4, relax="FCF",
                   max_iter=10, tol=1e-9, skip=True, comm=None, backend="numpy", cycle="V",
                   tol_type="absolute", norm="2", min_coarse=1, c_weight=1.0, gather="all",
                   verbose=False, input_grad=True):
    """Backward pass by MGRIT: the adjoint recurrence solved parallel-in-time, then gradients.

    Parameters
    ----------
    params : dict
        The parameters `mgrit_forward` ran with.
    fwd : MGRITInfo
        The ``info`` returned by `mgrit_forward` (it holds the forward states and gates).
    dy : ndarray (T, B, H) or TimeSlice or GPU array, optional
        Cotangent on the outputs y (under MPI a TimeSlice must hold at least the rows
        ``fwd.dy_rows`` = (start, stop): outputs ``lo - 2 .. hi - 1``, one more than ``y_rows``
        at the front; checked. The full array always works).
        With ``backend="cuda"`` also a GPU array of the parameters' dtype, used in place.
    dh_T : ndarray (L, B, H), optional
        Cotangent on the final states.
    levels, cf, relax, max_iter, tol, skip, cycle, tol_type, norm, min_coarse, c_weight, verbose
        Options of the backward solve, independent of the forward ones (the paper: 1 iteration).
    comm : mpi4py communicator, optional
        Must be the forward solve's (default: it is taken from ``fwd``).
    backend : {"numpy", "cuda"}
        Must be the forward solve's; "cuda" keeps λ, the cotangent tables and the gradient
        sums on the GPU (grads, dx, dh0 come back to the host at the end).
    gather : {"all", "root", "local"}
        Where ``dx`` is assembled (like ``y`` in `mgrit_forward`); grads and dh0 are everywhere.
    input_grad : bool
        False: skip ``dx`` (returned as None; nothing gathered), for a caller that only needs
        the parameter gradients (training): one (T·B, 3H) @ (3H, I) product and, with
        ``backend="cuda"``, its copy to the host saved.

    Returns
    -------
    grads : dict
        Same keys as ``params``: Σ_i (∂Φ_i/∂θ)ᵀ λ_{i+1}, summed over ranks by one allreduce.
    dx : ndarray (T, B, I) or None
        See ``gather``; with ``"local"`` this rank's rows ``info.dx_rows`` = (start, stop). A
        numba device array when the forward pass was given x on the GPU. None where
        ``input_grad`` is False.
    dh0 : ndarray (L, B, H)
    info : MGRITInfo
        The backward solve's residual history, iterations and timings; ``final_residual`` says
        how inexact the adjoint solve was (`diagnostics.gradient_error` measures the gradients).
    """
    _check_backend(backend)
    if gather not in GATHERS:
        raise ValueError(f"gather must be one of {GATHERS}, got {gather!r}")
    input_grad = check_flag(input_grad, "input_grad")
    if not hasattr(fwd, "problem") or not isinstance(getattr(fwd, "problem", None),
                                                     GRUForwardProblem):
        if type(getattr(fwd, "problem", None)).__name__ != "CudaForwardProblem":
            raise ValueError("fwd must be the info returned by mgrit_forward")
    fwd_cls, adj_cls = _problem_classes(backend, fwd.solver.comm)
    if not isinstance(fwd.problem, fwd_cls):
        raise ValueError(f"backend={backend!r} but fwd was solved with the other backend")
    L, I, H, dtype = gru_dims(params)
    fproblem, fsolver = fwd.problem, fwd.solver
    check_unchanged(getattr(fwd, "params_snapshot", fproblem.params), params, "mgrit_forward")
    comm_w = fsolver.comm
    if comm is not None and as_comm(comm).size != comm_w.size:
        raise ValueError("comm must be the communicator mgrit_forward ran with")
    T, B = fproblem.n_steps, fproblem.shape[1]
    d_dy = _device_input(dy, "dy", (T, B, H), dtype, backend, contiguous=True)
    if d_dy is not None:                                     # used in place on the device
        dy_rows, dy_first = d_dy, 0
    else:
        dy_rows, dy_first = _rows_of(dy, T, "dy", (B, H))
        if dy_rows is not None:
            dy_rows = np.asarray(dy_rows, dtype)
            need = getattr(fwd, "dy_rows", (0, T))
            if dy_first > need[0] or dy_first + len(dy_rows) < need[1]:
                raise ValueError(
                    f"dy holds outputs {dy_first} .. {dy_first + len(dy_rows) - 1} but this "
                    f"rank's adjoint needs {need[0]} .. {need[1] - 1} (fwd.dy_rows: y_rows and "
                    f"the row before)")
    if dh_T is not None:
        dh_T = real_array(_small_to_host(dh_T), "dh_T")
        if dh_T.shape != (L, B, H):
            raise ValueError(f"dh_T must have shape {(L, B, H)}, got {dh_T.shape}")
        if not np.all(np.isfinite(dh_T)):
            raise ValueError("dh_T contains NaN or Inf")
        dh_T = dh_T.astype(dtype)
    # before the first message (and after this rank's own checks, which end the job if they
    # fail): a cotangent given on some ranks only (dy on rank 0 alone, where gather="root" put
    # y) would be a zero loss on the others' rows: wrong gradients, no error
    _same_on_every_rank(comm_w, dy_given=dy is not None, dh_T_given=dh_T is not None,
                        levels=levels, cf=cf, relax=relax, max_iter=max_iter, tol=tol, skip=skip,
                        cycle=cycle, tol_type=tol_type, norm=norm, min_coarse=min_coarse,
                        c_weight=c_weight, gather=gather, backend=backend,
                        input_grad=input_grad)               # (else some ranks wait in dx's gather)
    lo, hi = fsolver.local_range
    states = fsolver.U[0]                                    # forward points lo - 1 .. hi
    problem = adj_cls(fproblem, states, lo - 1, dy_rows, dy_first, dh_T)
    ranges = _mirror_ranges(fsolver.hier.fine_ranges, T)
    rcomm = _reversed(fsolver)
    solver = MGRIT(problem, levels=levels, cf=cf, relax=relax, c_weight=c_weight, cycle=cycle,
                   max_iter=max_iter, tol=tol, tol_type=tol_type, norm=norm, skip=skip,
                   min_coarse=min_coarse, comm=rcomm, verbose=verbose, fine_ranges=ranges)
    with _device_scope(backend):
        lam, info = solver.solve(host=False)                 # λ at adjoint points s = N - i
    rcomm.waitall()
    _free(rcomm, fsolver)                                    # not on an error: a rank that
                                                             # fails aborts the job instead
    info.problem, info.solver = problem, solver
    # parameter gradients from the stored cotangents of this rank's steps i = first .. hi - 1
    first = fproblem.store_from
    if backend == "cuda":                                    # device sums, copied to the host
        grads, dx_loc = problem.gradients(lo, hi, dx_on_device=fproblem.device_io,
                                          input_grad=input_grad)
    else:
        steps = slice(first - (lo - 1), hi - (lo - 1))       # rows of `states` for u_i
        x_rows = fproblem.x[first - fproblem.t_offset: hi - fproblem.t_offset]
        # layer k >= 1 took Φ(u_i)'s layer k-1 as input (rebuilt from the gates: the iterate's
        # u_{i+1} differs from it at C-points until the forward solve has converged)
        g = fproblem.gates
        inputs = [x_rows] + [cell_update(states[steps, k - 1], g["z"][:, k - 1],
                                         g["n"][:, k - 1], fproblem.cell, fproblem.dt)
                             for k in range(1, L)]
        grads = param_grads(params, inputs, [states[steps, k] for k in range(L)],
                            problem.dgx, problem.dgh)
    names = list(grads)
    flat = np.concatenate([grads[k].ravel() for k in names])
    flat = comm_w.allreduce_sum(flat)                        # one Allreduce(SUM) for all tensors
    offset = 0
    for k in names:
        grads[k] = flat[offset: offset + grads[k].size].reshape(params[k].shape).astype(dtype)
        offset += params[k].size
    if backend != "cuda":
        dx_loc = input_gradient(params, problem.dgx[0]) if input_grad else None
    # dh0 = λ_0, the adjoint's last point s = N (owned by the rank holding forward point 0)
    b_lo, b_hi = solver.local_range
    dh0 = solver.vec.to_host(lam[-1:])[0] if b_hi == T else None   # one point, not all λ
    info.dx_rows = (first, hi)                               # this rank's rows of dx (like y_rows)
    if comm_w.size == 1:
        return grads, dx_loc, dh0, info
    dh0 = comm_w.bcast(dh0, root=0)                          # world rank 0 holds forward point 0
    if gather == "local" or dx_loc is None:
        return grads, dx_loc, dh0, info
    dx = _gather_rows(comm_w, first, dx_loc, T, None if gather == "all" else 0)
    return grads, dx, dh0, info
