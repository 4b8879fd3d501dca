"""Deliberate failures under mpiexec; the job must end non-zero with the error text, never hang.

Usage: mpiexec -n P python failing.py MODE   (or python -m mpi4py failing.py MODE)

MODE
  solve    rank 1 raises inside an MGRIT solve (its 5th step call) while the others wait for its
           messages; MPIComm's abort-on-error hook must bring the job down.
  early    rank 1 raises before any solver exists; the script called abort_on_error() first.
  plain    rank 1 raises with no hook at all (run it under ``python -m mpi4py``).
  toomany  T = 8, cf = 4: two fine C-intervals, so more than 2 ranks are refused on every rank.
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
x = np.random.default_rng(0).normal(size=(T, 2, 3))
mg.mgrit_forward(params, x, comm=comm, levels=2, cf=4, max_iter=5, tol=0.0)
comm.Barrier()                     # the healthy ranks would wait here for the failed one
if comm.rank == 0:
    print("finished without an error", flush=True)
