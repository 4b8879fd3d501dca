"""A run's plots (`mgrit_gru.training.plots`)."""
from _training_runs import TINY

from mgrit_gru import training as tr


def test_one_level_run_plots_its_zero_residuals_without_a_warning(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # log axis: "no positive values"
        one_level = {k: v for k, v in TINY.items() if k not in ("cf", "fwd_iters", "bwd_iters")}
        res = tr.train(out=str(tmp_path / "a"), progress=False, verbose=False,
                       **{**one_level, "epochs": 1, "levels": 1})
    assert res.steps["fwd_residual"] and all(r == 0 for r in res.steps["fwd_residual"])
    assert (tmp_path / "a" / "residuals.png").stat().st_size > 1000
