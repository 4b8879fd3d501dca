"""The backward pass by MGRIT under a real MPI launcher: 1, 2, 3 and 4 ranks = serial.

One ``mpiexec -n P python backward_invariance.py`` per rank count runs every case (uneven T,
1-2 layers, both cells, F and FCF, skip on/off, V and F cycles, a rank without coarse points,
dx gathered everywhere / on the root / kept local with a TimeSlice dy) distributed and serially,
with a fixed number of cycles, and rank 0 prints one JSON line with the worst differences. The
launcher helper (timeouts: a hang fails the test) is the forward MPI tests'.
"""
import json

import pytest

from test_mpi import HAVE_MPI4PY, MPIEXEC, mpirun

TOL = 1e-12

pytestmark = pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                                reason="needs mpiexec and mpi4py (pip install mpi4py mpich)")


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_any_rank_count_gives_the_serial_gradients(ranks):
    """Backward residual history (cycle by cycle), every parameter gradient, dx and dh0 equal the
    serial solve's to 1e-12 relative; a backward on another communicator is refused."""
    proc, _ = mpirun(ranks, "backward_invariance.py")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"rank 0 alone prints one line, got:\n{proc.stdout}"
    out = json.loads(lines[0])
    assert out["size"] == ranks
    assert out["comm_mismatch_refused"]
    assert len(out["cases"]) >= 8
    for case in out["cases"]:
        assert not case["length_mismatch"] and not case["grads_differ_across_ranks"], case
        assert case["n_hist"] == 5 and case["iterations"] == 4, case
        assert case["final_residual"] > 0, case                # inexact solves are compared
        for key in ("hist_rel", "grads_rel", "dx_rel", "dh0_rel"):
            assert case[key] <= TOL, (ranks, case["case"], key, case[key])
    if ranks == 4:                  # the case built for it really has a rank without coarse points
        case = next(c for c in out["cases"] if c["case"] == "no-coarse-point-4lev")
        assert case["bwd_ranks_with_coarsest_points"] < 4
        assert case["fwd_ranks_with_coarsest_points"] < 4


def test_bench_train_step_runs_distributed():
    """``mpiexec -n 2 mgrit-gru bench --what train-step``: rank 0 alone prints the four JSON
    records; the MGRIT ones ran on 2 ranks, and the converged one matches BPTT."""
    proc, _ = mpirun(2, "-m", "mgrit_gru.tools.cli", "bench", "--what", "train-step", "--hidden", "6",
                     "--batch", "2", "--seq-len", "64", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [r["method"] for r in recs] == ["bptt", "mgrit", "mgrit-no-bwd-skip", "mgrit-converged"]
    assert all(r["ranks"] == 2 and r["train_step_s"] > 0 for r in recs)
    assert recs[3]["bwd_converged"] and recs[3]["grad_error"] < 1e-3
    assert recs[2]["grad_error"] < recs[1]["grad_error"]     # the backward without skip
