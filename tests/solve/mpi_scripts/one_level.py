"""levels=1 (sequential stepping) on P ranks, T = P and T = P + 1: every rank owns steps; y, h_T,
grads, dx and dh0 equal the one-process run. Rank 0 prints one JSON line."""
import json

import numpy as np
from mpi4py import MPI

import mgrit_gru as mg
from mgrit_gru.mgrit import abort_on_error

abort_on_error()
comm = MPI.COMM_WORLD
out = {"size": comm.size, "cases": []}
for T in (comm.size, comm.size + 1):
    params = mg.init_gru(3, 4, 2, seed=0)
    rng = np.random.default_rng(T)
    x, dy = rng.normal(size=(T, 2, 3)), rng.normal(size=(T, 2, 4))
    y, h_T, f = mg.mgrit_forward(params, x, comm=comm, levels=1)
    g, dx, dh0, _ = mg.mgrit_backward(params, f, dy, comm=comm, levels=1)
    y1, h1, f1 = mg.mgrit_forward(params, x, levels=1)
    g1, dx1, dh01, _ = mg.mgrit_backward(params, f1, dy, levels=1)
    err = max([np.abs(y - y1).max(), np.abs(h_T - h1).max(), np.abs(dx - dx1).max(),
               np.abs(dh0 - dh01).max()] + [np.abs(g[k] - g1[k]).max() for k in g])
    steps = f.solver.local_range[1] - max(f.solver.local_range[0], 1) + 1
    out["cases"].append({"T": T, "err": comm.allreduce(float(err), op=MPI.MAX),
                         "fewest_steps": comm.allreduce(steps, op=MPI.MIN)})
if comm.rank == 0:
    print(json.dumps(out), flush=True)
