"""Run a batch of MGRIT forward solves on this communicator and compare them with the serial solver.

Every rank solves each case twice: distributed (``comm=MPI.COMM_WORLD``) and serially (``comm=None``,
on the full input), and compares, iteration by iteration, the residual history and its own slice of
the fine iterate (``record_iterates``), then y and h_T. The worst relative differences are reduced
to rank 0, which prints ONE JSON line: {"size": P, "cases": [{...}, ...]}.

Usage: mpiexec -n P python invariance.py
"""
import json
import sys

import numpy as np
from mpi4py import MPI

import mgrit_gru as mg
from mgrit_gru.mgrit import abort_on_error

abort_on_error()
comm = MPI.COMM_WORLD

# (name, T, layers, cell, levels, cf, relax, skip, extra options); T is deliberately not a
# multiple of P*cf; "no-coarse-point": on 4 ranks, rank 1 owns fine 4..7 and no level-3 point 0, 8, 16
CASES = [
    ("classic-1L-FCF-skip", 37, 1, "classic", 3, 2, "FCF", True, {}),
    ("classic-2L-F-noskip", 50, 2, "classic", 2, 4, "F", False, {}),
    ("implicit-1L-F-skip", 45, 1, "implicit", 3, 2, "F", True, {"dt": 0.5}),
    ("implicit-2L-FCF-noskip", 41, 2, "implicit", 3, 3, "FCF", False, {}),
    ("no-coarse-point-4lev", 16, 1, "classic", 4, 2, "FCF", True, {}),
    ("fcycle-maxnorm-average", 53, 2, "classic", 3, 2, "F", True,
     {"cycle": "F", "norm": "max", "coarse_input": "average"}),
    ("gather-root", 30, 1, "classic", 3, 2, "FCF", False, {"gather": "root"}),
    ("gather-local", 30, 2, "implicit", 2, 4, "FCF", True, {"gather": "local"}),
    ("timeslice", 43, 2, "classic", 3, 2, "FCF", True, {"timeslice": True}),
]
I, H, B, ITERS = 3, 5, 2, 4


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    return float(np.max(np.abs(a - b)) / scale) if a.size else 0.0


def run_case(name, T, layers, cell, levels, cf, relax, skip, extra):
    extra = dict(extra)
    gather = extra.pop("gather", "all")
    timeslice = extra.pop("timeslice", False)
    params = mg.init_gru(I, H, layers, seed=1, dtype=np.float64)
    x = np.random.default_rng(T).normal(size=(T, B, I))
    h0 = np.random.default_rng(T + 1).normal(size=(layers, B, H)) * 0.5
    opts = dict(cell=cell, levels=levels, cf=cf, relax=relax, skip=skip, max_iter=ITERS, tol=0.0,
                record_iterates=True, **extra)
    xs = x
    if timeslice:                                         # this rank holds only its rows of x
        a, b = mg.input_rows(T, comm, levels=levels, cf=cf)
        assert (a, b) == mg.input_rows(T, levels=levels, cf=cf, rank=comm.rank, size=comm.size)
        xs = mg.TimeSlice(x[a:b].copy(), a, T)
    y, hT, info = mg.mgrit_forward(params, xs, h0, comm=comm, gather=gather, **opts)
    ys, hTs, infos = mg.mgrit_forward(params, x, h0, **opts)
    lo, hi = info.solver.local_range
    it_err = max((rel(u, us[lo: hi + 1]) for u, us in zip(info.iterates, infos.iterates)),
                 default=0.0)
    hist = [info.initial_residual or 0.0] + list(info.residual_history)
    hists = [infos.initial_residual or 0.0] + list(infos.residual_history)
    hist_err = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(hist, hists))
    if gather == "local":
        r0, r1 = info.y_rows
        y_err = rel(y, ys[r0:r1])
    elif gather == "root" and comm.rank != 0:
        y_err = 0.0 if y is None else 1.0                 # must be None off the root
    else:
        y_err = rel(y, ys)
    errs = np.array([hist_err, it_err, y_err, rel(hT, hTs),
                     float(len(info.iterates) != len(infos.iterates)
                           or len(hist) != len(hists))])
    worst = np.empty_like(errs)
    comm.Allreduce(errs, worst, op=MPI.MAX)
    return {"case": name, "T": T, "hist_rel": float(worst[0]), "iterate_rel": float(worst[1]),
            "y_rel": float(worst[2]), "hT_rel": float(worst[3]), "length_mismatch": bool(worst[4]),
            "iterations": info.iterations, "n_hist": len(hist),
            "ranks_with_coarsest_points": comm.allreduce(int(not info.solver.levels[-1].empty))}


cases = [run_case(*c) for c in CASES]
if comm.rank == 0:
    print(json.dumps({"size": comm.size, "cases": cases}), flush=True)
sys.exit(0)
