"""A residual that overflows on the later ranks only (Dahlquist with lambda = 1e40) must stop
every rank with MGRITDivergedError under both norms: MPI's MAX compares, and a NaN compared is
dropped, so the solver reduces inf in its place. Rank 0 prints one JSON line."""
import json

import numpy as np
from mpi4py import MPI

from mgrit_gru.mgrit import MGRIT, Dahlquist, MGRITDivergedError

comm = MPI.COMM_WORLD
out = {"size": comm.size, "cases": []}
np.seterr(all="ignore")
for norm in ("2", "max"):
    problem = Dahlquist(np.array([1e40]), 24, coarse="ideal")   # u_t = 1e40^t: inf, nan
    try:
        MGRIT(problem, levels=2, cf=4, relax="F", skip=False, max_iter=3, tol=0.0, norm=norm,
              comm=comm, divergence_factor=np.inf).solve()
        raised = ""
    except MGRITDivergedError as e:
        raised = str(e)
    out["cases"].append({"norm": norm, "raised": comm.allgather(raised)})
if comm.rank == 0:
    print(json.dumps(out), flush=True)
