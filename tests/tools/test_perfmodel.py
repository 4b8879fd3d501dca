"""The performance model: its counts checked against the real solver run serially on a counting
problem, critical paths worked out by hand, and the properties any model must have."""
import math
import threading

import numpy as np
import pytest

from mgrit_gru.mgrit import MGRIT, Dahlquist, MGRITOptions
from mgrit_gru.tools import perfmodel
from mgrit_gru.tools.perfmodel import StepCost, fit_step_cost, measure_step_cost, predict


class CountingDahlquist(Dahlquist):
    """A Dahlquist problem that records every ``step`` call as (level, states advanced)."""

    def __init__(self, n_steps):
        super().__init__(np.array([0.9]), n_steps, coarse="euler")
        self.calls = []

    def step(self, level, u, t, span, out, g=None, store=False):
        self.calls.append((level, len(t)))
        super().step(level, u, t, span, out, g, store)


def serial_calls(T, levels, cf, relax, cycle, skip, iters):
    """The (level, n) of every step call of the real solver on one rank, ``iters`` cycles."""
    prob = CountingDahlquist(T)
    _, info = MGRIT(prob, levels=levels, cf=cf, relax=relax, cycle=cycle, skip=skip,
                    max_iter=iters, tol=0.0).solve()
    # the residual never reached 0: every cycle ran
    assert info.iterations == (1 if levels == 1 else iters)
    return prob.calls


CASES = [  # T, levels, cf, relax, cycle, skip, iters
    (8, 2, 2, "F", "V", False, 1),
    (64, 1, 4, "FCF", "V", True, 2),
    (64, 3, 4, "FCF", "V", True, 2),
    (100, 3, 2, "FCF", "F", False, 2),
    (37, 4, 2, "F", "F", True, 3),
    (50, 3, (3, 2), ("FCF", "F", "F"), "V", False, 2),
]


@pytest.mark.parametrize("T, levels, cf, relax, cycle, skip, iters", CASES)
def test_one_rank_counts_are_the_real_solvers(T, levels, cf, relax, cycle, skip, iters):
    """On one rank the critical path is every step call the solver makes: the model's calls,
    states and time must be those of a serial solve of a counting problem, priced per level."""
    calls = serial_calls(T, levels, cf, relax, cycle, skip, iters)
    opts = dict(cf=cf, levels=levels, relax=relax, cycle=cycle, skip=skip, iters=iters,
                latency=0.0)
    p = predict(T, 1, step_cost=(1.0, 0.0), **opts)
    assert p.step_calls == p.time == len(calls)
    assert p.states == sum(n for _, n in calls) == predict(T, 1, step_cost=(0.0, 1.0),
                                                           **opts).time
    fine, coarse = StepCost(0.3, 0.05), StepCost(0.7, 0.02)
    q = predict(T, 1, step_cost=fine, coarse_step_cost=coarse, proj_per_step=0.01, **opts)
    expected = sum((fine if level == 0 else coarse)(n) for level, n in calls) + 0.01 * T
    assert q.time == pytest.approx(expected, rel=1e-12)
    assert sum(q.phases.values()) == pytest.approx(q.time, rel=1e-12)
    # the phases are the solver's own timers (plus the set-up)
    timers = {"relax", "residual", "restrict", "correct", "coarsest"}
    assert set(q.phases) - {"setup"} <= timers


@pytest.mark.parametrize("T, P, levels, cf", [(16, 4, 4, 2), (37, 3, 3, 2), (64, 5, 3, 4),
                                              (40, 3, 1, 4)])
def test_ranks_share_the_serial_work(T, P, levels, cf):
    """Split over P ranks, the states stepped add up to the serial solve's (every sweep steps
    each point once, whoever owns it), also where a rank owns no coarse point (T = 16, cf = 2,
    4 levels, 4 ranks: rank 1 owns no point of level 3)."""
    opts = MGRITOptions(levels=levels, cf=cf, relax="FCF", max_iter=2, tol=0.0)
    ranks = perfmodel._replay(T, P, opts, [StepCost(1.0, 0.0)] * levels)
    serial = serial_calls(T, levels, cf, "FCF", "V", True, 2)
    assert sum(ranks.states) == sum(n for _, n in serial)
    # each rank's critical path is no shorter than its own work
    assert all(c.calls >= n for c, n in zip(ranks.clock, ranks.calls))
    if levels == 1:
        # the sequential solve, pipelined: every rank but the last sends its last point once
        assert ranks.sent == [1] * (P - 1) + [0]


def test_one_level_is_serial_stepping_on_any_number_of_ranks():
    # one rank: T single steps plus the projection, i.e. exactly the serial time
    p = predict(100, 1, step_cost=(0.3, 0.2), levels=1, cf=4, iters=3, proj_per_step=0.1)
    assert p.step_calls == 100
    assert p.time == pytest.approx(p.serial_time, rel=1e-12) and p.speedup == pytest.approx(1.0)
    # P ranks: the sequential solve is pipelined rank to rank (P - 1 messages), then one
    # Allreduce (2 ceil(log2 P) latencies)
    lam = 0.25
    for P in (2, 3, 5):
        q = predict(40, P, step_cost=(1.0, 0.0), levels=1, latency=lam)
        hops = (P - 1) + 2 * math.ceil(math.log2(P))
        assert q.step_calls == 40 and q.messages == P - 1
        assert q.time == pytest.approx(40 + hops * lam) and q.comm_time == pytest.approx(hops * lam)


def tiny(P, latency, **kw):
    opts = dict(step_cost=(1.0, 0.0), cf=2, levels=2, relax="F", iters=1, skip=False,
                latency=latency)
    opts.update(kw)
    return predict(8, P, **opts)


def test_hand_computed_critical_path_one_rank():
    # T = 8, cf = 2, two levels (N_1 = 4 coarse intervals), F-relaxation, one cycle without
    # skip, each call costs 1: F-relax (cf - 1 = 1 call) + C-point residual (1) + FAS
    # restriction (1 coarse call) + coarsest solve (N_1 = 4 sequential steps) + final F-relax
    # (1) + final residual (1)
    relax, residual, restrict, coarsest = 1 + 1, 1 + 1, 1, 4
    p = tiny(1, 0.0)
    assert p.time == p.step_calls == relax + residual + restrict + coarsest
    assert p.serial_time == 8
    assert p.phases == {"setup": 0.0, "relax": relax, "residual": residual,
                        "restrict": restrict, "coarsest": coarsest}
    # the cost per state instead: each phase steps T / cf = 4 states (F-points 1, 3, 5, 7;
    # C-points 2, 4, 6, 8; coarse points 1..4), six phases
    assert predict(8, 1, step_cost=(0.0, 1.0), cf=2, levels=2, relax="F", iters=1,
                   skip=False).time == 6 * 4


def test_hand_computed_critical_path_two_ranks():
    # The same solve on two ranks: rank 0 owns fine points 0..3 (coarse 0..1), rank 1 fine
    # 4..8 (coarse 2..4). Clocks (a = 1, b = 0, latency λ):
    #   F-relax: both step at 0 -> 1; rank 0 sends point 3 (arrives 1 + λ), rank 1 waits: 1 + λ
    #   residual: rank 0 -> 2, rank 1 -> 2 + λ; Allreduce (2 ceil(log2 2) = 2 latencies): 2 + 3λ
    #   restriction: rank 0 sends coarse point 1 (arrives 2 + 4λ) and steps -> 3 + 3λ; rank 1
    #     waits -> 2 + 4λ, steps -> 3 + 4λ
    #   coarsest: rank 0 steps point 1 -> 4 + 3λ, sends (arrives 4 + 4λ); rank 1 waits (its
    #     own clock, 3 + 4λ, is earlier: the restriction's message leaves the path) and steps
    #     points 2..4 -> 7 + 4λ
    #   final F-relax + residual on rank 1 -> 9 + 4λ (rank 0's ghost arrived at 5 + 4λ);
    #     Allreduce -> 9 + 6λ
    # On the path: 9 calls; 2 messages (the first F-relax ghost, the coarsest one); 6λ.
    lam = 0.1
    p = tiny(2, lam)
    assert p.time == pytest.approx(9 + 6 * lam)
    assert p.step_calls == 9
    assert p.comm_time == pytest.approx(6 * lam) and p.messages == 2
    assert p.efficiency == pytest.approx(p.speedup / 2)


@pytest.mark.parametrize("P", [1, 2, 4])
@pytest.mark.parametrize("cf, iters", [(2, 1), (4, 2)])
def test_two_level_path_without_latency_does_not_depend_on_P(P, cf, iters):
    # T = 64, two levels, F-relaxation, no skip, a = 1, b = 0, latency 0. Every rank owns whole
    # C-intervals, so an F-relaxation needs its ghost only after its cf - 1 stages, and the
    # last rank, last out of the pipelined coarsest solve, lies on the path: per cycle
    # F-relax (cf - 1) + residual (1) + restriction (1) + coarsest (N_1 = T / cf), then the
    # final F-relax and residual (cf - 1 + 1), whatever P.
    T, n1 = 64, 64 // cf
    p = predict(T, P, step_cost=(1.0, 0.0), cf=cf, levels=2, relax="F", iters=iters,
                skip=False, latency=0.0)
    assert p.time == p.step_calls == iters * (cf - 1 + 1 + 1 + n1) + cf


def test_per_level_costs_set_up_and_cycles_by_hand():
    # T = 8, cf = 2, two levels, one cycle, a = 1, one rank (as above)
    hand = dict(step_cost=(1.0, 0.0), cf=2, levels=2, iters=1, latency=0.0)
    # FCF: F (1) + C (1) + F (1), then residual, restriction, coarsest 4, final F + residual
    assert predict(8, 1, relax="FCF", skip=False, **hand).time == 3 + 1 + 1 + 4 + 1 + 1
    # skip: the first cycle goes straight to the coarsest solve (4), then final F + residual
    assert predict(8, 1, relax="F", skip=True, **hand).time == 4 + 1 + 1
    # coarse steps at 2: restriction (1 coarse call) and coarsest (4) cost double
    assert predict(8, 1, relax="F", skip=False, coarse_step_cost=(2.0, 0.0),
                   **hand).time == 1 + 1 + 2 * 1 + 2 * 4 + 1 + 1
    # set-up 0.5 per fine point 1..8
    p = predict(8, 1, relax="F", skip=False, proj_per_step=0.5, **hand)
    assert p.phases["setup"] == 0.5 * 8 and p.time == 9 + 0.5 * 8
    # F-cycle, T = 16, three levels (N = 16, 8, 4): level 0 F + residual + restriction (3);
    # on level 1 an F-cycle then a V-cycle, each F + residual + restriction + coarsest 4 +
    # F-relax (8); final F + residual (2)
    assert predict(16, 1, relax="F", skip=False, cycle="F", step_cost=(1.0, 0.0), cf=2,
                   levels=3, iters=1).time == 3 + 2 * 8 + 2
    # the table: linear interpolation inside it, a + b n outside
    c = StepCost(1.0, 0.0, ((1, 1.0), (4, 10.0)))
    assert c(2) == 1.0 + (10.0 - 1.0) / 3 and c(8) == 1.0


@pytest.mark.parametrize("relax", ["F", "FCF"])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_one_rank_never_beats_serial(relax, levels):
    """On one rank MGRIT does at least the serial work when a batched step costs no less per
    state than a serial step (b >= serial step): no speedup > 1 (to round-off: one level is
    exactly the serial work)."""
    p = predict(1024, 1, step_cost=(2e-6, 1e-5), serial_step=1.2e-5, cf=4, levels=levels,
                relax=relax, iters=2)
    assert p.speedup <= 1.0 + 1e-12
    assert p.efficiency == p.speedup


def test_monotone_in_latency_and_ranks_help_when_latency_is_small():
    times = [predict(4096, 8, step_cost=(1e-5, 2e-5), latency=lat, levels=3, cf=4).time
             for lat in (0.0, 1e-5, 1e-4, 1e-3, 1e-2)]
    assert all(b > a for a, b in zip(times, times[1:]))
    sp = [predict(4096, P, step_cost=(1e-5, 2e-5), latency=1e-6, levels=4, cf=4).speedup
          for P in (1, 2, 4, 8, 16)]
    assert all(b > a for a, b in zip(sp, sp[1:]))


def test_a_failing_rank_raises_its_error_instead_of_hanging(monkeypatch):
    step = perfmodel._CostingProblem.step

    def failing(self, level, *args, **kw):
        if self.rank == 1 and level == 1:
            raise ZeroDivisionError("rank 1 fails on level 1")
        return step(self, level, *args, **kw)

    monkeypatch.setattr(perfmodel._CostingProblem, "step", failing)
    caught = []

    def run():
        try:
            predict(64, 3, step_cost=(1.0, 0.0))
        except Exception as e:
            caught.append(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout=10)
    assert not th.is_alive(), "the other ranks kept waiting for the failed one"
    assert len(caught) == 1 and isinstance(caught[0], ZeroDivisionError)


def test_fit_recovers_a_linear_cost():
    ns = np.array([1, 2, 4, 8, 16, 64])
    c = fit_step_cost(ns, 3e-5 + 2e-6 * ns)
    assert c.a == pytest.approx(3e-5, rel=1e-6) and c.b == pytest.approx(2e-6, rel=1e-6)
    assert StepCost(1.0, 2.0)(3) == 1.0 + 2.0 * 3 and StepCost(1.0, 2.0)(0) == 0.0


def test_measure_step_cost_runs_and_is_positive():
    from mgrit_gru import init_gru
    params = init_gru(4, 8, 1, seed=0, dtype=np.float64)
    cost, samples = measure_step_cost(params, 2, ns=(1, 4, 16), repeat=1)
    assert len(samples) == 3 and all(t > 0 for _, t in samples)
    assert cost.a >= 0 and cost.b >= 0 and cost(16) > 0
    cost1, _ = measure_step_cost(params, 2, level=1, ns=(1, 4), repeat=1)
    assert cost1(4) > 0


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


def test_predict_refuses_more_ranks_than_intervals():
    with pytest.raises(ValueError, match="use at most 4 ranks"):
        predict(16, 5, step_cost=(1.0, 0.0), cf=4, levels=2)
