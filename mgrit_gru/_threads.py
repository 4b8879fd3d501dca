"""One BLAS thread per MPI rank, unless the user chose otherwise.

Under ``mpiexec -n P`` every rank's NumPy starts its BLAS (OpenBLAS, MKL) with one thread per
core, so P ranks run P x cores threads on the cores and wait on each other (docs/cluster.md
gives the cost). The parallelism of this package under MPI is the time axis, one rank per core.

BLAS reads these variables once, when NumPy is imported: `limit_blas_threads` runs first thing in
``mgrit_gru/__init__.py``, so it takes effect for ``mgrit-gru`` and for scripts that import
``mgrit_gru`` before NumPy. This module must not import NumPy.
"""
from __future__ import annotations

import os

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# the number of ranks of this launch, as launchers export it: MPICH/Intel MPI (hydra) and srun
# with PMI, Open MPI, srun's job step (not SLURM_NTASKS: a batch script that runs one process
# has that too)
_RANK_COUNT_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def launched_ranks(env=None):
    """How many ranks the launcher started (1 outside a launcher or when it cannot tell)."""
    env = os.environ if env is None else env
    sizes = []
    for var in _RANK_COUNT_VARS:
        try:
            sizes.append(int(env.get(var, "")))
        except ValueError:                                   # absent or not a number
            pass
    return max(sizes, default=1)


def limit_blas_threads(env=None):
    """Set every BLAS thread variable to 1 when launched with more than one rank and none of
    them is set; return the variables set (a user's choice, even of one of them, is left
    alone: ``OMP_NUM_THREADS=4 mpiexec -n 2 ...`` runs 4 threads a rank)."""
    env = os.environ if env is None else env
    if launched_ranks(env) <= 1 or any(var in env for var in BLAS_THREAD_VARS):
        return {}
    chosen = {var: "1" for var in BLAS_THREAD_VARS}
    env.update(chosen)
    return chosen
