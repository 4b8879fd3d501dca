"""The forward record: what `mgrit_backward` needs from `mgrit_forward`, as declared fields;
and `MGRITOptions` flowing through both solves and the ranks' agreement check."""
import dataclasses

import numpy as np
import pytest

from mgrit_gru import init_gru, mgrit_backward, mgrit_forward
from mgrit_gru.mgrit import MGRITInfo, MGRITOptions
from mgrit_gru.solve.ranks import same_on_every_rank
from mgrit_gru.solve.record import BackwardInfo, ForwardInfo, extend


def _problem(T=32, seed=0):
    p = init_gru(3, 5, num_layers=2, seed=seed)
    x = np.random.default_rng(seed).standard_normal((T, 2, 3))
    return p, x


def test_the_forward_record_declares_what_the_backward_needs():
    p, x = _problem()
    y, _, info = mgrit_forward(p, x, levels=2, cf=4)
    assert isinstance(info, ForwardInfo) and isinstance(info, MGRITInfo)
    declared = {f.name for f in dataclasses.fields(ForwardInfo)}
    assert {"problem", "solver", "backend", "params_snapshot", "y_rows", "dy_rows",
            "device_io"} <= declared
    assert set(vars(info)) == declared                       # nothing attached afterwards
    assert info.y_rows == (0, 32) and info.dy_rows == (0, 32) and info.backend == "numpy"
    assert all(np.array_equal(info.params_snapshot[k], p[k]) and
               info.params_snapshot[k] is not p[k] for k in p)
    _, _, _, info_b = mgrit_backward(p, info, dy=np.ones_like(y), levels=2, cf=4)
    assert isinstance(info_b, BackwardInfo) and set(vars(info_b)) == \
        {f.name for f in dataclasses.fields(BackwardInfo)}
    assert info_b.dx_rows == (0, 32)


def test_extend_keeps_the_solves_history():
    base = MGRITInfo(residual_history=[1.0, 0.1], iterations=2, converged=True)
    info = extend(base, BackwardInfo, dx_rows=(3, 7))
    assert (info.residual_history, info.iterations, info.converged, info.dx_rows) == \
        ([1.0, 0.1], 2, True, (3, 7))


def test_options_object_and_keywords_give_the_same_solves():
    p, x = _problem()
    opts = MGRITOptions(levels=3, cf=2, relax="F", max_iter=2, tol=0.0)
    y1, h1, f1 = mgrit_forward(p, x, options=opts)
    y2, h2, f2 = mgrit_forward(p, x, levels=3, cf=2, relax="F", max_iter=2, tol=0.0)
    assert np.array_equal(y1, y2) and np.array_equal(h1, h2)
    assert f1.residual_history == f2.residual_history and f1.iterations == 2
    dy = np.random.default_rng(1).standard_normal(y1.shape)
    g1, dx1, dh1, b1 = mgrit_backward(p, f1, dy=dy, options=opts.replace(max_iter=3))
    g2, dx2, dh2, b2 = mgrit_backward(p, f2, dy=dy, options=opts, max_iter=3)   # keyword wins
    assert b1.iterations == b2.iterations == 3
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)
    assert np.array_equal(dx1, dx2) and np.array_equal(dh1, dh2)


def test_bad_options_are_refused_before_any_solve():
    p, x = _problem()
    with pytest.raises(ValueError, match="cf must be an integer >= 2"):
        mgrit_forward(p, x, options=MGRITOptions(levels=2), cf=1)
    with pytest.raises(ValueError, match="options must be an MGRITOptions, got dict"):
        mgrit_forward(p, x, options={"levels": 2})


class _Ranks:
    """Stand-in communicator: allgather returns what each rank would contribute."""

    def __init__(self, contributions):
        self.size, self._all = len(contributions), contributions
        self.comm = self

    def allgather(self, mine):
        return [c if c is not None else mine for c in self._all]


def test_the_agreement_check_compares_the_options_object():
    mine = MGRITOptions(levels=3, cf=4)
    same = _Ranks([None, None])
    same_on_every_rank(same, mine, T=64)                     # no error
    other = {**MGRITOptions(levels=3, cf=2).to_dict(), "T": 64}
    with pytest.raises(ValueError, match=r"the ranks disagree on cf \(rank 0: 2, rank 1: 4\)"):
        same_on_every_rank(_Ranks([other, None]), mine, T=64)
    with pytest.raises(ValueError, match=r"disagree on T \(rank 0: 64, rank 1: 32\)"):
        same_on_every_rank(_Ranks([{**mine.to_dict(), "T": 64}, None]), mine, T=32)
