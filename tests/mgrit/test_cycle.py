"""The MGRIT cycle (`MGRIT`) against the properties of docs/theory/mgrit.md ("Properties")
(Falgout et al. 2014, Dobrev et al. 2017): each test states one property and fails when it breaks.

Linear test problems (`Dahlquist`, `LinearRNN`) carry the theory, the GRU forward problem joins
them where a property must hold for it too; then the cycles and options, bad options and
divergence. The GRU forward pass as a whole (`mgrit_forward`) is tested in
tests/solve/test_forward.py.
"""
import math
import warnings

import numpy as np
import pytest
from _solver_cases import c_point_residuals, gru_case, linear_rnn, solve

from mgrit_gru import mgrit_forward
from mgrit_gru.mgrit import MGRIT, Dahlquist, MGRITDivergedError


def sequential(problem):
    """u_0..u_N by one fine step at a time, through the problem's own `step` (bitwise reference)."""
    u = problem.vec.zeros(problem.n_steps + 1)
    u[0] = problem.initial()
    for i in range(problem.n_steps):
        problem.step(0, u[i: i + 1], range(i, i + 1), 1, u[i + 1: i + 2])
    return u


# ----------------------------------------------------------------------------------------------
# 1. one level = sequential stepping, exactly
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Dahlquist(np.array([0.9, -0.5, 1.01]), 37),
                                  lambda: linear_rnn(41)], ids=["dahlquist", "linear_rnn"])
def test_one_level_is_sequential_stepping_exactly(make):
    problem = make()
    u, info = solve(problem, levels=1, cf=4)
    np.testing.assert_array_equal(u, sequential(problem))    # bit for bit
    np.testing.assert_allclose(u, problem.exact(), rtol=1e-13, atol=1e-14)
    assert info.iterations == 1 and info.converged and info.residual_history == [0.0]


# ----------------------------------------------------------------------------------------------
# 2. fixed point: started from the sequential solution, the residual stays at round-off
# ----------------------------------------------------------------------------------------------
def _fixed_point_problems():
    _, _, _, hs, gru = gru_case(96, "classic", 2)
    dq = Dahlquist(np.array([0.95, 0.3]), 96)
    rnn = linear_rnn(96)
    # the GRU's sequential states are a fixed point bit for bit (residual 0: the solve stops at
    # once); a round-off perturbation of them makes the solver iterate at the fixed point
    wobble = 1 + 1e-15 * np.random.default_rng(1).standard_normal(hs.shape)
    return [(dq, dq.exact()), (rnn, rnn.exact()), (gru, hs), (gru, hs * wobble)]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("relax", ["F", "FCF"])
def test_fixed_point(skip, relax):
    for problem, exact in _fixed_point_problems():
        scale = np.linalg.norm(exact[::4].reshape(len(exact[::4]), -1))
        u, info = solve(problem, u_init=exact, levels=3, cf=4, relax=relax, skip=skip,
                        max_iter=4, tol=0.0)
        history = [info.initial_residual] + info.residual_history
        assert len(history) == 5 or (history == [0.0] and info.converged), history
        assert max(history) <= 1e-13 * scale, (type(problem).__name__, history)
        np.testing.assert_allclose(u, exact, rtol=0, atol=1e-13 * np.abs(exact).max())


def test_skip_does_not_discard_a_given_guess():
    """Bug fixed in MGRIT.solve: with skip, the first cycle overwrote u_init's C-points."""
    problem = Dahlquist(np.array([0.95]), 64)
    u, info = solve(problem, u_init=problem.exact(), levels=3, cf=4, skip=True, max_iter=1,
                    tol=0.0)
    assert info.options["skip"] is False and info.initial_residual is not None
    np.testing.assert_allclose(u, problem.exact(), atol=1e-15)


# ----------------------------------------------------------------------------------------------
# 3. finite termination on two levels without skip, point by point
# ----------------------------------------------------------------------------------------------
def _exact_upto(k, cf, relax):
    """Last fine point that k cycles make exact: (k+1) cf - 1 (F) or (2k+1) cf - 1 (FCF)."""
    return ((k + 1) if relax == "F" else (2 * k + 1)) * cf - 1


@pytest.mark.parametrize("relax", ["F", "FCF"])
@pytest.mark.parametrize("kind", ["linear_rnn", "gru"])
def test_finite_termination(relax, kind):
    cf, T = 4, 48
    if kind == "gru":
        _, _, _, exact, problem = gru_case(T, "classic", 2)
    else:
        problem = linear_rnn(T, coarse="euler")
        exact = problem.exact()
    scale = np.abs(exact).max()
    for k in range(1, 5):
        u, info = solve(problem, levels=2, cf=cf, relax=relax, skip=False, max_iter=k, tol=0.0)
        err = np.abs(u - exact).reshape(T + 1, -1).max(axis=1)
        last = _exact_upto(k, cf, relax)
        assert err[: last + 1].max() <= 1e-13 * scale, (k, err[: last + 1].max())
        assert err[last + 1] > 1e-8 * scale, f"point {last + 1} exact too early after {k} cycles"
    # exact everywhere after ceil(N / cf) (F) or ceil(N / (2 cf)) (FCF) cycles
    k_all = math.ceil(T / cf) if relax == "F" else math.ceil(T / (2 * cf))
    u, _ = solve(problem, levels=2, cf=cf, relax=relax, skip=False, max_iter=k_all, tol=0.0)
    np.testing.assert_allclose(u, exact, rtol=0, atol=1e-13 * scale)


def test_weighted_c_relaxation_loses_fcf_termination_but_converges():
    """c_weight != 1 leaves C-points inexact after C-relaxation: FCF then terminates like F."""
    problem = linear_rnn(48)
    exact = problem.exact()
    k, cf = 2, 4
    u, _ = solve(problem, levels=2, cf=cf, relax="FCF", c_weight=0.5, skip=False, max_iter=k,
                 tol=0.0)
    err = np.abs(u - exact).max(axis=1)
    assert err[: _exact_upto(k, cf, "F") + 1].max() <= 1e-13
    assert err[_exact_upto(k, cf, "F") + 1] > 1e-8
    u1, i1 = solve(problem, levels=3, cf=4, relax="FCF", c_weight=1.0, max_iter=40, tol=1e-11)
    u2, i2 = solve(problem, levels=3, cf=4, relax="FCF", c_weight=0.5, max_iter=40, tol=1e-11)
    assert i1.converged and i2.converged
    assert i1.residual_history != i2.residual_history       # the weight is really used
    np.testing.assert_allclose(u2, exact, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# 4. ideal coarse propagator Φ_Δ = Φ^cf: one iteration
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("levels", [2, 3])
def test_ideal_coarse_converges_in_one_iteration(skip, levels):
    dq = Dahlquist(np.array([0.97, -0.6, 0.2]), 64, coarse="ideal")
    rnn = linear_rnn(64, coarse="ideal")
    for problem in (dq, rnn):
        exact = problem.exact()
        u, info = solve(problem, levels=levels, cf=4, relax="F", skip=skip, max_iter=1, tol=0.0)
        np.testing.assert_allclose(u, exact, rtol=0, atol=1e-13 * np.abs(exact).max())
        assert info.residual_history[0] <= 1e-13 * np.abs(exact).max()
    # and the non-ideal ("euler") coarse step does not: the test can tell them apart
    u, _ = solve(Dahlquist(np.array([0.97]), 64, coarse="euler"), levels=levels, cf=4,
                 relax="F", skip=skip, max_iter=1)
    assert np.abs(u - Dahlquist(np.array([0.97]), 64).exact()).max() > 1e-6


# ----------------------------------------------------------------------------------------------
# 5. two-level convergence factors vs the Dobrev et al. (2017) bound
# ----------------------------------------------------------------------------------------------
def two_level_E(lam, mu, m, n_c, relax):
    """The two-level error propagator on the C-points 1..n_c, built from its definition.

    With A_Δ the coarse operator (1 on the diagonal, -μ below), the F-relaxation propagator is
    E_F = A_Δ^{-1} (λ^m - μ) S (S: shift down one C-point), entries (λ^m - μ) μ^{i-j-1} for
    i > j; FCF adds a C-relaxation λ^m S first: E_FCF = E_F λ^m S, entries
    (λ^m - μ) λ^m μ^{i-j-2} for i >= j + 2.
    """
    d = np.subtract.outer(np.arange(n_c), np.arange(n_c))
    if relax == "F":
        return np.where(d >= 1, (lam ** m - mu) * mu ** np.maximum(d - 1, 0), 0)
    return np.where(d >= 2, (lam ** m - mu) * lam ** m * mu ** np.maximum(d - 2, 0), 0)


def dobrev_bound(lam, mu, m, n_c, relax):
    """‖E‖₂ bound (Dobrev et al. 2017, Thm 3.3-type): n_c coarse intervals (unknown C-points).

    F:   |λ^m − μ| (1 − |μ|^{n_c − 1}) / (1 − |μ|)
    FCF: |λ|^m |λ^m − μ| (1 − |μ|^{n_c − 2}) / (1 − |μ|)
    = |λ^m − μ| times the 1-norm of a row of A_Δ^{-1} S (the geometric sum); the exponents
    n_c and n_c − 1 in their place give a slightly larger (also valid) number.
    """
    geo = lambda n: (1 - abs(mu) ** n) / (1 - abs(mu))     # noqa: E731  Σ_{k<n} |μ|^k
    if relax == "F":
        return abs(lam ** m - mu) * geo(n_c - 1)
    return abs(lam) ** m * abs(lam ** m - mu) * geo(n_c - 2)


# (fine eigenvalue λ = exp(z), coarse μ = backward Euler 1 / (1 - m z)): decaying, stiff,
# oscillatory (complex), and purely imaginary (no decay: the bound exceeds 1)
Z_VALUES = [-0.1, -1.0, -3.0, -0.05 + 0.5j, 0.3j]


@pytest.mark.parametrize("relax", ["F", "FCF"])
@pytest.mark.parametrize("z", Z_VALUES)
def test_two_level_factor_under_the_bound(z, relax):
    """Scalar problem: the worst-case one-cycle error reduction = ‖E‖₂ <= the bound."""
    m, N = 4, 64
    n_c = N // m
    lam, mu = np.exp(z), 1.0 / (1.0 - m * z)
    problem = Dahlquist(np.array([lam], complex), N, coarse=lambda l, span: np.full_like(l, mu))
    exact = problem.exact()
    E = two_level_E(lam, mu, m, n_c, relax)
    _, s, vh = np.linalg.svd(E)
    e0 = vh[0].conj()                                        # the error E stretches most
    u_init = exact.copy()
    u_init[m::m, 0] += e0                                    # perturb the C-points only
    u, info = solve(problem, u_init=u_init, levels=2, cf=m, relax=relax, skip=False,
                    max_iter=1, tol=0.0)
    e1 = u[m::m, 0] - exact[m::m, 0]
    np.testing.assert_allclose(e1, E @ e0, atol=1e-12)       # the solver applies exactly E
    measured = np.linalg.norm(e1) / np.linalg.norm(e0)
    assert measured == pytest.approx(s[0], rel=1e-10)
    assert measured <= dobrev_bound(lam, mu, m, n_c, relax) * (1 + 1e-12)


@pytest.mark.parametrize("relax", ["F", "FCF"])
def test_diagonal_problem_error_factors_under_the_bound(relax):
    """Several eigenvalues at once, zero guess: every cycle's error reduction <= max bound."""
    m, N = 4, 128
    z = np.array([-0.02, -0.2, -1.0, -4.0])
    lam = np.exp(z)
    problem = Dahlquist(lam, N, u0=np.ones(4), coarse=lambda l, span: 1 / (1 - span * np.log(l)))
    exact = problem.exact()
    bound = max(dobrev_bound(lam_w, 1 / (1 - m * z_w), m, N // m, relax)
                for lam_w, z_w in zip(lam, z))
    u, info = solve(problem, levels=2, cf=m, relax=relax, skip=False, max_iter=6, tol=0.0,
                    record_iterates=True)
    errors = [np.linalg.norm(1.0 - exact[m::m])]            # the guess: u_0 = 1 everywhere
    errors += [np.linalg.norm(it[m::m] - exact[m::m]) for it in info.iterates]
    factors = [b / a for a, b in zip(errors, errors[1:]) if a > 1e-13]
    assert len(factors) >= 4
    assert max(factors) <= bound, (factors, bound)
    assert max(factors) > 0.5 * bound                        # and the bound is not vacuous here


# ----------------------------------------------------------------------------------------------
# cycles and options
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("relax", ["F", "FCF"])
def test_v_and_f_cycles_converge_f_at_least_as_fast(relax):
    problem = Dahlquist(np.exp(np.array([-0.05, -0.5, -2.0])), 256)
    exact = problem.exact()
    out = {}
    for cycle in ("V", "F"):
        u, info = solve(problem, levels=5, cf=2, relax=relax, cycle=cycle, skip=False,
                        max_iter=100, tol=1e-8, tol_type="relative")
        assert info.converged, (cycle, info.residual_history[-3:])
        np.testing.assert_allclose(u, exact, atol=1e-6)      # ||r|| <= 1e-8 * ||r_0|| ~ 1e-7
        out[cycle] = info
    assert out["F"].iterations <= out["V"].iterations
    geo = {c: (i.residual_history[-1] / i.initial_residual) ** (1 / i.iterations)
           for c, i in out.items()}
    assert geo["F"] <= geo["V"] * (1 + 1e-9)
    # the F-cycle really visits the coarsest level more often (one extra V-cycle per level)
    tv = MGRIT(problem, levels=4, cf=2, cycle="V", max_iter=1, trace=True).solve()[1].trace
    tf = MGRIT(problem, levels=4, cf=2, cycle="F", max_iter=1, trace=True).solve()[1].trace
    assert sum(op == "coarsest" for _, op in tf) > sum(op == "coarsest" for _, op in tv)


def test_relaxation_per_level():
    problem = linear_rnn(128)
    u, info = solve(problem, levels=3, cf=4, relax=["FCF", "F", "F"], skip=False, max_iter=30,
                    tol=1e-11, trace=True)
    assert info.converged
    np.testing.assert_allclose(u, problem.exact(), atol=1e-9)
    c_levels = {l for l, op in info.trace if op == "C"}
    f_levels = {l for l, op in info.trace if op == "F"}
    assert c_levels == {0} and f_levels == {0, 1}            # C-relaxation only where asked
    _, info2 = solve(problem, levels=3, cf=4, relax=["F", "FCF", "F"], skip=False, max_iter=2,
                     tol=0.0, trace=True)
    assert {l for l, op in info2.trace if op == "C"} == {1}


@pytest.mark.parametrize("norm", ["2", "max"])
def test_norm_is_the_reported_residual_of_the_returned_solution(norm):
    problem = linear_rnn(64)
    u, info = solve(problem, levels=3, cf=4, norm=norm, max_iter=3, tol=0.0)
    r = c_point_residuals(problem, u, 4)
    expected = np.abs(r).max() if norm == "max" else np.linalg.norm(r)
    assert info.final_residual == pytest.approx(expected, rel=1e-12)
    other = np.linalg.norm(r) if norm == "max" else np.abs(r).max()
    assert info.final_residual != pytest.approx(other, rel=1e-3)


@pytest.mark.parametrize("skip", [False, True])
def test_relative_tolerance_stops_at_the_first_cycle_below(skip):
    problem = linear_rnn(128)
    tol = 1e-6
    u, info = solve(problem, levels=3, cf=4, relax="F", skip=skip, max_iter=50, tol=tol,
                    tol_type="relative")
    first = info.initial_residual if not skip else info.residual_history[0]
    assert info.converged
    assert info.residual_history[-1] <= tol * first
    assert info.residual_history[-2] > tol * first           # it did not go on needlessly
    u_abs, info_abs = solve(problem, levels=3, cf=4, relax="F", skip=skip, max_iter=50,
                            tol=tol, tol_type="absolute")
    assert info_abs.iterations != info.iterations            # the two meanings really differ


def test_history_bookkeeping():
    problem = linear_rnn(64)
    u, info = solve(problem, levels=3, cf=4, skip=True, max_iter=5, tol=0.0,
                    record_iterates=True)
    assert info.initial_residual is None                     # skip: no fine work in cycle 1
    assert info.iterations == 5 and len(info.residual_history) == 5
    assert len(info.iterates) == 5
    np.testing.assert_array_equal(info.iterates[-1], u)
    h = info.residual_history
    # FCF, out of cycles: the last residual follows the final F-relaxation alone, no factor
    np.testing.assert_allclose(info.conv_factors[1:-1], np.array(h[1:-1]) / np.array(h[:-2]))
    assert np.isnan(info.conv_factors[0]) and np.isnan(info.conv_factors[-1])
    assert info.final_residual == h[-1] < h[0]
    _, info_f = solve(problem, levels=3, cf=4, relax="F", skip=True, max_iter=5, tol=0.0)
    hf = info_f.residual_history                             # F: every entry after F, all factors
    np.testing.assert_allclose(info_f.conv_factors[1:], np.array(hf[1:]) / np.array(hf[:-1]))


def test_iteration_lines_print_the_wall_time_since_the_solve_began(capsys):
    """XBraid-style lines: ||r|| as recorded, and a wall time that grows to info.wall_time."""
    import time
    problem = linear_rnn(64)
    step = problem.step

    def slow_step(*args, **kw):                              # cycles long enough to time
        time.sleep(2e-4)
        return step(*args, **kw)
    problem.step = slow_step
    _, info = solve(problem, levels=3, cf=4, max_iter=4, tol=0.0, verbose=True)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.lstrip().startswith("iter")]
    assert len(lines) == len(info.residual_history)
    for line, r in zip(lines, info.residual_history):
        assert f"||r|| = {r:.6e}" in line
    walls = [float(ln.split("wall time = ")[1].split()[0]) for ln in lines]
    assert walls == sorted(walls) and walls[-1] <= info.wall_time + 1e-3
    assert sum(info.cycle_times) > 0.02                      # (the check below can fail)
    assert walls[-1] >= sum(info.cycle_times) - 1e-3         # all cycles, not part of the last


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")   # on purpose
def test_a_nan_residual_stops_the_max_norm_solve_too():
    """A non-finite residual raises MGRITDivergedError under either norm (MPI's MAX drops a
    NaN; the solver reduces inf instead, tested on 3 ranks in test_mpi.py)."""
    problem = Dahlquist(np.array([1e40]), 24)                 # overflows late in time
    for norm in ("2", "max"):
        with pytest.raises(MGRITDivergedError, match="residual became"):
            solve(problem, levels=2, cf=4, max_iter=5, tol=0.0, norm=norm)


def test_a_solve_that_stops_at_its_first_residual_reports_it_as_final():
    problem = Dahlquist(np.array([0.5]), 16)
    _, info = solve(problem, u_init=problem.exact(), levels=2, cf=4, tol=1e-3)
    assert info.converged and info.iterations == 0 and info.residual_history == []
    assert info.final_residual == info.initial_residual <= 1e-3


@pytest.mark.parametrize("relax", ["F", "FCF"])
def test_a_solver_solves_again_from_scratch(relax):
    """A second solve() of the same MGRIT object repeats the first exactly: the skip cycle's
    coarse forcing g = 0 is re-zeroed (the first solve left its last FAS forcing there)."""
    solver = MGRIT(linear_rnn(96), levels=3, cf=4, relax=relax, max_iter=3, tol=0.0)
    u1, i1 = solver.solve()
    u2, i2 = solver.solve()
    u3, i3 = MGRIT(linear_rnn(96), levels=3, cf=4, relax=relax, max_iter=3, tol=0.0).solve()
    np.testing.assert_array_equal(u2, u1)
    np.testing.assert_array_equal(u3, u1)
    assert i2.residual_history == i1.residual_history == i3.residual_history


def test_solve_host_false_returns_the_solvers_own_fine_points():
    """``host=False`` hands back the solver's array (what a device problem keeps on the GPU),
    equal to what ``host=True`` returns: a copy, independent of the solver's array."""
    problem = Dahlquist(np.array([0.9, -0.5]), 40)
    solver = MGRIT(problem, levels=3, cf=2, max_iter=3)
    u, _ = solver.solve()
    v, _ = solver.solve(host=False)
    np.testing.assert_array_equal(u, v)
    assert np.shares_memory(v, solver.U[0]) and not np.shares_memory(u, solver.U[0])


def test_sync_timers_waits_at_both_ends_of_every_timed_phase():
    """Vector operations that set ``sync_timers`` (a GPU's: MGRIT_GRU_SYNC_TIMERS=1) get one
    ``synchronize`` call at each end of every timed phase, and the same answer; without the
    flag, none."""
    calls = []

    def solve(sync):
        prob = Dahlquist(np.full(3, 0.9), 64)
        if sync:
            prob.vec.sync_timers = True
            prob.vec.synchronize = lambda: calls.append(1)
        solver = MGRIT(prob, levels=3, cf=4, max_iter=3, tol=0.0)
        entered = []
        timed = solver._timed

        def counting(l, phase):
            entered.append(phase)
            return timed(l, phase)
        solver._timed = counting
        u, info = solver.solve()
        return u, info, entered

    u0, info0, _ = solve(False)
    assert calls == []
    u1, info1, entered = solve(True)
    assert len(calls) == 2 * len(entered) and {"relax", "residual", "coarsest"} <= set(entered)
    np.testing.assert_array_equal(u0, u1)
    assert set(info1.phase_times) == set(entered)


# ----------------------------------------------------------------------------------------------
# bad options: a clear ValueError; divergence: reported
# ----------------------------------------------------------------------------------------------
BAD_OPTIONS = [
    (dict(cf=1), "cf must be"),
    (dict(levels=0), "levels must be"),
    (dict(levels=4, cf=4), "deeper than"),                   # T = 32: 32 / 4^3 < 1
    (dict(relax="FF"), "relax must be"),
    (dict(relax=["F", "FCF"]), "relax has 2 entries"),
    (dict(cycle="W"), "cycle must be"),
    (dict(norm="1"), "norm must be"),
    (dict(tol=-1.0), "tol must be"),
    (dict(tol=float("nan")), "tol must be"),
    (dict(tol_type="rel"), "tol_type must be"),
    (dict(max_iter=0), "max_iter must be"),
    (dict(max_iter=2.5), "max_iter must be"),
    (dict(c_weight=0.0), "c_weight must"),
    (dict(c_weight=2.5), "c_weight must"),
    (dict(cf=[4, 2, 2]), "cf has 3 entries"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS,
                         ids=[m.split()[0] + str(i) for i, (_, m) in enumerate(BAD_OPTIONS)])
def test_bad_options_raise_value_error(options, message):
    kw = dict(levels=3, cf=2)
    kw.update(options)
    with pytest.raises(ValueError, match=message):
        MGRIT(Dahlquist(np.array([0.9]), 32), **kw)
    params, x, h0, _, _ = gru_case(32)
    with pytest.raises(ValueError, match=message):
        mgrit_forward(params, x, h0, **kw)


@pytest.mark.parametrize("options, message", [
    (dict(tol=True), "tol must be"),
    (dict(divergence_factor=-1.0), "divergence_factor must be"),
    (dict(divergence_factor=float("nan")), "divergence_factor must be"),
    (dict(c_weight="x"), "c_weight must"),
    (dict(cf=np.array([[2, 2]])), "cf must be an integer"),
    (dict(skip="False"), "skip must be True or False"),      # a string from a config file
    (dict(verbose="no"), "verbose must be True or False"),
    (dict(record_iterates=1), "record_iterates must be True or False"),
    (dict(trace=None), "trace must be True or False"),
])
def test_bad_solver_options_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        MGRIT(Dahlquist(np.array([0.9]), 32), **{**dict(levels=3, cf=2), **options})


def test_numpy_option_values_are_accepted():
    problem = Dahlquist(np.array([0.9]), 32)
    _, info = solve(problem, levels=3, cf=np.array([2, 2]), tol=np.float32(1e-6), max_iter=30,
                    divergence_factor=np.inf)
    assert info.converged and info.options["cf"] == [2, 2]


@pytest.mark.parametrize("shape", [(34, 1), (33, 2), (32, 1)])
def test_u_init_of_the_wrong_shape_is_refused_by_name(shape):
    problem = Dahlquist(np.array([0.9]), 32)                 # wants (33, 1)
    with pytest.raises(ValueError, match=r"u_init must have shape \(33, 1\)"):
        solve(problem, u_init=np.zeros(shape), levels=2, cf=2)


def test_diverging_iteration_is_reported():
    """A terrible coarse step (μ = 5 for λ = 0.9) makes MGRIT diverge: flagged and warned."""
    problem = Dahlquist(np.array([0.9]), 64, coarse=lambda lam, span: np.full_like(lam, 5.0))
    with pytest.warns(RuntimeWarning, match="diverged"):
        u, info = solve(problem, levels=2, cf=2, skip=False, max_iter=20)
    assert info.diverged and not info.converged
    assert info.final_residual > 1e8 * info.initial_residual


def test_overflow_raises_diverged_error():
    problem = Dahlquist(np.array([0.9]), 64, coarse=lambda lam, span: np.full_like(lam, 1e300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # NumPy's overflow warnings
        with pytest.raises(MGRITDivergedError, match="diverged"):
            solve(problem, levels=2, cf=2, skip=False, max_iter=20, divergence_factor=np.inf)


def test_a_solve_leaves_no_reference_cycle_so_its_arrays_go_at_once():
    """A forward and a backward solve, and a training step built on them, create no reference
    cycle: their buffers (the stored gates, every level's points) are freed when the last
    reference goes, not at some later cyclic garbage collection."""
    import gc

    import mgrit_gru as mg
    from mgrit_gru.training import TrainConfig
    from mgrit_gru.training.model import forward_backward, init_classifier
    params = mg.init_gru(3, 4, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((32, 2, 3))
    cfg = TrainConfig.with_preset("torchbraid", hidden=4)
    clf = init_classifier(3, 4, 2, 3, seed=0)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()                                             # only this test's garbage counts
    try:
        y, h_T, info = mg.mgrit_forward(params, x, levels=3, cf=2, max_iter=2, tol=0.0)
        mg.mgrit_backward(params, info, dy=np.ones_like(y), levels=3, cf=2, max_iter=1, tol=0.0)
        forward_backward(clf, x, np.array([0, 2]), cfg.solver_options())
        del y, h_T, info
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
