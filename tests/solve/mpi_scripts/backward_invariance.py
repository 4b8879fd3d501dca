"""Backward MGRIT solves on this communicator against the serial solver, case by case.

Every rank runs each case twice: distributed (``comm=MPI.COMM_WORLD``) and serially
(``comm=None``, full arrays), forward then backward with the same fixed number of cycles
(``tol=0``), and compares the backward residual history cycle by cycle, the parameter gradients,
dx (as gathered) and dh0. The worst relative differences are reduced to rank 0, which prints ONE
JSON line: {"size": P, "cases": [{...}, ...], "comm_mismatch_refused": bool}.

Usage: mpiexec -n P python backward_invariance.py
"""
import hashlib
import json
import sys

import numpy as np
from mpi4py import MPI

import mgrit_gru as mg
from mgrit_gru.mgrit import abort_on_error

abort_on_error()
comm = MPI.COMM_WORLD

# (name, T, layers, cell, levels, cf, relax, skip, loss, extra); T is not a multiple of P * cf.
# "no-coarse-point": on 4 ranks a rank owns no point of the coarsest level (forward and backward).
CASES = [
    ("classic-1L-FCF-skip-both", 37, 1, "classic", 3, 2, "FCF", True, "both", {}),
    ("classic-2L-F-noskip-outputs", 50, 2, "classic", 2, 4, "F", False, "outputs", {}),
    ("implicit-1L-F-skip-last", 45, 1, "implicit", 3, 2, "F", True, "last", {"dt": 0.5}),
    ("implicit-2L-FCF-noskip-both", 41, 2, "implicit", 3, 3, "FCF", False, "both", {}),
    ("no-coarse-point-4lev", 16, 1, "classic", 4, 2, "FCF", True, "both", {}),
    ("fcycle-maxnorm", 53, 2, "classic", 3, 2, "F", True, "outputs",
     {"cycle": "F", "norm": "max"}),
    ("gather-root", 30, 1, "classic", 3, 2, "FCF", False, "both", {"gather": "root"}),
    ("gather-local-dy-timeslice", 43, 2, "implicit", 3, 2, "FCF", True, "outputs",
     {"gather": "local", "timeslice": True}),
    ("no-input-grad-gather-all", 33, 2, "classic", 3, 2, "FCF", True, "both",
     {"input_grad": False}),                              # training's call: no dx anywhere
]
I, H, B, ITERS = 3, 5, 2, 4


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    return float(np.max(np.abs(a - b)) / scale) if a.size else 0.0


def run_case(name, T, layers, cell, levels, cf, relax, skip, loss, extra):
    extra = dict(extra)
    gather = extra.pop("gather", "all")
    timeslice = extra.pop("timeslice", False)
    input_grad = extra.pop("input_grad", True)
    params = mg.init_gru(I, H, layers, seed=2, dtype=np.float64)
    rng = np.random.default_rng(T)
    x = rng.normal(size=(T, B, I))
    h0 = rng.normal(size=(layers, B, H)) * 0.5
    dy = rng.normal(size=(T, B, H)) if loss in ("outputs", "both") else None
    dh_T = rng.normal(size=(layers, B, H)) if loss in ("last", "both") else None
    opts = dict(levels=levels, cf=cf, relax=relax, skip=skip, max_iter=ITERS, tol=0.0)
    fopts = dict(opts, cell=cell, **{k: v for k, v in extra.items() if k == "dt"})
    bopts = dict(opts, **{k: v for k, v in extra.items() if k != "dt"})
    fopts.update({k: v for k, v in extra.items() if k != "dt"})
    xs, dys = x, dy
    if timeslice:                                         # this rank holds only its rows
        a, b = mg.input_rows(T, comm, levels=levels, cf=cf)
        xs = mg.TimeSlice(x[a:b].copy(), a, T)
    y, hT, fwd = mg.mgrit_forward(params, xs, h0, comm=comm, gather=gather, **fopts)
    if timeslice and dy is not None:                      # dy rows lo - 2 .. hi - 1 (docstring)
        a, b = fwd.dy_rows
        assert (a, b) == (max(fwd.y_rows[0] - 1, 0), fwd.y_rows[1])
        if a > 0:                                         # one row short is refused, not wrapped
            try:
                mg.mgrit_backward(params, fwd, mg.TimeSlice(dy[a + 1:b].copy(), a + 1, T), dh_T,
                                  comm=comm, gather=gather, **bopts)
            except ValueError as e:
                assert "adjoint needs" in str(e), e
            else:
                raise AssertionError("a dy TimeSlice one row short was accepted")
        dys = mg.TimeSlice(dy[a:b].copy(), a, T)
    grads, dx, dh0, bwd = mg.mgrit_backward(params, fwd, dys, dh_T, comm=comm, gather=gather,
                                            input_grad=input_grad, **bopts)
    _, _, fwd_s = mg.mgrit_forward(params, x, h0, **dict(fopts, gather="all"))
    grads_s, dx_s, dh0_s, bwd_s = mg.mgrit_backward(params, fwd_s, dy, dh_T,
                                                    **dict(bopts, gather="all"))
    hist = [bwd.initial_residual or 0.0] + list(bwd.residual_history)
    hist_s = [bwd_s.initial_residual or 0.0] + list(bwd_s.residual_history)
    hist_err = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(hist, hist_s))
    if not input_grad:
        dx_err = 0.0 if dx is None else 1.0               # must be None on every rank
    elif gather == "local":
        r0, r1 = bwd.dx_rows
        dx_err = rel(dx, dx_s[r0:r1])
    elif gather == "root" and comm.rank != 0:
        dx_err = 0.0 if dx is None else 1.0               # must be None off the root
    else:
        dx_err = rel(dx, dx_s)
    g_err = max(rel(grads[k], grads_s[k]) for k in grads_s)
    # every rank must hold the same bits (each takes an optimizer step with them)
    g_bytes = b"".join(np.ascontiguousarray(grads[k]).tobytes() for k in sorted(grads))
    g_same = len(set(comm.allgather(hashlib.sha256(g_bytes).hexdigest()))) == 1
    errs = np.array([hist_err, g_err, dx_err, rel(dh0, dh0_s),
                     float(len(hist) != len(hist_s) or set(grads) != set(grads_s)),
                     float(not g_same)])
    worst = np.empty_like(errs)
    comm.Allreduce(errs, worst, op=MPI.MAX)
    return {"case": name, "T": T, "hist_rel": float(worst[0]), "grads_rel": float(worst[1]),
            "dx_rel": float(worst[2]), "dh0_rel": float(worst[3]),
            "length_mismatch": bool(worst[4]), "grads_differ_across_ranks": bool(worst[5]),
            "iterations": bwd.iterations, "n_hist": len(hist),
            "final_residual": bwd.final_residual,
            "fwd_ranks_with_coarsest_points": comm.allreduce(
                int(not fwd.solver.levels[-1].empty)),
            "bwd_ranks_with_coarsest_points": comm.allreduce(
                int(not bwd.solver.levels[-1].empty))}


def comm_mismatch_refused():
    """A backward on another communicator than the forward's is a ValueError (size > 1)."""
    if comm.size == 1:
        return True
    params = mg.init_gru(I, H, 1, seed=2)
    x = np.random.default_rng(0).normal(size=(24, B, I))
    _, _, fwd = mg.mgrit_forward(params, x, comm=comm, cf=2, max_iter=2)
    try:
        mg.mgrit_backward(params, fwd, dh_T=np.ones((1, B, H)), comm=MPI.COMM_SELF)
    except ValueError as e:
        return "comm must be the communicator" in str(e)
    return False


cases = [run_case(*c) for c in CASES]
refused = comm.allreduce(int(comm_mismatch_refused()), op=MPI.MIN) == 1
if comm.rank == 0:
    print(json.dumps({"size": comm.size, "cases": cases, "comm_mismatch_refused": refused}),
          flush=True)
sys.exit(0)
