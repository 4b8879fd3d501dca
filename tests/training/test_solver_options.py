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


def test_accuracy_controlled_solves_stop_on_a_relative_residual_under_a_cap():
    s = SolverOptions(levels=2, fwd_rtol=1e-3, bwd_rtol=1e-2, max_iters=7, fwd_iters=2)
    f, b = s.forward_options, s.backward_options
    assert (f.tol, f.tol_type, f.max_iter) == (1e-3, "relative", 7)   # fwd_iters unused
    assert (b.tol, b.tol_type, b.max_iter) == (1e-2, "relative", 7)
    assert SolverOptions(levels=2).forward_options.tol_type == "absolute"
    for bad in (0.0, 1.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="fwd_rtol must"):
            SolverOptions(fwd_rtol=bad)


def test_accuracy_controlled_solves_spend_iterations_where_the_solve_converges_worse():
    """Weights that make MGRIT converge slowly (a large recurrent gain, as training can reach)
    get more forward iterations than small ones, at the same tolerance, and each solve meets
    the tolerance or the cap."""
    x = np.random.default_rng(1).standard_normal((64, 4, 3))
    y = np.array([0, 1, 0, 1])
    opts = SolverOptions(levels=3, cf=4, fwd_rtol=1e-4, bwd_rtol=1e-2, max_iters=12)
    used = {}
    for gain in (0.3, 3.0):
        p = init_classifier(3, 8, 1, 2, seed=0)
        p["weight_hh_l0"] *= gain / np.abs(p["weight_hh_l0"]).max()
        p["weight_ih_l0"] *= 3.0
        used[gain] = forward_backward(p, x, y, opts).fwd_iterations
    assert 1 <= used[0.3] < used[3.0] <= 12, used


def test_a_run_records_the_iterations_of_every_step(tmp_path):
    from mgrit_gru.training import load_checkpoint, read_metrics, train
    train(data="event", seq_len=32, num_sequences=40, hidden=4, batch_size=8, epochs=2,
          levels=2, fwd_rtol=1e-3, bwd_rtol=1e-1, max_iters=6, out=str(tmp_path),
          progress=False, verbose=False)
    steps = load_checkpoint(tmp_path / "checkpoint.npz").steps
    fwd, bwd = np.asarray(steps["fwd_iters"]), np.asarray(steps["bwd_iters"])
    assert len(fwd) == len(steps["loss"]) == 8 and np.all((fwd >= 1) & (fwd <= 6))
    assert np.all((bwd >= 1) & (bwd <= 6))
    metrics = read_metrics(tmp_path)
    assert [m["fwd_iters"] for m in metrics] == [int(fwd[:4].sum()), int(fwd[4:].sum())]


def test_a_relative_tolerance_on_one_solve_leaves_the_others_absolute_tolerance_alone():
    s = SolverOptions(levels=2, tol=1e-7, fwd_rtol=1e-3)
    assert s.tol == 1e-7
    assert (s.backward_options.tol, s.backward_options.tol_type) == (1e-7, "absolute")
    s = SolverOptions(levels=2, tol=1e-7, bwd_rtol=1e-2)
    assert (s.forward_options.tol, s.forward_options.tol_type) == (1e-7, "absolute")
