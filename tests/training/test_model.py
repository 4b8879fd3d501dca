"""The classifier (`mgrit_gru.training.model`): its parameters, one forward-backward pass by the
serial and the MGRIT solver, and the solver options it takes; on both backends."""
import numpy as np
import pytest
from _cuda_solve_helpers import close

from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier, split_params


def test_flat_params_have_gru_and_head_names():
    p = init_classifier(3, 5, 2, 4, seed=0)
    gru, head = split_params(p)
    assert set(head) == {"weight_out", "bias_out"} and head["weight_out"].shape == (4, 5)
    assert "weight_ih_l1" in gru and gru["weight_hh_l0"] is p["weight_hh_l0"]   # views


def test_backward_skip_is_its_own_option_and_costs_accuracy_at_one_iteration():
    """At the paper's budget (2 forward / 1 backward cycle) the backward solve with skip is a
    coarse solve plus interpolation; without skip (bwd_skip=False) it also relaxes on the fine
    grid: the gradient is much closer to BPTT's (docs/theory/backward.md, "Inexact solves")."""
    rng = np.random.default_rng(3)
    T, B, I, H, C = 64, 4, 3, 6, 3
    x, y = rng.standard_normal((T, B, I)), rng.integers(0, C, B)
    p = init_classifier(I, H, 1, C, seed=2)
    ref = forward_backward(p, x, y, SolverOptions(solver="serial")).grads

    def err(**kw):
        g = forward_backward(p, x, y, SolverOptions(levels=3, cf=4, tol=0.0, **kw)).grads
        return (np.sqrt(sum(np.sum((g[k] - ref[k]) ** 2) for k in ref))
                / np.sqrt(sum(np.sum(ref[k] ** 2) for k in ref)))

    with_skip, no_bwd_skip = err(), err(bwd_skip=False)
    assert err(bwd_skip=True) == with_skip                   # None means "as skip"
    assert no_bwd_skip < 0.3 * with_skip, (no_bwd_skip, with_skip)
    assert SolverOptions(skip=False).backward_options.skip is False
    assert SolverOptions(bwd_skip=False).forward_options.skip is True   # forward keeps skip
    with pytest.raises(ValueError, match="bwd_skip must be"):
        SolverOptions(bwd_skip="no")
    with pytest.raises(ValueError, match="skip must be True or False"):
        SolverOptions(skip="False")                          # bool("False") is True


def test_serial_gradients_match_finite_differences_of_the_loss():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 2, 2)), np.array([0, 1])
    p = init_classifier(2, 3, 1, 2, seed=0)
    g = forward_backward(p, x, y, SolverOptions(solver="serial")).grads
    for k in ("weight_hh_l0", "weight_out"):
        i = (1, 2)
        eps = 1e-6
        p[k][i] += eps
        lp = forward_backward(p, x, y, SolverOptions(solver="serial")).loss
        p[k][i] -= 2 * eps
        lm = forward_backward(p, x, y, SolverOptions(solver="serial")).loss
        p[k][i] += eps
        assert abs((lp - lm) / (2 * eps) - g[k][i]) < 1e-7


@pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py
@pytest.mark.parametrize("solver", ["mgrit", "serial"])
def test_training_step_on_cuda_equals_numpy(solver):
    """backend='cuda' reaches training: one classifier step gives the numpy step's loss/grads."""
    from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier
    rng = np.random.default_rng(0)
    params = init_classifier(3, 4, 2, 3, seed=1)
    x, labels = rng.standard_normal((8, 2, 3)), np.array([0, 2])
    kw = dict(solver=solver, levels=2, cf=2, fwd_iters=2, bwd_iters=1, cell="implicit")
    ref = forward_backward(params, x, labels, SolverOptions(**kw))
    got = forward_backward(params, x, labels, SolverOptions(backend="cuda", **kw))
    assert abs(got.loss - ref.loss) <= 1e-10 * abs(ref.loss)
    for k in ref.grads:
        close(got.grads[k], ref.grads[k], np.float64, k)
    with pytest.raises(ValueError, match="backend"):
        SolverOptions(backend="opencl")
