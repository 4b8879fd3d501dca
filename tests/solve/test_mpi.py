"""The time-parallel solver under a real MPI launcher: ``mpiexec -n k python script.py``.

The scripts live in ``tests/solve/mpi_scripts``; rank 0 prints one JSON line, so the output is never
interleaved. Every subprocess has a timeout: a hang is a failure, not a stuck test run. Skipped
cleanly where no ``mpiexec`` (or mpi4py) is installed.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "mpi_scripts"
TOL = 1e-12


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    return shutil.which("mpiexec")


MPIEXEC = _mpiexec()
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:                                            # pragma: no cover
    HAVE_MPI4PY = False

pytestmark = pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                                reason="needs mpiexec and mpi4py (pip install mpi4py mpich)")


def mpirun(n, *args, timeout=60, module=False):
    """Run ``mpiexec -n n python [-m mpi4py] args...``; a timeout fails the test (a hang)."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable] + (["-m", "mpi4py"] if module else []) + \
        [str(a) for a in args]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=SCRIPTS)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout} s:\n{e.stdout}\n{e.stderr}")
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_any_rank_count_reproduces_the_serial_solver(ranks):
    """Residual history and states equal the serial solver's, iteration by iteration."""
    proc, _ = mpirun(ranks, "invariance.py")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"rank 0 alone prints one line, got:\n{proc.stdout}"
    out = json.loads(lines[0])
    assert out["size"] == ranks
    assert len(out["cases"]) >= 9
    for case in out["cases"]:
        assert not case["length_mismatch"], case
        assert case["n_hist"] == 5 and case["iterations"] == 4, case
        for key in ("hist_rel", "iterate_rel", "y_rel", "hT_rel"):
            assert case[key] <= TOL, (ranks, case["case"], key, case[key])
    if ranks == 4:                              # the case built for it really has an empty rank
        case = next(c for c in out["cases"] if c["case"] == "no-coarse-point-4lev")
        assert case["ranks_with_coarsest_points"] < 4


def test_a_non_finite_residual_on_some_ranks_stops_every_rank():
    """NaN on ranks 1-2 only: the max-norm reduction must not drop it (MPI's MAX does)."""
    proc, _ = mpirun(3, "nan_residual.py")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [c["norm"] for c in out["cases"]] == ["2", "max"]
    for case in out["cases"]:
        assert all("residual became" in r for r in case["raised"]), case


@pytest.mark.parametrize("mode, module", [("solve", False), ("early", False), ("plain", True)])
def test_an_exception_on_one_rank_ends_the_job(mode, module):
    """Rank 1 raises (inside a solve, before it, without any hook under -m mpi4py): the job
    exits non-zero within seconds with the error text; the other ranks do not hang."""
    proc, elapsed = mpirun(3, "failing.py", mode, timeout=30, module=module)
    assert proc.returncode != 0
    assert "deliberate failure on rank 1" in proc.stdout + proc.stderr
    assert "finished without an error" not in proc.stdout
    assert elapsed < 20


@pytest.mark.parametrize("ranks", [2, 3])
def test_one_level_gives_every_rank_steps_even_with_t_equal_p(ranks):
    """Sequential stepping split over ranks: rank 0 used to own point 0 alone (no steps) and
    failed at T = P; now the steps are dealt out and the result is the one-process one."""
    proc, _ = mpirun(ranks, "one_level.py")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for case in out["cases"]:
        assert case["fewest_steps"] >= 1 and case["err"] <= TOL, case


@pytest.mark.parametrize("mode, message", [
    ("params", "params['weight_hh_l0'] contains NaN or Inf"),
    ("levels", "the ranks disagree on levels (rank 0: 2, rank 1: 3, rank 2: 2): every rank "
               "must pass the same"),
    ("dy", "the ranks disagree on dy_given (rank 0: True, rank 1: False, rank 2: False): "
           "every rank must pass the same; every rank needs dy"),
    ("input_grad", "the ranks disagree on input_grad (rank 0: True, rank 1: False, rank 2: True)"
                   ": every rank must pass the same")])
def test_arguments_that_differ_between_ranks_end_the_job(mode, message):
    """A bad argument on one rank, options or a dy that differ between ranks: the job ends with
    the reason (it hung, or with dy on rank 0 alone gave wrong gradients without an error)."""
    proc, elapsed = mpirun(3, "failing.py", mode, timeout=30)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stderr
    assert "finished without an error" not in proc.stdout
    assert elapsed < 20


def test_more_ranks_than_fine_intervals_is_refused():
    proc, elapsed = mpirun(3, "failing.py", "toomany", timeout=30)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "3 ranks but only 2 fine C-intervals" in text and "use at most 2 ranks" in text
    assert elapsed < 20


def test_cluster_page_script_runs_on_two_ranks_as_the_serial_solver(tmp_path):
    """docs/cluster.md's solve_mpi.py, shrunk (T, H, B), runs under mpiexec -n 2 and prints
    the serial solver's residual history (its halo rows agree between the ranks)."""
    import ast
    import re

    import numpy as np

    import mgrit_gru as mg
    page = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S)
                if b.startswith("# solve_mpi.py"))
    for big, small in (("T = 16384", "T = 512"), ("init_gru(256, 256, 1", "init_gru(16, 16, 1"),
                       ("(32, 256)", "(4, 16)")):
        assert big in code, f"docs/cluster.md changed: {big!r} not in its script"
        code = code.replace(big, small)
    (tmp_path / "solve_mpi.py").write_text(code)
    proc, _ = mpirun(2, tmp_path / "solve_mpi.py")
    assert proc.returncode == 0, proc.stderr
    history = ast.literal_eval(re.match(r"(\[.*?\])", proc.stdout)[1])

    x = np.stack([np.random.default_rng(t).standard_normal((4, 16)) for t in range(512)])
    info = mg.mgrit_forward(mg.init_gru(16, 16, 1, seed=0), x, levels=3, cf=4, relax="FCF",
                            max_iter=2)[2]
    assert len(history) == 2
    np.testing.assert_allclose(history, info.residual_history, rtol=1e-10)
