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


def test_residual_figure_draws_absolute_and_relative_residuals_with_a_caption():
    """residuals.png: the absolute residual on a log axis, the same divided by the median of
    the first steps (so it starts near 1), and a caption saying why it grows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mgrit_gru.training.plots import plot_residuals
    f = list(np.linspace(2.0, 27.0, 50))
    fig = plot_residuals({"loss": [0.0] * 50, "fwd_residual": f, "bwd_residual": f[::-1]})
    absolute, relative = fig.axes
    assert absolute.get_yscale() == "log"
    k, r = relative.get_lines()[0].get_data()
    np.testing.assert_allclose(r, np.asarray(f) / np.median(f[:5]))   # 2 / 3.02 .. 27 / 3.02
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "grow" in caption and "weights" in caption
    plt.close(fig)
