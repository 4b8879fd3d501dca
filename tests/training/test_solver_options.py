"""Training holds one `MGRITOptions` for the forward solve and one for the backward solve, and
those objects are what reach `mgrit_forward` and `mgrit_backward`."""
import numpy as np
import pytest

from mgrit_gru.mgrit import MGRITOptions
from mgrit_gru.training import model
from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier


def test_forward_and_backward_options_differ_only_in_iterations_and_skip():
    s = SolverOptions(levels=3, cf="4,2", relax="FCF,F,F", fwd_iters=2, bwd_iters=1,
                      tol=0.0, bwd_skip=False, coarse_input="average")
    f, b = s.forward_options, s.backward_options
    assert isinstance(f, MGRITOptions) and isinstance(b, MGRITOptions)
    assert f == MGRITOptions(levels=3, cf=(4, 2), relax=("FCF", "F", "F"), max_iter=2,
                             tol=0.0, skip=True, coarse_input="average")
    assert b == f.replace(max_iter=1, skip=False)


def test_solver_options_check_by_the_options_rules_when_built():
    with pytest.raises(ValueError, match=r"relax has 2 entries, expected one per level \(3\)"):
        SolverOptions(levels=3, relax="FCF,F")
    with pytest.raises(ValueError, match="cf must be an integer >= 2, got 1"):
        SolverOptions(cf=1)


def test_a_training_step_hands_those_objects_to_the_solves(monkeypatch):
    seen = {}
    real_fwd, real_bwd = model.mgrit_forward, model.mgrit_backward

    def fwd(*a, options=None, **kw):
        seen["forward"] = options
        return real_fwd(*a, options=options, **kw)

    def bwd(*a, options=None, **kw):
        seen["backward"] = options
        return real_bwd(*a, options=options, **kw)

    monkeypatch.setattr(model, "mgrit_forward", fwd)
    monkeypatch.setattr(model, "mgrit_backward", bwd)
    p = init_classifier(3, 4, 1, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((16, 2, 3))
    opts = SolverOptions(levels=2, cf=4, fwd_iters=3, bwd_iters=2, tol=0.0)
    res = forward_backward(p, x, np.array([0, 1]), opts)
    assert seen == {"forward": opts.forward_options, "backward": opts.backward_options}
    assert (res.fwd_iterations, res.bwd_iterations) == (3, 2)
