"""The diagnostics (`mgrit_gru.tools.diagnostics`): the plots draw what they claim (checked on
the Axes), headless; the gradient error of inexact solves; and `mgrit-gru solve`."""
import matplotlib
import numpy as np
import pytest
from _solver_cases import bptt, gradient_case

import mgrit_gru as mg
from mgrit_gru.mgrit import MGRIT, Dahlquist
from mgrit_gru.tools import diagnostics as dg
from mgrit_gru.tools.cli import main

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _solve(levels=3, cf=4, relax="FCF", skip=False, max_iter=4, **kw):
    problem = Dahlquist(np.array([0.95, 0.5]), 64)
    u, info = MGRIT(problem, levels=levels, cf=cf, relax=relax, skip=skip, max_iter=max_iter,
                    tol=0.0, record_iterates=True, trace=True, **kw).solve()
    return problem, u, info


# ----------------------------------------------------------------------------------------------
# the plots of a solve: residual history, error against time, cycle diagram
# ----------------------------------------------------------------------------------------------
def test_residual_history_one_line_per_solve_with_its_data():
    _, _, a = _solve(skip=False)
    _, _, b = _solve(skip=True, relax="F")
    ax = dg.plot_residual_history([a, b, [1.0, 0.1, 0.01]], labels=["no skip", "skip", "list"])
    assert len(ax.lines) == 3
    assert ax.get_yscale() == "log"
    k0, r0 = ax.lines[0].get_data()                          # no skip: k = 0 is the initial guess
    np.testing.assert_array_equal(k0, np.arange(5))
    np.testing.assert_allclose(r0, [a.initial_residual] + a.residual_history)
    k1, r1 = ax.lines[1].get_data()                          # skip: starts at cycle 1
    np.testing.assert_array_equal(k1, np.arange(1, 5))
    np.testing.assert_allclose(r1, b.residual_history)
    assert all(line.get_marker() == "o" for line in ax.lines)   # one marker per cycle
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no skip", "skip", "list"]
    assert ax.get_xlabel() == "cycle k"


def test_residual_history_single_info_and_label_mismatch():
    _, _, info = _solve()
    ax = dg.plot_residual_history(info)
    assert len(ax.lines) == 1 and ax.get_legend() is None
    with pytest.raises(ValueError, match="labels"):
        dg.plot_residual_history([info, info], labels=["one"])


def test_an_exact_one_level_solve_plots_without_a_log_scale_warning(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # "no positive values" was one
        res = dg.solve_and_report(seq_len=16, hidden=4, batch=1, input_size=2,
                                   levels=1, plot=str(tmp_path / "l1.png"),
                                   print_fn=lambda s: None)
    assert res["iterations"] == 1 and (tmp_path / "l1.png").stat().st_size > 1000


def test_solve_and_report_says_when_float32_round_off_stalls_the_residual():
    said = []
    small = dict(seq_len=32, hidden=16, batch=2, input_size=8, print_fn=said.append)
    res = dg.solve_and_report(dtype="float32", iters=12, **small)   # tol: float64's 1e-9
    assert not res["converged"] and res["stalled"]
    assert res["err_y"] < 1e-6                               # the answer is as exact as float32
    note = [s for s in said if "stalled" in s]
    assert len(note) == 1 and note[0].startswith("the residual stalled at float32 round-off")
    reach = float(note[0].rsplit("a tol of ", 1)[1].split()[0])
    again = dg.solve_and_report(dtype="float32", iters=12, tol=reach, **{**small,
                                                                          "print_fn": said.append})
    assert again["converged"] and not again["stalled"]      # the tol it names is reachable
    # unconverged for want of iterations, not round-off: no such note (float64 and float32)
    for dtype in ("float64", "float32"):
        said.clear()
        res = dg.solve_and_report(dtype=dtype, iters=3, skip=False, **{**small, "seq_len": 256,
                                                                        "print_fn": said.append})
        assert not res["converged"] and not res["stalled"]
        assert not any("stalled" in s for s in said)
    said.clear()
    assert dg.solve_and_report(iters=12, **small)["converged"] and not any("stalled" in s
                                                                           for s in said)

def test_solve_and_report_draws_the_cycles_that_ran(tmp_path, monkeypatch):
    """A solve that converges ends F, C, F, residual (stop), F (storing the gates): the cycle
    diagram of `mgrit-gru solve --plot` is that run's trace, not a tol = 0 replay."""
    import matplotlib.pyplot as plt
    seen = []
    real = dg.plot_cycle

    def recording(info, **k):
        seen.append(info)
        return real(info, **k)

    monkeypatch.setattr(dg, "plot_cycle", recording)
    res = dg.solve_and_report(seq_len=64, hidden=4, batch=1, input_size=2, levels=2, cf=4,
                              iters=30, tol=1e-6, plot=str(tmp_path / "p.png"),
                              print_fn=lambda s: None)
    assert res["converged"] and seen and seen[0].trace
    ops = [op for level, op in seen[0].trace if level == 0]
    assert ops[-5:] == ["F", "C", "F", "residual", "F"]
    plt.close("all")


def test_solve_and_report_plot_has_error_panel(tmp_path, monkeypatch):
    """The picture of `mgrit-gru solve --plot` has three panels, the second the error against
    time: one line per cycle (2) and one marker line per C-point (t = 0, 4, .., 16)."""
    import matplotlib.pyplot as plt
    figs = []
    real = dg.plot_solve

    def recording(*a, **k):
        figs.append(real(*a, **k))
        return figs[-1]

    monkeypatch.setattr(dg, "plot_solve", recording)
    dg.solve_and_report(seq_len=16, hidden=4, batch=1, input_size=2, levels=2, cf=4, iters=2,
                        plot=str(tmp_path / "p.png"), print_fn=lambda s: None)
    assert len(figs[0].axes) == 3
    assert len(figs[0].axes[1].lines) == 2 + len(range(0, 17, 4))
    plt.close("all")


def test_error_vs_time_shows_finite_termination():
    problem, u, info = _solve(levels=2, cf=4, relax="F", max_iter=3)
    exact = problem.exact()
    ax = dg.plot_error_vs_time(info, exact, floor=1e-17, cf=4)
    assert len(ax.lines) == 3 + len(range(0, 65, 4))          # 3 iterates + C-point markers
    assert ax.get_yscale() == "log"
    for k in range(3):                                       # after k+1 cycles: 0..(k+2)4-1 exact
        t, e = ax.lines[k].get_data()
        np.testing.assert_array_equal(t, np.arange(65))
        np.testing.assert_allclose(e, np.maximum(np.linalg.norm(info.iterates[k] - exact, axis=1),
                                                 1e-17))
        last = (k + 2) * 4 - 1
        assert e[: last + 1].max() < 1e-14 and e[last + 1] > 1e-8
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["after cycle 1", "after cycle 2", "after cycle 3"]


def test_error_vs_time_needs_iterates():
    problem = Dahlquist(np.array([0.9]), 16)
    _, info = MGRIT(problem, levels=2, cf=2, max_iter=2).solve()
    with pytest.raises(ValueError, match="record_iterates"):
        dg.plot_error_vs_time(info, problem.exact())


def test_cycle_diagram_from_trace():
    _, _, info = _solve(levels=3, skip=False, max_iter=2)
    ax = dg.plot_cycle(info)
    x, lev = ax.lines[0].get_data()                          # the path through the levels
    np.testing.assert_array_equal(lev, [l for l, _ in info.trace])
    assert len(x) == len(info.trace)
    assert ax.get_ylim()[0] > ax.get_ylim()[1]               # fine level on top
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) == {"F", "C", "residual", "restrict", "correct", "coarsest"}
    coarsest = ax.collections[legend.index("coarsest")].get_offsets()
    assert len(coarsest) == 2 and np.all(coarsest[:, 1] == 2)  # one coarsest solve per V-cycle
    dashed = [ln for ln in ax.lines[1:] if ln.get_linestyle() == "--"]
    assert len(dashed) == sum(op == "residual" for _, op in info.trace) == 3


def test_residual_list_line_and_scatter_positions():
    """A plain list of residuals (it has no initial residual) is drawn at cycles 1, 2, 3; and
    in the cycle diagram each operation's markers sit at that operation's positions in the
    trace."""
    ax = dg.plot_residual_history([[1.0, 0.1, 0.01]])
    k, r = ax.lines[0].get_data()
    assert list(k) == [1, 2, 3]
    _, info = MGRIT(Dahlquist(np.array([0.9]), 64), levels=3, cf=4, max_iter=2, tol=0.0,
                    trace=True).solve()
    ax = dg.plot_cycle(info)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for op, coll in zip(legend, ax.collections):
        idx = [i for i, (_, o) in enumerate(info.trace) if o == op]
        np.testing.assert_array_equal(coll.get_offsets()[:, 0], idx)


def test_cycle_diagram_replays_a_solve_without_trace():
    problem = Dahlquist(np.array([0.9]), 64)
    solver = MGRIT(problem, levels=3, cf=4, relax="F", skip=True, max_iter=3, tol=0.0)
    _, info = solver.solve()
    replay = dg.cycle_trace(3, 4, "F", "V", True, iterations=3)
    traced = MGRIT(problem, levels=3, cf=4, relax="F", skip=True, max_iter=3, tol=0.0,
                   trace=True).solve()[1].trace
    assert replay == traced                                  # the trace depends on options only
    for source in (info, solver):
        _, lev = dg.plot_cycle(source).lines[0].get_data()
        np.testing.assert_array_equal(lev, [l for l, _ in traced])


def test_plot_cycle_of_a_solver_that_has_not_run():
    """A solver that has not run is drawn from a replay of its options' cycle (`cycle_trace`)."""
    s = MGRIT(Dahlquist(np.array([0.9]), 64), levels=3, cf=4, relax="F", skip=True, max_iter=1,
              tol=0.0)
    _, lev = dg.plot_cycle(s).lines[0].get_data()
    np.testing.assert_array_equal(lev, [l for l, _ in dg.cycle_trace(3, 4, "F", "V", True, 1)])


def test_plot_solve_figure_and_gru_info():
    from mgrit_gru import gru_forward, init_gru, mgrit_forward
    params = init_gru(3, 4, 1, seed=0)
    x = np.random.default_rng(0).standard_normal((32, 2, 3))
    y, h_T, info = mgrit_forward(params, x, levels=3, cf=2, max_iter=3, record_iterates=True)
    hs = gru_forward(params, x)[2]["hs"]
    fig = dg.plot_solve(info, exact=hs, cf=2)
    assert len(fig.axes) == 3
    assert [a.get_title() for a in fig.axes] == ["MGRIT residual history",
                                                 "error vs time after each cycle",
                                                 "MGRIT cycles (3 levels)"]
    assert len(dg.plot_solve(info).axes) == 2


# ----------------------------------------------------------------------------------------------
# the gradient error of inexact solves, and its pictures
# ----------------------------------------------------------------------------------------------
def test_gradient_error_helper():
    params, x, h0, dy, _ = gradient_case(8, 1)
    ref = bptt(params, x, h0, dy, None)
    assert dg.gradient_error(ref, ref) == 0.0
    pert = ({k: v.copy() for k, v in ref[0].items()}, ref[1].copy(), ref[2].copy())
    pert[1][0, 0, 0] += 1.0
    total = np.sqrt(sum(np.sum(v ** 2) for v in list(ref[0].values()) + [ref[1], ref[2]]))
    err = dg.gradient_error(pert, ref, per_tensor=True)
    assert err["all"] == pytest.approx(1.0 / total)
    assert err["dx"] == pytest.approx(1.0 / np.linalg.norm(ref[1]))
    assert err["weight_hh_l0"] == 0.0
    with pytest.raises(ValueError, match="different tensors"):
        dg.gradient_error((ref[0], None, ref[2]), ref)


def test_plot_forward_backward_residuals():
    params, x, h0, dy, _ = gradient_case(40, 1)
    _, _, fwd = mg.mgrit_forward(params, x, h0, skip=False, max_iter=4, tol=0.0)
    bwd = mg.mgrit_backward(params, fwd, dy, max_iter=3, tol=0.0)[3]
    ax = dg.plot_forward_backward_residuals(fwd, bwd)
    (kf, rf), (kb, rb) = (line.get_data() for line in ax.lines[:2])
    assert list(kf) == [0, 1, 2, 3, 4] and list(rf) == [fwd.initial_residual] + \
        fwd.residual_history                                # no skip: the relaxed guess at k = 0
    assert list(kb) == [1, 2, 3] and list(rb) == bwd.residual_history   # skip: from k = 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["forward", "backward"]
    ax2 = dg.plot_forward_backward_residuals(fwd.residual_history, [1.0, 0.1])
    assert list(ax2.lines[1].get_ydata()) == [1.0, 0.1]


def test_plot_gradient_error_lines_and_heatmap():
    fi, bi = (1, 2, None), (1, 3)
    grid = np.array([[0.3, 0.2], [0.1, 1e-3], [0.05, 1e-5]])
    ax = dg.plot_gradient_error(grid, fi, bi)
    assert len(ax.lines) == 3
    for i, line in enumerate(ax.lines):
        assert list(line.get_ydata()) == list(grid[i])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["1 forward it.", "2 forward it.", "conv. forward it."]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3"]
    ax = dg.plot_gradient_error(grid, fi, bi, kind="heatmap")
    assert np.allclose(ax.images[0].get_array(), np.log10(grid))
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.1e}" for v in grid.ravel())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "conv."]
    with pytest.raises(ValueError, match="expected"):
        dg.plot_gradient_error(grid, fi, (1,))
    with pytest.raises(ValueError, match="kind"):
        dg.plot_gradient_error(grid, fi, bi, kind="pie")


def test_gradient_error_grid_entries_are_single_runs():
    """grid[i, j] is exactly the error of one forward with fwd_iters[i] and one backward with
    bwd_iters[j] cycles (tol 0), against BPTT."""
    params, x, h0, _, dh_T = gradient_case(24, 2, seed=9)
    grid = dg.gradient_error_grid(params, x, dh_T=dh_T, h0=h0, fwd_iters=(2,),
                                           bwd_iters=(1, 3), levels=2, cf=3, relax="F")
    assert grid.shape == (1, 2)
    _, _, fwd = mg.mgrit_forward(params, x, h0, levels=2, cf=3, relax="F", max_iter=2, tol=0.0)
    out = mg.mgrit_backward(params, fwd, dh_T=dh_T, levels=2, cf=3, relax="F", max_iter=3,
                            tol=0.0)
    ref = bptt(params, x, h0, None, dh_T)
    assert grid[0, 1] == dg.gradient_error(out, ref)
    with pytest.raises(ValueError, match="sets max_iter itself"):
        dg.gradient_error_grid(params, x, dh_T=dh_T, max_iter=3)


# ----------------------------------------------------------------------------------------------
# mgrit-gru solve
# ----------------------------------------------------------------------------------------------
def test_cli_solve_prints_history_and_saves_png(tmp_path, capsys):
    out = tmp_path / "solve.png"
    assert main(["solve", "--seq-len", "64", "--hidden", "4", "--batch", "2", "--input", "3",
                 "--layers", "2", "--levels", "3", "--cf", "4", "--relax", "FCF", "--iters", "30",
                 "--tol", "1e-10", "--no-skip", "--coarse-input", "average", "--seed", "3",
                 "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "iter   0" in text and "||r|| =" in text and "conv factor" in text  # XBraid-style
    assert "residual history:" in text and "converged = True" in text
    err = float(text.split("max |y - y_serial| = ")[1].split()[0])
    assert err < 1e-9
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_solve_float32(capsys, monkeypatch):
    """--dtype float32 solves in float32 (inputs, weights and states) and the report says so;
    converged, its error against serial float32 stepping is at float32 rounding."""
    import mgrit_gru.solve as solve
    seen, forward = [], solve.mgrit_forward

    def recording(params, x, *args, **kw):
        y, h_T, info = forward(params, x, *args, **kw)
        seen.append({x.dtype, y.dtype, h_T.dtype} | {v.dtype for v in params.values()})
        return y, h_T, info
    monkeypatch.setattr(solve, "mgrit_forward", recording)
    assert main(["solve", "--seq-len", "32", "--hidden", "4", "--batch", "2", "--levels", "2",
                 "--cf", "4", "--iters", "20", "--tol", "1e-5", "--dtype", "float32"]) == 0
    text = capsys.readouterr().out
    assert "dtype=float32" in text and "converged = True" in text
    assert seen == [{np.dtype(np.float32)}]
    err = float(text.split("max |y - y_serial| = ")[1].split()[0])
    assert 0 <= err < 1e-5


def test_cli_solve_bad_option_exit_2(capsys):
    assert main(["solve", "--seq-len", "16", "--levels", "4", "--cf", "4"]) == 2
    assert "deeper than" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# bad input: a named ValueError / TypeError, and no picture that claims something false
# ----------------------------------------------------------------------------------------------
def test_residual_history_of_a_nonfinite_solve_says_diverged_not_exact():
    ax = dg.plot_residual_history([np.nan, np.nan])
    [text] = [t.get_text() for t in ax.texts]
    assert "diverged" in text and "nan at cycle 1" in text and "exact" not in text
    ax = dg.plot_residual_history([[1.0, 0.1], [1.0, np.inf]], labels=["ok", "blown"])
    [text] = [t.get_text() for t in ax.texts]
    assert ax.get_yscale() == "log" and "blown: ||r|| = inf at cycle 2" in text
    assert "ok" not in text
    ax = dg.plot_residual_history([0.0, 0.0])                # exact, but not said to be one level
    assert [t.get_text() for t in ax.texts] == ["||r|| = 0: exact"]


def test_residual_history_refuses_no_residuals_and_wrong_types():
    from mgrit_gru.mgrit import MGRITInfo
    for empty in (MGRITInfo(), [], [[1.0], []]):
        with pytest.raises(ValueError, match="infos_or_histories.* no residual"):
            dg.plot_residual_history(empty)
    for bad in ("abc", 5, [[1.0], "abc"]):
        with pytest.raises(TypeError, match="infos_or_histories.*MGRITInfo"):
            dg.plot_residual_history(bad)
    with pytest.raises(ValueError, match=">= 0"):
        dg.plot_residual_history([1.0, -0.5])
    with pytest.raises(ValueError, match="bwd_info.* no residual"):
        dg.plot_forward_backward_residuals([1.0], [])


def _zero_iteration_solve(trace):
    """skip=False and a tol the relaxed initial guess already meets: no cycle runs."""
    problem = Dahlquist(np.array([0.9]), 16)
    return MGRIT(problem, levels=2, cf=4, skip=False, tol=1e3, trace=trace).solve()[1]


def test_plot_cycle_of_a_solve_that_ran_no_cycle():
    for trace in (False, True):
        info = _zero_iteration_solve(trace)
        assert info.iterations == 0 and info.converged
        ax = dg.plot_cycle(info)
        assert [t.get_text() for t in ax.texts] == \
            ["no cycle ran (0 iterations): the initial guess met tol"]
        assert ax.get_title() == "MGRIT: no cycle ran (2 levels)"
        levels = [off[1] for c in ax.collections for off in c.get_offsets()]
        assert levels == ([0] * 5 if trace else [])          # what ran, no replayed cycle
        if trace:
            assert {t.get_text() for t in ax.get_legend().get_texts()} == {"F", "C", "residual"}


def test_cycle_trace_refuses_bad_options_and_huge_replays():
    with pytest.raises(ValueError, match="cf must be an integer >= 2, got 0"):
        dg.cycle_trace(3, 0)
    with pytest.raises(ValueError, match="cf must be an integer >= 2"):
        dg.cycle_trace(3, 2.5)
    with pytest.raises(ValueError, match="cf must be an integer >= 2"):
        dg.cycle_trace(3, np.array([[2, 3]]))
    with pytest.raises(ValueError, match="cf has 3 entries; 3 levels need 2"):
        dg.cycle_trace(3, [2, 2, 2])
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        dg.cycle_trace(0, 2)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        dg.cycle_trace(2, 2, iterations=1.5)
    with pytest.raises(ValueError, match="replay grid.*trace=True"):
        dg.cycle_trace(40, 2)
    # one cf per coarsening as an array, like MGRIT itself takes
    assert dg.cycle_trace(3, np.array([2, 3])) == dg.cycle_trace(3, [2, 3])


def test_plot_error_vs_time_refuses_bad_exact_floor_and_cf():
    problem, _, info = _solve(levels=2, cf=4, max_iter=1)
    with pytest.raises(ValueError, match="exact must be an array"):
        dg.plot_error_vs_time(info, 0.0)
    with pytest.raises(ValueError, match="cf must be an integer >= 2, got 2.5"):
        dg.plot_error_vs_time(info, problem.exact(), cf=2.5)
    with pytest.raises(ValueError, match="cf must be an integer >= 2, got 0"):
        dg.plot_error_vs_time(info, problem.exact(), cf=0)
    with pytest.raises(ValueError, match="floor must be a finite number > 0"):
        dg.plot_error_vs_time(info, problem.exact(), floor=0.0)
    with pytest.raises(TypeError, match="iterates must be"):
        dg.plot_error_vs_time(3, problem.exact())


def test_gradient_error_names_a_malformed_result():
    grads = {"w": np.ones(3)}
    ref = (grads, np.ones(2), None)
    with pytest.raises(TypeError, match="result must be the tuple .*got dict"):
        dg.gradient_error(grads, ref)
    with pytest.raises(ValueError, match="result must be the tuple .*got 2 item"):
        dg.gradient_error(ref[:2], ref)
    with pytest.raises(TypeError, match=r"reference\[0\] must be the dict"):
        dg.gradient_error(ref, (np.ones(3), np.ones(2), None))
    assert dg.gradient_error(ref, ref) == 0.0


def test_plot_gradient_error_refuses_empty_and_negative_grids():
    with pytest.raises(ValueError, match="fwd_iters must be a non-empty sequence"):
        dg.plot_gradient_error(np.zeros((0, 0)), (), (), kind="heatmap")
    with pytest.raises(ValueError, match="bwd_iters must be a non-empty sequence"):
        dg.plot_gradient_error(np.zeros((1, 1)), (1,), 1)
    with pytest.raises(ValueError, match="grid holds gradient errors"):
        dg.plot_gradient_error(np.array([[-1.0]]), (1,), (1,))


def test_plot_cycle_refuses_what_is_not_a_trace():
    with pytest.raises(TypeError, match="list of \\(level, op\\) pairs, got the entry 1"):
        dg.plot_cycle([1, 2, 3])
    with pytest.raises(ValueError, match="source: a trace entry"):
        dg.plot_cycle([(0, "jump")])
    with pytest.raises(TypeError, match="source must be an MGRITInfo"):
        dg.plot_cycle("abc")
    with pytest.raises(ValueError, match="source: the trace is empty"):
        dg.plot_cycle([])


def test_gradient_error_grid_refuses_non_integer_iteration_counts():
    from mgrit_gru import init_gru
    params, x = init_gru(2, 3, 1, seed=0), np.zeros((8, 1, 2))
    for bad in ((1.5,), (0,), (True,)):
        with pytest.raises(ValueError, match="fwd_iters must be an integer >= 1"):
            dg.gradient_error_grid(params, x, fwd_iters=bad, bwd_iters=(1,))
    with pytest.raises(ValueError, match="bwd_iters must be a non-empty sequence"):
        dg.gradient_error_grid(params, x, fwd_iters=(1,), bwd_iters=2)


def test_plot_cycle_draws_the_first_cycles_of_a_long_solve():
    """Ten cycles are too dense to read: the diagram draws the first three and says so."""
    for skip in (True, False):
        trace = dg.cycle_trace(3, 2, "FCF", "V", skip=skip, iterations=10)
        ax = dg.plot_cycle(trace)
        _, lev = ax.lines[0].get_data()
        assert len(lev) < len(trace)
        np.testing.assert_array_equal(lev, [l for l, _ in trace[:len(lev)]])
        assert trace[len(lev) - 1] == (0, "residual")           # ends at the 3rd cycle's residual
        assert "the first 3 of 10 cycles" in ax.get_title()
        assert sum(op == "residual" for _, op in trace[:len(lev)]) == 3 + (not skip)
        ax = dg.plot_cycle(trace, max_cycles=10)
        assert len(ax.lines[0].get_xdata()) == len(trace)
        assert "first" not in ax.get_title()


def test_error_vs_time_legend_covers_no_curve():
    """The legend sits in a corner that no error curve crosses (or outside the axes)."""
    import matplotlib.pyplot as plt
    problem, u, info = _solve(levels=2, cf=4, relax="F", max_iter=3)
    ax = dg.plot_error_vs_time(info, problem.exact(), cf=4)
    ax.figure.canvas.draw()
    box = ax.get_legend().get_window_extent()
    for line in ax.lines[:3]:
        xy = ax.transData.transform(np.column_stack(line.get_data()))
        inside = (xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & \
            (xy[:, 1] < box.y1)
        assert not inside.any()
    plt.close("all")
