"""The gradient checker (`mgrit_gru.gradcheck`): it passes a correct gradient, catches a wrong
one, does not hide a NaN, and refuses arguments it cannot check with."""
import numpy as np
import pytest

import mgrit_gru
from mgrit_gru import check_gru_gradients, gradcheck
from mgrit_gru import gru as gru_module


def test_gradcheck_catches_a_broken_backward(monkeypatch):
    """The check above can fail: a 1% error in one VJP term is reported."""
    original = gru_module.cell_backward

    def broken(dh_new, cache, W_hh, cell="classic", dt=1.0, out_dgx=None, out_dgh=None):
        dh, dgx, dgh = original(dh_new, cache, W_hh, cell, dt, out_dgx, out_dgh)
        dgh *= 1.01                                          # wrong hidden-projection cotangent
        return dh, dgx, dgh
    monkeypatch.setattr(gru_module, "cell_backward", broken)
    res = check_gru_gradients(cell="implicit", num_layers=2, dt=2.0)
    assert not res.ok
    assert res.errors["weight_hh_l0"] > 1e-3 and res.errors["bias_hh_l1"] > 1e-3
    assert "FAIL" in res.table()


def test_gradcheck_max_error_does_not_hide_a_nan():
    res = mgrit_gru.GradcheckResult(errors={"a": 1e-9, "b": float("nan")}, checks={"a": 1, "b": 1})
    assert not res.ok and np.isnan(res.max_error)
    assert "FAIL: max relative error nan" in res.table()


def test_gradcheck_random_directions():
    res = check_gru_gradients(cell="classic", num_layers=2, dt=0.5, n_directions=3)
    assert res.mode == "directions" and res.ok and set(res.checks.values()) == {3}


def test_gradcheck_tool_on_a_known_function():
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    f = lambda p: float(np.sum(np.sin(p["w"])) * p["s"])       # noqa: E731
    good = lambda p: {"w": np.cos(p["w"]) * p["s"]}           # noqa: E731
    bad = lambda p: {"w": np.cos(p["w"]) * p["s"] * 1.001}    # noqa: E731
    inputs = {"w": w, "s": 2}                                  # "s" is not differentiated
    assert gradcheck(f, good, inputs, wrt=["w"]).ok
    res = gradcheck(f, bad, inputs, wrt=["w"])
    assert not res.ok and res.errors["w"] == pytest.approx(1e-3, rel=1e-2)
    assert np.array_equal(inputs["w"], w)                      # the point is left unchanged


def test_gradcheck_rejects_bad_arguments():
    f = lambda p: float(np.sum(p["w"]))                        # noqa: E731
    g = lambda p: {"w": np.ones_like(p["w"])}                  # noqa: E731
    with pytest.raises(ValueError, match="inputs"):
        gradcheck(f, g, [1.0, 2.0])
    with pytest.raises(ValueError, match="'v'"):
        gradcheck(f, g, {"w": np.ones(2)}, wrt=["v"])
    with pytest.raises(ValueError, match="shape"):
        gradcheck(f, lambda p: {"w": np.ones(3)}, {"w": np.ones(2)})
    with pytest.raises(ValueError, match="eps"):
        gradcheck(f, g, {"w": np.ones(2)}, eps=0.0)
    for bad in (0, 2.5, "3"):                                # not truncated, not parsed
        with pytest.raises(ValueError, match="n_directions must be a positive integer"):
            gradcheck(f, g, {"w": np.ones(2)}, n_directions=bad)
    for bad in ("x", None, np.nan):                          # a ValueError, not a TypeError
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            gradcheck(f, g, {"w": np.ones(2)}, eps=bad)
        with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
            gradcheck(f, g, {"w": np.ones(2)}, tol=bad)
    for inputs, wrt in (({"w": np.ones(2)}, []), ({}, None)):   # checking nothing is no PASS
        with pytest.raises(ValueError, match="nothing to check"):
            gradcheck(f, g, inputs, wrt=wrt)
