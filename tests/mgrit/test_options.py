"""`MGRITOptions`: checked once when built, and the one object every solve is configured by."""
import dataclasses
import json

import numpy as np
import pytest

from mgrit_gru.mgrit import MGRIT, Dahlquist, MGRITOptions
from mgrit_gru.mgrit.options import FIELDS


def test_defaults_are_the_solvers_documented_ones():
    o = MGRITOptions()
    assert (o.levels, o.cf, o.relax, o.cycle, o.max_iter, o.tol, o.skip) == \
        (3, 4, "FCF", "V", 10, 1e-9, True)
    assert o.cfs == [4, 4] and o.relax_per_level == ["FCF", "FCF", "FCF"]


@pytest.mark.parametrize("given,cfs,relax", [
    (dict(levels=3, cf="4,2"), [4, 2], ["FCF"] * 3),
    (dict(levels=3, cf=[8]), [8, 8], ["FCF"] * 3),           # one entry: every coarsening
    (dict(levels=3, relax="FCF,F,F"), [4, 4], ["FCF", "F", "F"]),
    (dict(levels=2, relax=("F",)), [4], ["F", "F"]),
    (dict(levels=1), [], ["FCF"]),
    (dict(levels=4, cf=np.array([2, 3, 4])), [2, 3, 4], ["FCF"] * 4),
])
def test_per_level_values_expand_to_one_per_level(given, cfs, relax):
    o = MGRITOptions(**given)
    assert o.cfs == cfs and o.relax_per_level == relax
    assert all(type(c) is int for c in o.cfs)


@pytest.mark.parametrize("given,message", [
    (dict(levels=0), "levels must be"),
    (dict(cf=1), r"cf must be an integer >= 2, got 1"),
    (dict(cf=2.5), "cf must be an integer"),                 # refused, not truncated
    (dict(levels=3, cf="4,2,2"), r"cf has 3 entries; 3 levels need 2"),
    (dict(relax="FCFC"), r"relax must be one of \('F', 'FCF'\), got 'FCFC'"),
    (dict(levels=3, relax="FCF,F"), r"relax has 2 entries, expected one per level \(3\)"),
    (dict(cycle="W"), "cycle must be one of"),
    (dict(max_iter=0), "max_iter must be"),
    (dict(tol=-1.0), "tol must be"),
    (dict(tol=float("nan")), "tol must be"),
    (dict(tol_type="rel"), "tol_type must be one of"),
    (dict(norm="1"), "norm must be one of"),
    (dict(skip="False"), "skip must be True or False"),      # bool("False") is True
    (dict(min_coarse=0), "min_coarse must be"),
    (dict(c_weight=0.0), "c_weight must be"),
    (dict(c_weight=2.5), r"c_weight must lie in \(0, 2\]"),
    (dict(coarse_input="mean"), "coarse_input must be one of"),
])
def test_a_bad_value_is_refused_by_name_when_built(given, message):
    with pytest.raises(ValueError, match=message):
        MGRITOptions(**given)


def test_options_are_frozen_and_replace_checks_like_the_constructor():
    o = MGRITOptions(levels=2, cf=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.levels = 5
    assert o.replace(tol=0.0).tol == 0.0 and o.tol == 1e-9   # a copy; o unchanged
    with pytest.raises(ValueError, match="cf must be an integer >= 2"):
        o.replace(cf=1)
    with pytest.raises(TypeError, match=r"no option\(s\) \['levles'\]"):
        o.replace(levles=3)


def test_build_applies_keywords_on_top_of_an_options_object():
    base = MGRITOptions(levels=2, cf=8, relax="F")
    assert MGRITOptions.build() == MGRITOptions()
    assert MGRITOptions.build(None, cf=2) == MGRITOptions(cf=2)
    assert MGRITOptions.build(base) is base
    assert MGRITOptions.build(base, tol=0.0) == MGRITOptions(levels=2, cf=8, relax="F", tol=0.0)
    with pytest.raises(ValueError, match="options must be an MGRITOptions, got dict"):
        MGRITOptions.build({"levels": 2})


def test_to_dict_is_json_and_rebuilds_an_equal_object():
    o = MGRITOptions(levels=3, cf="4,2", relax="FCF,F,F", skip=False, tol_type="relative")
    d = json.loads(json.dumps(o.to_dict()))
    assert sorted(d) == sorted(FIELDS)
    assert MGRITOptions(**d) == o


def test_the_solver_runs_the_same_given_options_or_keywords():
    """``MGRIT(problem, options)`` and ``MGRIT(problem, **keywords)`` are one solve; keywords
    given beside ``options`` override it."""
    def solve(*args, **kw):
        u, info = MGRIT(Dahlquist(np.array([0.95, 0.5]), 96), *args, **kw).solve()
        return np.asarray(u), info.residual_history

    opts = MGRITOptions(levels=3, cf=4, relax="F", max_iter=3, tol=0.0, skip=False)
    u1, r1 = solve(opts)
    u2, r2 = solve(levels=3, cf=4, relax="F", max_iter=3, tol=0.0, skip=False)
    assert np.array_equal(u1, u2) and r1 == r2 and len(r1) == 3
    u3, r3 = solve(opts, max_iter=1)
    assert len(r3) == 1 and r3[0] == r1[0]
    solver = MGRIT(Dahlquist(np.array([0.9]), 32), opts, relax="FCF")
    assert solver.options == opts.replace(relax="FCF")


def test_the_solver_refuses_an_unknown_option_by_name():
    with pytest.raises(TypeError, match="levles"):
        MGRIT(Dahlquist(np.array([0.9]), 32), levles=2)
