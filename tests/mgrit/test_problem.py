"""The problem side of the solver (`mgrit_gru.mgrit.problem`): the NumPy vector operations,
also on the complex states of a `Dahlquist` problem."""
import numpy as np
import pytest
from _solver_cases import c_point_residuals, linear_rnn, solve

from mgrit_gru.mgrit import Dahlquist


def test_scratch_is_poisoned_and_diff_norm_is_the_norm_of_the_difference():
    """NumpyVectors.empty is NaN-filled (a read before the write would show in every result),
    and diff_norm(a, b) is sq_norm / max_abs of a - b."""
    vec = linear_rnn(8).vec
    assert np.isnan(vec.empty(3)).all() and vec.empty(3).shape == (3, 3)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 3))
    assert vec.diff_norm(a, b, "2") == pytest.approx(np.sum((a - b) ** 2), rel=1e-15)
    assert vec.diff_norm(a, b, "max") == np.max(np.abs(a - b))


def test_complex_dahlquist_two_norm():
    """Bug fixed in NumpyVectors.sq_norm: complex states crashed the 2-norm residual."""
    problem = Dahlquist(np.array([0.9 + 0.3j, 0.5 - 0.1j]), 64)
    u, info = solve(problem, levels=3, cf=4, max_iter=30, tol=1e-12)
    assert info.converged
    np.testing.assert_allclose(u, problem.exact(), atol=1e-11)
    r = c_point_residuals(problem, u, 4)
    assert info.final_residual == pytest.approx(np.linalg.norm(r), rel=1e-10, abs=1e-16)
