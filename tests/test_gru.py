"""The explicit NumPy GRU: gradients, the nn.GRU equations, dtypes, input validation, init."""
import warnings

import numpy as np
import pytest

import mgrit_gru
from mgrit_gru import check_gru_gradients, gru_backward, gru_forward, init_gru, step_forward
from mgrit_gru import gru as gru_module

T, B, I, H = 5, 2, 3, 4                                      # small: the all-entries check is fast


def _data(L=1, dtype=np.float64, seed=0):
    params = init_gru(I, H, L, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((L, B, H))).astype(dtype)
    return params, x, h0


# ----------------------------------------------------------------------------------------------
# gradients vs finite differences
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,L,dt", [
    ("classic", 1, 1.0), ("classic", 2, 1.0), ("classic", 1, 0.5), ("classic", 2, 0.5),
    ("implicit", 1, 1.0), ("implicit", 2, 1.0), ("implicit", 1, 4.0), ("implicit", 2, 0.3),
    ("implicit", 2, 4.0),
])
def test_gradients_match_finite_differences(cell, L, dt):
    res = check_gru_gradients(cell=cell, num_layers=L, dt=dt, seq_len=T, batch=B,
                              input_size=I, hidden_size=H, seed=1, tol=1e-6)
    expected = set(init_gru(I, H, L)) | {"x", "h0"}           # every parameter, x and h0
    assert set(res.errors) == expected
    assert res.ok, "\n" + res.table()
    assert res.max_error < 1e-6


# ----------------------------------------------------------------------------------------------
# the forward pass against the equations, written out independently here
# ----------------------------------------------------------------------------------------------
def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _reference(params, x, h0, update):
    """PyTorch nn.GRU documentation equations, one layer and one step at a time."""
    L = h0.shape[0]
    h = [h0[k].copy() for k in range(L)]
    ys = []
    for t in range(x.shape[0]):
        inp = x[t]
        for k in range(L):
            W_ir, W_iz, W_in = np.split(params[f"weight_ih_l{k}"], 3)   # gate order r, z, n
            W_hr, W_hz, W_hn = np.split(params[f"weight_hh_l{k}"], 3)
            b_ir, b_iz, b_in = np.split(params[f"bias_ih_l{k}"], 3)
            b_hr, b_hz, b_hn = np.split(params[f"bias_hh_l{k}"], 3)
            r = _sig(inp @ W_ir.T + b_ir + h[k] @ W_hr.T + b_hr)
            z = _sig(inp @ W_iz.T + b_iz + h[k] @ W_hz.T + b_hz)
            n = np.tanh(inp @ W_in.T + b_in + r * (h[k] @ W_hn.T + b_hn))
            h[k] = update(h[k], z, n)
            inp = h[k]
        ys.append(h[L - 1])
    return np.stack(ys), np.stack(h)


@pytest.mark.parametrize("L", [1, 2])
def test_classic_dt1_is_nn_gru(L):
    params, x, h0 = _data(L)
    y, h_T, _ = gru_forward(params, x, h0, cell="classic", dt=1.0)
    y_ref, h_ref = _reference(params, x, h0, lambda h, z, n: (1 - z) * n + z * h)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h_T, h_ref, rtol=0, atol=1e-13)
    y0, _, _ = gru_forward(params, x, cell="classic")          # h0 defaults to zeros
    np.testing.assert_allclose(y0, _reference(params, x, 0 * h0, lambda h, z, n: (1 - z) * n
                                              + z * h)[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell,dt,update", [
    ("classic", 0.5, lambda h, z, n: h + 0.5 * (1 - z) * (n - h)),
    ("implicit", 2.5, lambda h, z, n: (h + 2.5 * (1 - z) * n) / (1 + 2.5 * (1 - z))),
    ("implicit", 1.0, lambda h, z, n: (h + (1 - z) * n) / (1 + (1 - z))),
])
def test_cells_follow_their_update_rule(cell, dt, update):
    params, x, h0 = _data(L=2)
    y, h_T, _ = gru_forward(params, x, h0, cell=cell, dt=dt)
    y_ref, h_ref = _reference(params, x, h0, update)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h_T, h_ref, rtol=0, atol=1e-13)


def test_implicit_is_bounded_at_large_dt_classic_is_not():
    """The implicit step is a convex combination of h and n ∈ (-1, 1); explicit Euler is not."""
    params, x, h0 = _data(L=1)
    y_imp, _, _ = gru_forward(params, 3 * x, h0, cell="implicit", dt=50.0)
    y_cls, _, _ = gru_forward(params, 3 * x, h0, cell="classic", dt=50.0)
    assert np.abs(y_imp).max() < 1.0
    assert np.abs(y_cls).max() > 1.0


def test_step_forward_accepts_extra_batch_dimensions():
    """One call can advance many (interval, batch) states: same as looping over them."""
    params, _, _ = _data(L=2)
    rng = np.random.default_rng(3)
    gx0 = rng.standard_normal((6, B, 3 * H))
    h = rng.standard_normal((2, 6, B, H))
    h_new, _ = step_forward(params, gx0, h, cell="implicit", dt=2.0)
    for j in range(6):
        h_j, _ = step_forward(params, gx0[j], h[:, j], cell="implicit", dt=2.0)
        np.testing.assert_allclose(h_new[:, j], h_j, rtol=0, atol=1e-14)


def test_preallocated_cell_forward_matches_allocating():
    params, _, _ = _data()
    rng = np.random.default_rng(4)
    gx, h = rng.standard_normal((B, 3 * H)), rng.standard_normal((B, H))
    W_hh, b_hh = params["weight_hh_l0"], params["bias_hh_l0"]
    for cell in ("classic", "implicit"):
        h1, c1 = gru_module.cell_forward(gx, h, W_hh, b_hh, cell, 1.7)
        out = {g: np.full((B, H), np.nan) for g in ("r", "z", "n", "ghn", "h_new")}
        h2, c2 = gru_module.cell_forward(gx, h, W_hh, b_hh, cell, 1.7, out=out)
        assert h2 is out["h_new"]                              # written in place
        np.testing.assert_array_equal(h1, h2)
        for g in ("r", "z", "n", "ghn"):
            np.testing.assert_array_equal(c1[g], c2[g])


# ----------------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["classic", "implicit"])
def test_float32_in_float32_out(cell):
    p64, x64, h064 = _data(L=2)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x32, h032 = x64.astype(np.float32), h064.astype(np.float32)
    y, h_T, cache = gru_forward(p32, x32, h032, cell=cell, dt=2.0)
    assert y.dtype == np.float32 and h_T.dtype == np.float32
    dy = np.ones((T, B, H), np.float32)
    dh_T = np.ones((2, B, H), np.float32)
    grads, dx, dh0 = gru_backward(p32, cache, dy=dy, dh_T=dh_T)
    assert dx.dtype == np.float32 and dh0.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert set(grads) == set(p32) and all(grads[k].shape == p32[k].shape for k in p32)
    y64, _, cache64 = gru_forward(p64, x64, h064, cell=cell, dt=2.0)   # same numbers, rounded
    np.testing.assert_allclose(y, y64, rtol=0, atol=1e-5)
    g64, dx64, dh064 = gru_backward(p64, cache64, dy=dy.astype(np.float64),
                                    dh_T=dh_T.astype(np.float64))
    np.testing.assert_allclose(dx, dx64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dh0, dh064, rtol=1e-4, atol=1e-5)
    for k in g64:                                            # every parameter's gradient too
        np.testing.assert_allclose(grads[k], g64[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_the_cache_does_not_share_the_callers_input():
    # a training loop may refill its input buffer before the backward pass: x is copied
    params, x, h0 = _data(L=2)
    _, _, cache = gru_forward(params, x, h0)
    g_ref, dx_ref, _ = gru_backward(params, cache, dy=np.ones((T, B, H)))
    x[...] = 0.0
    h0[...] = 0.0
    g, dx, _ = gru_backward(params, cache, dy=np.ones((T, B, H)))
    for k in g_ref:
        np.testing.assert_array_equal(g[k], g_ref[k], err_msg=k)


def test_float64_input_follows_float32_params():
    p32 = init_gru(I, H, dtype=np.float32)
    y, h_T, _ = gru_forward(p32, np.zeros((T, B, I)), np.zeros((1, B, H)))
    assert y.dtype == np.float32 and h_T.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# bad input: a ValueError that names the problem, never a silent broadcast
# ----------------------------------------------------------------------------------------------
def _nan_at(a, idx=(0,)):
    a = a.copy()
    a[idx] = np.nan
    return a


@pytest.mark.parametrize("make,match", [
    (lambda p, x, h0: (p, x[0], h0), r"x must have shape \(T, B, I\)"),          # rank 2
    (lambda p, x, h0: (p, x[..., None], h0), r"x must have shape \(T, B, I\)"),  # rank 4
    (lambda p, x, h0: (p, x[:, :, :2], h0), "input_size"),                       # I mismatch
    (lambda p, x, h0: (p, x[:0], h0), "at least one time step"),
    (lambda p, x, h0: (p, _nan_at(x, (1, 0, 2)), h0), "x contains NaN or Inf"),
    (lambda p, x, h0: (p, np.where(x > 1, np.inf, x), h0), "x contains NaN or Inf"),
    (lambda p, x, h0: (p, x.astype(complex), h0), "x must be real numbers"),
    (lambda p, x, h0: (p, x.astype(object), h0), "x must be real numbers"),
    (lambda p, x, h0: (p, x, h0.astype(complex)), "h0 must be real numbers"),
    (lambda p, x, h0: (p, x, h0[:, :1]), r"h0 must have shape"),                 # no broadcast
    (lambda p, x, h0: (p, x[:, :1], h0), r"h0 must have shape"),                 # B mismatch
    (lambda p, x, h0: (p, x, h0[0]), r"h0 must have shape"),
    (lambda p, x, h0: (p, x, _nan_at(h0, (0, 1, 1))), "h0 contains NaN or Inf"),
    (lambda p, x, h0: (dict(p, weight_hh_l0=_nan_at(p["weight_hh_l0"])), x, h0),
     r"weight_hh_l0.*NaN"),
    (lambda p, x, h0: (dict(p, bias_ih_l0=np.full(3 * H, np.inf)), x, h0), r"bias_ih_l0.*Inf"),
    (lambda p, x, h0: (dict(p, bias_hh_l0=p["bias_hh_l0"][:-1]), x, h0), r"bias_hh_l0.*shape"),
    (lambda p, x, h0: (dict(p, weight_ih_l0=p["weight_ih_l0"].astype(np.float32)), x, h0),
     r"weight_ih_l0.*dtype"),
    (lambda p, x, h0: ({k: v for k, v in p.items() if k != "bias_ih_l0"}, x, h0),
     "missing 'bias_ih_l0'"),
    (lambda p, x, h0: (dict(p, weight_ih_l7=p["weight_ih_l0"]), x, h0), "unexpected.*weight_ih_l7"),
    (lambda p, x, h0: ({}, x, h0), "params must be a dict"),
    (lambda p, x, h0: ({k: (v[:0, :0] if k.startswith("weight_hh") else v[:0])
                        for k, v in p.items()}, x, h0), "hidden_size and input_size >= 1"),
])
def test_bad_inputs_raise_named_value_errors(make, match):
    params, x, h0 = _data(L=1)
    p, x, h0 = make(params, x, h0)
    with pytest.raises(ValueError, match=match):
        gru_forward(p, x, h0)


@pytest.mark.parametrize("dt", [0.0, -1.0, np.nan, np.inf, "abc", None])
def test_bad_dt(dt):
    params, x, h0 = _data()
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got"):
        gru_forward(params, x, h0, cell="implicit", dt=dt)


@pytest.mark.parametrize("cell", ["lstm", "Classic", "", None])
def test_unknown_cell(cell):
    params, x, h0 = _data()
    with pytest.raises(ValueError, match="cell must be one of"):
        gru_forward(params, x, h0, cell=cell)


def test_bad_cotangents():
    params, x, h0 = _data(L=2)
    _, _, cache = gru_forward(params, x, h0)
    with pytest.raises(ValueError, match="dy must have shape"):
        gru_backward(params, cache, dy=np.ones((T, B, H + 1)))
    with pytest.raises(ValueError, match="dy must have shape"):
        gru_backward(params, cache, dy=np.ones((B, H)))       # not broadcast over T
    with pytest.raises(ValueError, match="dh_T must have shape"):
        gru_backward(params, cache, dh_T=np.ones((1, B, H)))
    with pytest.raises(ValueError, match="dy contains NaN"):
        gru_backward(params, cache, dy=np.full((T, B, H), np.nan))


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_size=3, hidden_size=4, num_layers=0), "num_layers"),
    (dict(input_size=3, hidden_size=4, num_layers=-2), "num_layers"),
    (dict(input_size=3, hidden_size=4, num_layers=1.5), "num_layers"),
    (dict(input_size=0, hidden_size=4), "input_size"),
    (dict(input_size=3, hidden_size=0), "hidden_size"),
    (dict(input_size=3, hidden_size=True), "hidden_size"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), "dtype"),
])
def test_init_gru_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        init_gru(**kwargs)


# ----------------------------------------------------------------------------------------------
# init_gru: nn.GRU names, shapes, bounds, determinism
# ----------------------------------------------------------------------------------------------
def test_init_gru_names_shapes_bounds():
    I_, H_, L = 5, 16, 3
    params = init_gru(I_, H_, L, seed=7)
    expected = {}
    for k in range(L):
        expected.update({f"weight_ih_l{k}": (3 * H_, I_ if k == 0 else H_),
                         f"weight_hh_l{k}": (3 * H_, H_),
                         f"bias_ih_l{k}": (3 * H_,), f"bias_hh_l{k}": (3 * H_,)})
    assert {k: v.shape for k, v in params.items()} == expected
    bound = 1 / np.sqrt(H_)
    allv = np.concatenate([v.ravel() for v in params.values()])
    assert np.abs(allv).max() <= bound                          # U(-1/sqrt(H), 1/sqrt(H))
    assert allv.max() > 0.95 * bound and allv.min() < -0.95 * bound   # ... and fills it
    assert abs(allv.mean()) < 0.05 * bound
    assert all(v.dtype == np.float64 for v in params.values())
    assert all(v.dtype == np.float32 for v in init_gru(I_, H_, L, dtype=np.float32).values())
    assert mgrit_gru.gru_dims(params) == (L, I_, H_, np.float64)


def test_init_gru_seed_determinism():
    a, b, c = init_gru(3, 4, 2, seed=5), init_gru(3, 4, 2, seed=5), init_gru(3, 4, 2, seed=6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not any(np.array_equal(a[k], c[k]) for k in a)


def test_backward_rejects_a_cache_from_another_model():
    p = init_gru(3, 5, 2, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 2, 3))
    cache = gru_forward(p, x)[2]
    with pytest.raises(ValueError, match="not this model's cache"):
        gru_backward(init_gru(3, 6, 2, seed=0), cache)
    with pytest.raises(ValueError, match="third output of gru_forward"):
        gru_backward(p, {"hs": cache["hs"]})


def test_backward_refuses_params_changed_after_the_forward_pass():
    """The cache's gates belong to the old weights: mixing them with new ones gave gradients of
    no function, silently (mgrit_backward already refused this)."""
    p = init_gru(3, 4, seed=0)
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    y, _, cache = gru_forward(p, x)
    gru_backward(p, cache, dy=np.ones_like(y))               # unchanged: fine
    p["weight_hh_l0"] += 0.5                                 # an optimiser step, in place
    with pytest.raises(ValueError, match="params differ from the ones gru_forward ran with"):
        gru_backward(p, cache, dy=np.ones_like(y))


def test_backward_names_an_input_size_mismatch():
    cache = gru_forward(init_gru(3, 4, seed=0), np.zeros((5, 1, 3)))[2]
    with pytest.raises(ValueError, match="cache holds inputs of 3 features but params take "
                                         "input_size 5"):
        gru_backward(init_gru(5, 4, seed=0), cache)


@pytest.mark.parametrize("name", ["dy", "dh_T"])
def test_complex_cotangents_are_refused_not_cast(name):
    """A complex cotangent lost its imaginary part with only a ComplexWarning."""
    from mgrit_gru import mgrit_backward, mgrit_forward
    p = init_gru(3, 4, seed=0)
    x = np.random.default_rng(0).normal(size=(16, 2, 3))
    y, h_T, cache = gru_forward(p, x)
    bad = {"dy": np.ones_like(y) * (1 + 1j), "dh_T": np.ones_like(h_T) * (1 + 1j)}[name]
    with pytest.raises(ValueError, match=f"{name} must be real numbers"):
        gru_backward(p, cache, **{name: bad})
    _, _, info = mgrit_forward(p, x, levels=2, cf=4)
    with pytest.raises(ValueError, match=f"{name} must be real numbers"):
        mgrit_backward(p, info, levels=2, cf=4, **{name: bad})


def test_a_state_that_overflows_is_named_with_its_step():
    """The classic cell at dt = 10 blows up (the implicit one does not): numpy's overflow
    warning names no step; gru_forward's names the first non-finite one and the way out."""
    p = init_gru(3, 4, seed=1, dtype=np.float32)
    x = np.random.default_rng(1).normal(size=(256, 2, 3))
    with pytest.warns(RuntimeWarning, match=r"gru_forward: the state is NaN or Inf from step "
                                            r"79 on \(cell='classic', dt=10.0"):
        with np.errstate(all="ignore"):
            y = gru_forward(p, x, dt=10.0)[0]
    assert np.isfinite(y[78]).all() and not np.isfinite(y[79]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # the implicit cell: no warning
        assert np.isfinite(gru_forward(p, x, cell="implicit", dt=10.0)[0]).all()


@pytest.mark.parametrize("seed, dtype, message", [
    (-1, np.float64, "seed must be an integer >= 0, got -1"),
    (1.5, np.float64, "seed must be an integer >= 0, got 1.5"),
    (0, "foo", "dtype must be float32 or float64, got 'foo'")])
def test_init_gru_names_a_bad_seed_or_dtype(seed, dtype, message):
    with pytest.raises(ValueError, match=message):
        init_gru(3, 4, seed=seed, dtype=dtype)
