"""Deliberate failures under mpiexec; the job must end non-zero with the error text, never hang.

Usage: mpiexec -n P python failing.py MODE   (or python -m mpi4py failing.py MODE)

MODE
  solve    rank 1 raises inside an MGRIT solve (its 5th step call) while the others wait for its
           messages; MPIComm's abort-on-error hook must bring the job down.
  early    rank 1 raises before any solver exists; the script called abort_on_error() first.
  plain    rank 1 raises with no hook at all (run it under ``python -m mpi4py``).
  toomany  T = 8, cf = 4: two fine C-intervals, so more than 2 ranks are refused on every rank.
  params   rank 1 alone has a NaN weight: refused by the argument checks, the first thing
           mgrit_forward does after wrapping the communicator (so its hook ends the job).
  levels   rank 1 asks for 3 levels, the others for 2: every rank refuses before any message.
  dy       gather="root", then dy on rank 0 alone (where y is): every rank refuses the backward
           pass (the others would add a zero loss on their rows: wrong gradients, no error).
  input_grad  rank 1 asks the backward for no dx, the others for dx gathered everywhere: every
           rank refuses (rank 1 would return while the others wait for it in the gather).
"""
import sys

import numpy as np
from mpi4py import MPI

import mgrit_gru as mg
import mgrit_gru.problems as problems
from mgrit_gru.mgrit import abort_on_error

comm = MPI.COMM_WORLD
mode = sys.argv[1]

if mode == "early":
    abort_on_error()
if mode in ("early", "plain") and comm.rank == 1:
    raise RuntimeError(f"deliberate failure on rank 1 ({mode})")
if mode == "solve":
    calls, original = [0], problems.GRUForwardProblem.step

    def failing_step(self, *args, **kwargs):
        calls[0] += 1
        if comm.rank == 1 and calls[0] == 5:
            raise RuntimeError("deliberate failure on rank 1 inside the solve")
        return original(self, *args, **kwargs)

    problems.GRUForwardProblem.step = failing_step

T = 8 if mode == "toomany" else 64
params = mg.init_gru(3, 5, 1, seed=1, dtype=np.float64)
if mode == "params" and comm.rank == 1:
    params["weight_hh_l0"][0, 0] = np.nan
x = np.random.default_rng(0).normal(size=(T, 2, 3))
levels = 3 if mode == "levels" and comm.rank == 1 else 2
y, h_T, fwd = mg.mgrit_forward(params, x, comm=comm, levels=levels, cf=4, max_iter=5, tol=0.0,
                               gather="root" if mode == "dy" else "all")
if mode == "dy":
    mg.mgrit_backward(params, fwd, dy=np.ones_like(y) if comm.rank == 0 else None, levels=2,
                      cf=4, gather="root")
if mode == "input_grad":
    mg.mgrit_backward(params, fwd, dy=np.ones_like(y), levels=2, cf=4, gather="all",
                      input_grad=comm.rank != 1)
comm.Barrier()                     # the healthy ranks would wait here for the failed one
if comm.rank == 0:
    print("finished without an error", flush=True)
