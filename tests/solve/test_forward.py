"""The GRU forward pass by MGRIT (`mgrit_forward`) against the serial `gru_forward`, over a
small matrix of cells, depths and hierarchies; its input checks; and the rows of x an MPI rank
is given (`input_rows`, `TimeSlice`).

The solver's properties on linear problems are tested in tests/mgrit/test_cycle.py.
"""
import re

import numpy as np
import pytest
from _solver_cases import gru_case

from mgrit_gru import mgrit_forward


# ----------------------------------------------------------------------------------------------
# one level = the serial forward pass, exactly
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell, L", [("classic", 1), ("implicit", 2)])
def test_one_level_gru_equals_gru_forward_exactly(cell, L):
    params, x, h0, hs, _ = gru_case(50, cell, L)
    y, h_T, info = mgrit_forward(params, x, h0, cell=cell, levels=1)
    np.testing.assert_array_equal(y, hs[1:, L - 1])
    np.testing.assert_array_equal(h_T, hs[-1])


# ----------------------------------------------------------------------------------------------
# converges to gru_forward
# ----------------------------------------------------------------------------------------------
GRU_MATRIX = [  # cell, layers, T, cf, levels, coarse input
    ("classic", 1, 64, 2, 2, "inject"),
    ("implicit", 2, 64, 4, 3, "average"),
    ("classic", 2, 256, 4, 3, "inject"),
    ("implicit", 1, 256, 8, 2, "average"),
    ("classic", 1, 1024, 4, 5, "inject"),
    ("implicit", 2, 1024, 2, 5, "average"),
    ("classic", 1, 1024, 8, 3, "average"),
    ("implicit", 1, 512, 2, 4, "inject"),
]


@pytest.mark.parametrize("cell, L, T, cf, levels, coarse_input", GRU_MATRIX)
def test_gru_forward_converges_to_serial(cell, L, T, cf, levels, coarse_input):
    params, x, h0, hs, _ = gru_case(T, cell, L, B=2, I=3, H=4, seed=T + L)
    y, h_T, info = mgrit_forward(params, x, h0, cell=cell, levels=levels, cf=cf, relax="FCF",
                                 max_iter=60, tol=1e-11, coarse_input=coarse_input)
    assert info.converged and info.final_residual <= 1e-10, info.residual_history[-3:]
    assert y.shape == (T, 2, 4) and h_T.shape == (L, 2, 4)
    np.testing.assert_allclose(y, hs[1:, L - 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(h_T, hs[-1], rtol=0, atol=1e-9)


def test_gru_f_relaxation():
    """F-relaxation converges with the implicit fine cell and with the classic one on two
    levels; with the classic cell on many levels it can stall, and then says so."""
    params, x, h0, hs, _ = gru_case(128, "implicit", 1)
    y, h_T, info = mgrit_forward(params, x, h0, cell="implicit", levels=4, cf=2, relax="F",
                                 max_iter=60, tol=1e-11)
    assert info.converged
    np.testing.assert_allclose(y, hs[1:, 0], atol=1e-9)
    params, x, h0, hs, _ = gru_case(64, "classic", 1)
    y, h_T, info = mgrit_forward(params, x, h0, cell="classic", levels=2, cf=2, relax="F",
                                 max_iter=60, tol=1e-11)
    assert info.converged
    np.testing.assert_allclose(y, hs[1:, 0], atol=1e-9)
    params, x, h0, hs, _ = gru_case(256, "classic", 1)
    y, h_T, info = mgrit_forward(params, x, h0, cell="classic", levels=5, cf=2, relax="F",
                                 max_iter=10, tol=1e-11)
    # here it does not converge (the residual grows): reported, not hidden
    assert not info.converged and info.iterations == 10 and len(info.residual_history) == 10
    assert info.final_residual > info.residual_history[1] > 1e-11
    assert np.max(np.abs(y - hs[1:, 0])) > 1e-3             # and the answer is indeed not serial


def test_gru_float32_stays_float32():
    params, x, h0, hs, _ = gru_case(256, "classic", 2, dtype=np.float32)
    y, h_T, info = mgrit_forward(params, x, h0, cell="classic", levels=3, cf=4, max_iter=30,
                                 tol=1e-5)
    assert y.dtype == np.float32 and h_T.dtype == np.float32
    assert info.solver.U[0].dtype == np.float32              # the iterate itself, not a cast
    assert info.converged and info.final_residual <= 1e-5
    np.testing.assert_allclose(y, hs[1:, 1], atol=2e-5)
    np.testing.assert_allclose(h_T, hs[-1], atol=2e-5)


def test_gru_skip_and_no_skip_agree():
    params, x, h0, hs, _ = gru_case(128, "classic", 1)
    out = [mgrit_forward(params, x, h0, levels=3, cf=4, skip=s, max_iter=40, tol=1e-11)
           for s in (True, False)]
    for y, h_T, info in out:
        assert info.converged
        np.testing.assert_allclose(y, hs[1:, 0], atol=1e-9)
    assert out[0][2].initial_residual is None and out[1][2].initial_residual is not None


# ----------------------------------------------------------------------------------------------
# bad input: a clear ValueError
# ----------------------------------------------------------------------------------------------
def test_bad_gru_inputs_raise_value_error():
    params, x, h0, _, _ = gru_case(32)
    x_nan, h0_nan = x.copy(), h0.copy()
    x_nan[7, 1, 2] = np.nan
    h0_nan[0, 0, 1] = np.inf
    with pytest.raises(ValueError, match="x contains NaN"):
        mgrit_forward(params, x_nan, h0)
    with pytest.raises(ValueError, match="h0 contains NaN"):
        mgrit_forward(params, x, h0_nan)
    with pytest.raises(ValueError, match="coarse_input"):
        mgrit_forward(params, x, h0, coarse_input="mean")
    with pytest.raises(ValueError, match="cell"):
        mgrit_forward(params, x, h0, cell="lstm")


# ----------------------------------------------------------------------------------------------
# the rows of x a rank needs, and a rank's slice of them
# ----------------------------------------------------------------------------------------------
def test_input_rows_for_a_planned_rank_without_mpi():
    """Rows of x each of P ranks needs: its own steps plus a halo, together covering all T."""
    from mgrit_gru import input_rows
    T, P = 4096, 3
    rows = [input_rows(T, levels=3, cf=4, rank=p, size=P) for p in range(P)]
    assert rows[0][0] == 0 and rows[-1][1] == T
    assert all(rows[p][1] >= rows[p + 1][0] for p in range(P - 1))   # no gap between ranks
    assert input_rows(T, levels=3, cf=4) == (0, T)                    # one process: all of x
    with pytest.raises(ValueError, match="rank and size together"):
        input_rows(T, rank=0)
    with pytest.raises(ValueError, match="rank must lie in"):
        input_rows(T, rank=3, size=3)


@pytest.mark.parametrize("start, n_steps, message", [
    (0.5, 16, "TimeSlice.start must be an integer >= 0, got 0.5"),
    (-1, 16, "TimeSlice.start must be an integer >= 0, got -1"),
    (0, "16", "TimeSlice.n_steps must be an integer >= 1, got '16'"),
    (True, 16, "TimeSlice.start must be an integer >= 0, got True"),
    (10, 12, "TimeSlice holds steps 10 .. 13, past the sequence's n_steps = 12")])
def test_a_time_slice_checks_its_fields(start, n_steps, message):
    """int() used to turn start 0.5 into 0 and "16" into 16; rows past n_steps were ignored."""
    from mgrit_gru import TimeSlice
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        TimeSlice(np.zeros((4, 1, 3)), start, n_steps)
    assert TimeSlice(np.zeros((4, 1, 3)), np.int64(12), 16).start == 12   # NumPy ints: fine
