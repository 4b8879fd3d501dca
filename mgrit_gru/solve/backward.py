"""`mgrit_backward`: the adjoint of the GRU forward pass solved parallel-in-time by MGRIT, then
the parameter gradients (docs/theory/backward.md).

The adjoint runs in reversed time on the forward solve's ranks in reversed order, each rank
owning the steps whose forward states it stored; the gradients are summed by one allreduce.
"""
from __future__ import annotations

import numpy as np

from ..checks import (check_cotangent, check_flag, check_unchanged, choice, gru_dims, real_array,
                      require_cotangent)
from ..mgrit import MGRIT, MGRITOptions, as_comm
from .backends import get_backend, small_to_host
from .forward import GATHERS, TimeSlice
from .ranks import gather_rows, same_on_every_rank
from .record import BackwardInfo, ForwardInfo, extend


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


def _free(rcomm, fsolver):
    """Free the communicator `_reversed` made (collective: every rank calls it once the
    backward solve is done)."""
    if rcomm is not fsolver.comm:
        rcomm.comm.Free()


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


def mgrit_backward(params, fwd, dy=None, dh_T=None, *, options=None, comm=None, backend=None,
                   gather="all", verbose=False, input_grad=True, **option_values):
    """Backward pass by MGRIT: the adjoint recurrence solved parallel-in-time, then gradients.

    Parameters
    ----------
    params : dict
        The parameters `mgrit_forward` ran with.
    fwd : ForwardInfo
        The ``info`` returned by `mgrit_forward` (it holds the forward states and gates).
    dy : ndarray (T, B, H) or TimeSlice or GPU array, optional
        Cotangent on the outputs y (under MPI a TimeSlice must hold at least the rows
        ``fwd.dy_rows`` = (start, stop): outputs ``lo - 2 .. hi - 1``, one more than ``y_rows``
        at the front; checked. The full array always works).
        With ``backend="cuda"`` also a GPU array of the parameters' dtype, used in place.
    dh_T : ndarray (L, B, H), optional
        Cotangent on the final states. At least one of dy and dh_T must be given.
    options : MGRITOptions, optional
        Options of the backward solve, independent of the forward ones (the paper: 1
        iteration); any of its fields may also be given as a keyword, on top of ``options``.
        ``coarse_input`` is not used: the adjoint's coarse steps take the injected input.
    comm : mpi4py communicator, optional
        Must be the forward solve's (default: it is taken from ``fwd``).
    backend : {"numpy", "cuda"}, optional
        Must be the forward solve's (None: the forward solve's); "cuda" keeps λ, the cotangent
        tables and the gradient sums on the GPU (grads, dx, dh0 come back to the host).
    gather : {"all", "root", "local"}
        Where ``dx`` is assembled (like ``y`` in `mgrit_forward`); grads and dh0 are everywhere.
    verbose : bool
        XBraid-style lines per cycle.
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
    info : BackwardInfo
        The backward solve's residual history, iterations and timings; ``final_residual`` says
        how inexact the adjoint solve was (`diagnostics.gradient_error` measures the gradients).
    """
    if not isinstance(fwd, ForwardInfo):
        raise ValueError("fwd must be the info returned by mgrit_forward")
    be = get_backend(fwd.backend if backend is None else backend)
    if be.name != fwd.backend:
        raise ValueError(f"backend={backend!r} but fwd was solved with backend="
                         f"{fwd.backend!r}")
    options = MGRITOptions.build(options, **option_values)
    choice(gather, "gather", GATHERS)
    input_grad = check_flag(input_grad, "input_grad")
    L, I, H, dtype = gru_dims(params)
    fproblem, fsolver = fwd.problem, fwd.solver
    check_unchanged(fwd.params_snapshot, params, "mgrit_forward")
    comm_w = fsolver.comm
    if comm is not None and as_comm(comm).size != comm_w.size:
        raise ValueError("comm must be the communicator mgrit_forward ran with")
    T, B = fproblem.n_steps, fproblem.shape[1]
    d_dy = be.device_input(dy, "dy", (T, B, H), dtype, contiguous=True)
    if d_dy is not None:                                     # used in place on the device
        dy_rows, dy_first = d_dy, 0
    else:
        dy_rows, dy_first = _rows_of(dy, T, "dy", (B, H))
        if dy_rows is not None:
            dy_rows = np.asarray(dy_rows, dtype)
            need = fwd.dy_rows
            if dy_first > need[0] or dy_first + len(dy_rows) < need[1]:
                raise ValueError(
                    f"dy holds outputs {dy_first} .. {dy_first + len(dy_rows) - 1} but this "
                    f"rank's adjoint needs {need[0]} .. {need[1] - 1} (fwd.dy_rows: y_rows and "
                    f"the row before)")
    dh_T = check_cotangent(small_to_host(dh_T), (L, B, H), dtype, "dh_T")
    # before the first message (and after this rank's own checks, which end the job if they
    # fail): a cotangent given on some ranks only (dy on rank 0 alone, where gather="root" put
    # y) would be a zero loss on the others' rows: wrong gradients, no error
    same_on_every_rank(comm_w, options, dy_given=dy is not None, dh_T_given=dh_T is not None,
                       gather=gather, backend=be.name,
                       input_grad=input_grad)                # (else some ranks wait in dx's gather)
    require_cotangent(dy, dh_T, "mgrit_backward")
    lo, hi = fsolver.local_range
    states = fsolver.U[0]                                    # forward points lo - 1 .. hi
    problem = be.problems(comm_w.size)[1](fproblem, states, lo - 1, dy_rows, dy_first, dh_T)
    ranges = _mirror_ranges(fsolver.hier.fine_ranges, T)
    rcomm = _reversed(fsolver)
    solver = MGRIT(problem, options, comm=rcomm, verbose=verbose, fine_ranges=ranges)
    with be.scope():
        lam, info = solver.solve(host=False)                 # λ at adjoint points s = N - i
    rcomm.waitall()
    _free(rcomm, fsolver)                                    # not on an error: a rank that
                                                             # fails aborts the job instead
    first = fproblem.store_from                              # this rank's steps first .. hi - 1
    info = extend(info, BackwardInfo, problem=problem, solver=solver, dx_rows=(first, hi))
    grads, dx_loc = problem.gradients(lo, hi, dx_on_device=fwd.device_io, input_grad=input_grad)
    names = list(grads)
    flat = np.concatenate([grads[k].ravel() for k in names])
    flat = comm_w.allreduce_sum(flat)                        # one Allreduce(SUM) for all tensors
    offset = 0
    for k in names:
        grads[k] = flat[offset: offset + grads[k].size].reshape(params[k].shape).astype(dtype)
        offset += params[k].size
    # dh0 = λ_0, the adjoint's last point s = N (owned by the rank holding forward point 0)
    b_lo, b_hi = solver.local_range
    dh0 = solver.vec.to_host(lam[-1:])[0] if b_hi == T else None   # one point, not all λ
    if comm_w.size == 1:
        return grads, dx_loc, dh0, info
    dh0 = comm_w.bcast(dh0, root=0)                          # world rank 0 holds forward point 0
    if gather == "local" or dx_loc is None:
        return grads, dx_loc, dh0, info
    dx = gather_rows(comm_w, first, dx_loc, T, None if gather == "all" else 0)
    return grads, dx, dh0, info
