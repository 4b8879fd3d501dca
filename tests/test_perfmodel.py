"""The performance model: hand-computed critical paths and the properties any model must have."""
import numpy as np
import pytest

from mgrit_gru.tools.perfmodel import StepCost, fit_step_cost, measure_step_cost, predict


def tiny(P, latency, **kw):
    opts = dict(step_cost=(1.0, 0.0), cf=2, levels=2, relax="F", iters=1, skip=False,
                latency=latency)
    opts.update(kw)
    return predict(8, P, **opts)


def test_hand_computed_critical_path_one_rank():
    # T = 8, cf = 2, two levels, F-relaxation, one iteration without skip, each call costs 1:
    # F-relax (1 call) + C-point residual (1) + FAS restriction (1 coarse call) + coarsest
    # solve (4 sequential steps) + final F-relax (1) + final residual (1) = 9 calls
    p = tiny(1, 0.0)
    assert p.time == 9 and p.step_calls == 9 and p.serial_time == 8
    assert p.phases == {"setup": 0.0, "relax": 2.0, "residual": 2.0, "restrict": 1.0,
                        "coarsest": 4.0}


def test_hand_computed_critical_path_two_ranks():
    # rank 0 owns fine 0..3, rank 1 fine 4..8. With a = 1, b = 0 and latency λ (worked out by
    # hand): F-relax ghost λ, Allreduce 2λ, coarsest pipeline λ (the
    # restriction's ghost arrives while rank 1 waits for it: off the path), final Allreduce 2λ
    # -> 9 + 6λ; the critical path carries 2 point-to-point messages.
    lam = 0.1
    p = tiny(2, lam)
    assert p.time == pytest.approx(9 + 6 * lam)
    assert p.step_calls == 9
    assert p.comm_time == pytest.approx(6 * lam) and p.messages == 2
    # cost per state instead of per call: 4 + 4 + 4 + 4 + 4 + 4 states on one rank
    assert predict(8, 1, step_cost=(0.0, 1.0), cf=2, levels=2, relax="F", iters=1,
                   skip=False).time == 24


@pytest.mark.parametrize("relax", ["F", "FCF"])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_one_rank_never_beats_serial(relax, levels):
    """On one rank MGRIT does at least the serial work when a batched step costs no less per
    state than a serial step (b >= serial step): no speedup > 1."""
    p = predict(1024, 1, step_cost=(2e-6, 1e-5), serial_step=1.2e-5, cf=4, levels=levels,
                relax=relax, iters=2)
    assert p.speedup <= 1.0
    assert p.efficiency == p.speedup


def test_one_level_is_sequential_stepping():
    p = predict(100, 1, step_cost=(1.0, 0.0), levels=1, cf=4, iters=3)
    assert p.time == 100 and p.step_calls == 100


def test_monotone_in_latency_and_ranks_help_when_latency_is_small():
    times = [predict(4096, 8, step_cost=(1e-5, 2e-5), latency=lat, levels=3, cf=4).time
             for lat in (0.0, 1e-5, 1e-4, 1e-3, 1e-2)]
    assert all(b > a for a, b in zip(times, times[1:]))
    sp = [predict(4096, P, step_cost=(1e-5, 2e-5), latency=1e-6, levels=4, cf=4).speedup
          for P in (1, 2, 4, 8, 16)]
    assert all(b > a for a, b in zip(sp, sp[1:]))


def test_uneven_split_and_empty_coarse_ranks_are_modelled():
    # T = 16, cf = 2, 4 levels on 4 ranks: rank 1 owns no coarsest point (as in the MPI tests)
    p = predict(16, 4, step_cost=(1.0, 0.0), cf=2, levels=4, relax="FCF", iters=2)
    assert np.isfinite(p.time) and p.time > 0
    assert predict(37, 3, step_cost=(1.0, 0.1), cf=2, levels=3).time > 0


def test_fit_recovers_a_linear_cost():
    ns = np.array([1, 2, 4, 8, 16, 64])
    c = fit_step_cost(ns, 3e-5 + 2e-6 * ns)
    assert c.a == pytest.approx(3e-5, rel=1e-6) and c.b == pytest.approx(2e-6, rel=1e-6)
    assert StepCost(1.0, 2.0)(3) == 7.0 and StepCost(1.0, 2.0)(0) == 0.0


def test_measure_step_cost_runs_and_is_positive():
    from mgrit_gru import init_gru
    params = init_gru(4, 8, 1, seed=0, dtype=np.float64)
    cost, samples = measure_step_cost(params, 2, ns=(1, 4, 16), repeat=1)
    assert len(samples) == 3 and all(t > 0 for _, t in samples)
    assert cost.a >= 0 and cost.b >= 0 and cost(16) > 0
    cost1, _ = measure_step_cost(params, 2, level=1, ns=(1, 4), repeat=1)
    assert cost1(4) > 0


# tests added after a mutation audit: each one killed a mutant the suite let through


HAND = dict(step_cost=(1.0, 0.0), cf=2, levels=2, iters=1, latency=0.0)


def test_perf_more_hand_paths():
    assert predict(8, 1, relax="FCF", skip=False, **HAND).time == 11
    assert predict(8, 1, relax="F", skip=True, **HAND).time == 6
    assert predict(8, 1, relax="F", skip=False, **dict(HAND, step_cost=(1.0, 0.0)), coarse_step_cost=(2.0, 0.0)).time == 14
    p = predict(8, 1, relax="F", skip=False, proj_per_step=0.5, **HAND)
    assert p.time == 13 and p.phases["setup"] == 4
    q = predict(8, 2, relax="F", skip=False, **dict(HAND, latency=0.1))
    assert q.messages == 2 and q.efficiency == pytest.approx(q.speedup / 2)
    assert predict(16, 1, relax="F", skip=False, cycle="F", step_cost=(1.0, 0.0), cf=2, levels=3, iters=1).time == 21
    c = StepCost(1.0, 0.0, ((1, 1.0), (4, 10.0)))
    assert c(2) == 4.0 and c(8) == 1.0


@pytest.mark.parametrize("options, message", [
    (dict(relax="X"), "relax must be one of"),
    (dict(relax=["F", "FCF", "F"]), "relax has 3 entries"),
    (dict(cycle="W"), "cycle must be"),
    (dict(iters=0), "iters must be an integer >= 1"),
    (dict(latency=-1.0), "latency must be a finite number >= 0"),
    (dict(skip="False"), "skip must be True or False"),
])
def test_predict_refuses_options_the_solver_refuses(options, message):
    """The model priced relax='X' as F, cycle='W' as V, iters=0 as a speedup of 28."""
    options = {"latency": 0.0, **options}
    with pytest.raises(ValueError, match=message):
        tiny(2, options.pop("latency"), **options)
