"""One BLAS thread per MPI rank unless the user set the count (mgrit_gru/_threads.py)."""
import os
import subprocess
import sys

import pytest

from mgrit_gru._threads import BLAS_THREAD_VARS, launched_ranks, limit_blas_threads


@pytest.mark.parametrize("env, ranks", [
    ({}, 1),
    ({"PMI_SIZE": "4", "PMI_RANK": "2"}, 4),                 # MPICH / Intel MPI (hydra)
    ({"OMPI_COMM_WORLD_SIZE": "3"}, 3),                      # Open MPI
    ({"SLURM_STEP_NUM_TASKS": "8"}, 8),                      # srun
    ({"SLURM_NTASKS": "8"}, 1),                              # a batch script: one process
    ({"PMI_SIZE": "x"}, 1),
])
def test_launched_ranks(env, ranks):
    assert launched_ranks(env) == ranks


def test_limit_sets_every_variable_only_under_several_ranks_and_only_if_none_is_set():
    env = {"PMI_SIZE": "2"}
    assert limit_blas_threads(env) == {v: "1" for v in BLAS_THREAD_VARS}
    assert all(env[v] == "1" for v in BLAS_THREAD_VARS)
    env = {"PMI_SIZE": "2", "OMP_NUM_THREADS": "4"}          # the user's choice stands
    assert limit_blas_threads(env) == {} and env == {"PMI_SIZE": "2", "OMP_NUM_THREADS": "4"}
    env = {"PMI_SIZE": "1"}                                  # mpiexec -n 1: all cores to BLAS
    assert limit_blas_threads(env) == {} and env == {"PMI_SIZE": "1"}


def _blas_threads_when_numpy_loads(extra_env):
    """OMP_NUM_THREADS as it was when ``import mgrit_gru`` first imported NumPy (BLAS reads it
    then), in a fresh interpreter."""
    code = (
        "import os, sys\n"
        "seen = {}\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy' and 'numpy' not in seen:\n"
        "            seen['numpy'] = os.environ.get('OMP_NUM_THREADS', 'unset')\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import mgrit_gru\n"
        "print(seen['numpy'])\n")
    env = {k: v for k, v in os.environ.items()
           if k not in BLAS_THREAD_VARS and k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                                                      "SLURM_STEP_NUM_TASKS")}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def test_import_sets_one_thread_before_numpy_loads_under_mpiexec():
    assert _blas_threads_when_numpy_loads({"PMI_SIZE": "2"}) == "1"
    assert _blas_threads_when_numpy_loads({"PMI_SIZE": "2", "OMP_NUM_THREADS": "3"}) == "3"
    assert _blas_threads_when_numpy_loads({}) == "unset"     # one process: BLAS as it is
