"""The backward pass by MGRIT (`mgrit_backward`) against BPTT (`gru_backward`) and finite differences.

docs/theory/mgrit.md, Properties: at convergence, MGRIT gradients = BPTT gradients = finite
differences. Below convergence the gradients are inexact; the error must be reported and fall
with the number of forward and backward iterations. Bad input gets a named ValueError.
"""
import warnings

import numpy as np
import pytest
from _solver_cases import B, H, I, TIGHT, bptt, gradient_case

import mgrit_gru as mg
from mgrit_gru.gradcheck import gradcheck
from mgrit_gru.mgrit import MGRITDivergedError
from mgrit_gru.tools import diagnostics


def _loss_seeds(loss, dy, dh_T):
    """Cotangents of: the last state (dh_T), every output (dy), or both."""
    return {"last": (None, dh_T), "outputs": (dy, None), "both": (dy, dh_T)}[loss]


def _rel(a, b, scale):
    """max |a - b| relative to ``scale`` (the size of the whole gradient, not of this tensor:
    dh0 can be tiny over long sequences, and a plain relative error of a tiny tensor is noise)."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - b))) / scale


def _compare(out, ref):
    """Worst error of every parameter gradient, dx and dh0, each against its tensor's max |.|
    floored by 1e-3 of the largest gradient entry overall."""
    grads, dx, dh0 = out[:3]
    rgrads, rdx, rdh0 = ref
    big = max(float(np.max(np.abs(v))) for v in list(rgrads.values()) + [rdx, rdh0])
    errs = {}
    for name, a, b in [(k, grads[k], rgrads[k]) for k in rgrads] + [("dx", dx, rdx),
                                                                     ("dh0", dh0, rdh0)]:
        assert a.shape == b.shape, name
        errs[name] = _rel(a, b, max(float(np.max(np.abs(b))), 1e-3 * big))
    return errs


# ----------------------------------------------------------------------------------------------
# at convergence: MGRIT = BPTT
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["classic", "implicit"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("loss", ["last", "outputs"])
def test_converged_gradients_equal_bptt(cell, layers, loss):
    """Every parameter gradient, dx and dh0 equal BPTT's to 1e-9 (T = 37: not a multiple of cf)."""
    params, x, h0, dy, dh_T = gradient_case(37, layers)
    dy, dh_T = _loss_seeds(loss, dy, dh_T)
    _, _, fwd = mg.mgrit_forward(params, x, h0, cell=cell, **TIGHT)
    out = mg.mgrit_backward(params, fwd, dy, dh_T, **TIGHT)
    assert fwd.converged and out[3].converged
    assert out[3].final_residual <= 1e-13
    errs = _compare(out, bptt(params, x, h0, dy, dh_T, cell))
    assert set(errs) == set(params) | {"dx", "dh0"}
    assert max(errs.values()) <= 1e-9, errs


@pytest.mark.parametrize("T, levels, cf, relax, skip, cell, dt", [
    (23, 3, 4, "FCF", True, "classic", 1.0),      # 23 = 5*4 + 3: trailing F-points
    (50, 2, 3, "F", False, "implicit", 0.5),      # 50 = 16*3 + 2, F-relaxation, no skip
    (41, 4, 2, "F", True, "classic", 1.0),        # four levels, cf 2
    (13, 2, 5, "FCF", False, "implicit", 2.0),    # a coarse grid of two intervals
])
def test_converged_gradients_uneven_lengths_and_options(T, levels, cf, relax, skip, cell, dt):
    """Sequence lengths that are not multiples of cf, other hierarchies, loss on both."""
    params, x, h0, dy, dh_T = gradient_case(T, 2, seed=T)
    opts = dict(levels=levels, cf=cf, relax=relax, skip=skip, **TIGHT)
    _, _, fwd = mg.mgrit_forward(params, x, h0, cell=cell, dt=dt, **opts)
    out = mg.mgrit_backward(params, fwd, dy, dh_T, **opts)
    assert out[3].converged
    errs = _compare(out, bptt(params, x, h0, dy, dh_T, cell, dt))
    assert max(errs.values()) <= 1e-9, errs


def test_backward_options_are_independent_of_the_forward_ones():
    """A forward by sequential stepping (1 level) and a backward by 3-level MGRIT, and vice versa."""
    params, x, h0, dy, dh_T = gradient_case(30, 1)
    ref = bptt(params, x, h0, dy, dh_T)
    _, _, fwd = mg.mgrit_forward(params, x, h0, levels=1)
    out = mg.mgrit_backward(params, fwd, dy, dh_T, levels=3, cf=3, relax="F", **TIGHT)
    assert out[3].options["levels"] == 3 and out[3].options["cf"] == [3, 3]
    assert max(_compare(out, ref).values()) <= 1e-9
    _, _, fwd = mg.mgrit_forward(params, x, h0, levels=3, cf=2, **TIGHT)
    out = mg.mgrit_backward(params, fwd, dy, dh_T, levels=1)
    assert out[3].iterations == 1 and max(_compare(out, ref).values()) <= 1e-9


def test_no_cotangent_is_refused_like_bptt():
    """Without dy and dh_T every gradient would be zero: both backward passes refuse it."""
    params, x, h0, _, _ = gradient_case(20, 1)
    _, _, fwd = mg.mgrit_forward(params, x, h0, **TIGHT)
    with pytest.raises(ValueError, match="mgrit_backward needs a cotangent: dy .* dh_T"):
        mg.mgrit_backward(params, fwd)
    cache = mg.gru_forward(params, x, h0)[2]
    with pytest.raises(ValueError, match="gru_backward needs a cotangent: dy .* dh_T"):
        mg.gru_backward(params, cache)


# ----------------------------------------------------------------------------------------------
# finite differences through the MGRIT path
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["classic", "implicit"])
def test_finite_differences_through_mgrit(cell):
    """The loss is computed by mgrit_forward (tight tol), the gradient by mgrit_backward; the
    central-difference check passes for every parameter, x and h0 (random directions)."""
    T, L = 11, 2
    params, x, h0, _, _ = gradient_case(T, L, seed=3)
    rng = np.random.default_rng(7)
    wy, wh = rng.normal(size=(T, B, H)), rng.normal(size=(L, B, H))
    opts = dict(levels=3, cf=2, relax="FCF", **TIGHT)

    def split(inp):
        return {k: inp[k] for k in params}, inp["x"], inp["h0"]

    def loss(inp):
        p, xx, hh = split(inp)
        y, h_T, info = mg.mgrit_forward(p, xx, hh, cell=cell, **opts)
        assert info.converged
        return float(np.sum(wy * y) + np.sum(wh * h_T))

    def grad(inp):
        p, xx, hh = split(inp)
        _, _, fwd = mg.mgrit_forward(p, xx, hh, cell=cell, **opts)
        grads, dx, dh0, info = mg.mgrit_backward(p, fwd, wy, wh, **opts)
        assert info.converged
        return {**grads, "x": dx, "h0": dh0}

    res = gradcheck(loss, grad, {**params, "x": x, "h0": h0}, n_directions=3, seed=1)
    assert set(res.errors) == set(params) | {"x", "h0"}
    assert res.ok, res.table()
    assert res.max_error < 1e-7, res.table()


# ----------------------------------------------------------------------------------------------
# inexact solves: the error is reported and falls with the iterations
# ----------------------------------------------------------------------------------------------
ITERS = (1, 2, 3, 4, None)                                  # None: to convergence


@pytest.fixture(scope="module")
def error_grid():
    params, x, h0, dy, _ = gradient_case(64, 1, seed=5)
    ref = bptt(params, x, h0, dy, None)
    grid, fres, bres = diagnostics.gradient_error_grid(params, x, dy, h0=h0, fwd_iters=ITERS,
                                                       bwd_iters=ITERS, reference=ref,
                                                       return_residuals=True)
    return grid, fres, bres


def test_gradient_error_falls_with_backward_iterations(error_grid):
    grid, _, bres = error_grid
    conv_fwd = grid[-1]                                     # forward converged, backward 1..4, conv.
    assert np.all(np.diff(conv_fwd) < 0), conv_fwd
    assert conv_fwd[0] > 1e-2 and conv_fwd[3] < 1e-2 * conv_fwd[0], conv_fwd
    assert conv_fwd[-1] < 1e-12
    # the backward solve reports its own inexactness: its final residual falls alongside
    assert np.all(np.diff(bres[-1, :4]) < 0) and bres[-1, 0] > 1e-3 and bres[-1, -1] < 1e-12


def test_gradient_error_falls_with_forward_iterations(error_grid):
    grid, fres, _ = error_grid
    conv_bwd = grid[:, -1]                                  # backward converged, forward 1..4, conv.
    assert np.all(np.diff(conv_bwd) < 0), conv_bwd
    assert conv_bwd[3] < 1e-2 * conv_bwd[0] and conv_bwd[-1] < 1e-12
    assert np.all(np.diff(fres[:4, 0]) < 0) and fres[-1, 0] < 1e-12
    diag = np.diag(grid)                                    # both budgets together: (k, k)
    assert np.all(np.diff(diag) < 0), diag


def test_inexact_backward_reports_its_residual():
    """With a budget below convergence the info says so: not converged, max_iter cycles, and a
    final residual that matches the gradient error's order (the adjoint is linear)."""
    params, x, h0, dy, dh_T = gradient_case(64, 2, seed=2)
    _, _, fwd = mg.mgrit_forward(params, x, h0, **TIGHT)
    out = mg.mgrit_backward(params, fwd, dy, dh_T, max_iter=2, tol=1e-12)
    info = out[3]
    assert not info.converged and not info.diverged and info.iterations == 2
    assert len(info.residual_history) == 2 and info.final_residual > 1e-12
    err = diagnostics.gradient_error(out, bptt(params, x, h0, dy, dh_T), per_tensor=True)
    assert set(err) == {"all", "dx", "dh0"} | set(params)
    assert 1e-8 < err["all"] < 1


@pytest.mark.parametrize("cell", ["classic", "implicit"])
def test_inexact_forward_gives_the_vjp_at_its_own_states(cell):
    """After 1 forward cycle the states are not a GRU trajectory; the backward must still be the
    exact adjoint of Φ linearised at those states (checked by an independent serial loop that
    recomputes every step from u_i), for every tensor including the upper layer's W_ih."""
    from mgrit_gru.gru import param_grads, step_backward, step_forward
    rng = np.random.default_rng(3)
    T, B, I, H, L = 24, 2, 3, 4, 2
    p = mg.init_gru(I, H, L, seed=5)
    x = rng.normal(size=(T, B, I))
    dy, dhT = rng.normal(size=(T, B, H)), rng.normal(size=(L, B, H))
    _, _, fwd = mg.mgrit_forward(p, x, cell=cell, levels=2, cf=4, max_iter=1, tol=0.0,
                                 skip=False)
    assert fwd.final_residual > 1e-3                         # really an inexact forward solve
    u = fwd.solver.U[0][1:]                                  # its states u_0 .. u_T
    g, dx, dh0, _ = mg.mgrit_backward(p, fwd, dy, dhT, levels=2, cf=4, max_iter=60, tol=1e-14)
    gx0 = x @ p["weight_ih_l0"].T + p["bias_ih_l0"]
    lam = dhT.copy()
    lam[L - 1] += dy[T - 1]
    dgx = [np.empty((T, B, 3 * H)) for _ in range(L)]
    dgh = [np.empty((T, B, 3 * H)) for _ in range(L)]
    hplus = np.empty((T, L, B, H))
    for i in reversed(range(T)):
        hplus[i], caches = step_forward(p, gx0[i], u[i], cell, 1.0)   # Φ(u_i), recomputed
        lam, gxs, ghs = step_backward(p, caches, lam, cell, 1.0)
        for k in range(L):
            dgx[k][i], dgh[k][i] = gxs[k], ghs[k]
        if i >= 1:
            lam[L - 1] += dy[i - 1]
    ref = param_grads(p, [x, hplus[:, 0]], [u[:-1, 0], u[:-1, 1]], dgx, dgh)
    for k in ref:
        assert np.abs(g[k] - ref[k]).max() <= 1e-10 * np.abs(ref[k]).max(), k
    assert np.abs(dx - dgx[0] @ p["weight_ih_l0"]).max() < 1e-10
    assert np.abs(dh0 - lam).max() < 1e-10


# ----------------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------------
def test_float32_runs_and_stays_float32():
    params, x, h0, dy, dh_T = gradient_case(40, 2, dtype=np.float32)
    _, _, fwd = mg.mgrit_forward(params, x, h0, tol=1e-5, max_iter=20)
    grads, dx, dh0, info = mg.mgrit_backward(params, fwd, dy.astype(np.float64), dh_T,
                                             tol=1e-5, max_iter=20)
    assert info.converged
    assert all(g.dtype == np.float32 for g in grads.values())
    assert dx.dtype == np.float32 and dh0.dtype == np.float32
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    ref = bptt(p64, x.astype(np.float64), h0.astype(np.float64), dy.astype(np.float64),
                dh_T.astype(np.float64))
    assert diagnostics.gradient_error((grads, dx, dh0), ref) < 1e-4


# ----------------------------------------------------------------------------------------------
# bad input and divergence
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def solved():
    params, x, h0, dy, dh_T = gradient_case(16, 2)
    _, _, fwd = mg.mgrit_forward(params, x, h0, max_iter=3)
    return params, fwd, dy, dh_T


@pytest.mark.parametrize("kwargs, match", [
    (dict(dy=np.zeros((15, B, H))), r"dy must have shape \(16, 2, 5\)"),
    (dict(dy=np.zeros((16, B, H + 1))), r"dy rows must have shape"),
    (dict(dh_T=np.zeros((1, B, H))), r"dh_T must have shape \(2, 2, 5\)"),
    (dict(dy_nan=True), "dy contains NaN"),
    (dict(dh_T_inf=True), "dh_T contains NaN or Inf"),
    (dict(dy_slice=(1, 16)), r"dy holds outputs 1 .. 15 but this rank's adjoint needs 0 .. 15"),
    (dict(dy_slice=(0, 15)), r"dy holds outputs 0 .. 14 but"),   # were wrapped or zero-filled
])
def test_bad_cotangents_are_named(solved, kwargs, match):
    params, fwd, dy, dh_T = solved
    if kwargs.pop("dy_nan", False):
        kwargs["dy"] = dy.copy()
        kwargs["dy"][3, 1, 2] = np.nan
    if kwargs.pop("dh_T_inf", False):
        kwargs["dh_T"] = dh_T.copy()
        kwargs["dh_T"][1, 0, 0] = np.inf
    if "dy_slice" in kwargs:
        a, b = kwargs.pop("dy_slice")
        kwargs["dy"] = mg.TimeSlice(dy[a:b].copy(), a, 16)
    assert fwd.dy_rows == (0, 16)
    with pytest.raises(ValueError, match=match):
        mg.mgrit_backward(params, fwd, **kwargs)


def test_fwd_must_be_the_forward_info(solved):
    params, fwd, dy, _ = solved
    x = np.zeros((16, B, I))
    not_infos = [mg.mgrit_forward(params, x, max_iter=1),         # the whole tuple
                 mg.gru_forward(params, x)[2],                     # a BPTT cache
                 mg.mgrit_backward(params, fwd, dy)[3],            # a backward info
                 None]
    for bad in not_infos:
        with pytest.raises(ValueError, match="fwd must be the info returned by mgrit_forward"):
            mg.mgrit_backward(params, bad, dy)


def test_params_changed_since_the_forward_are_refused():
    """Also when changed *in place* (what an optimizer step does): the forward info keeps a
    snapshot, not a reference."""
    params, x, h0, dy, _ = gradient_case(16, 2)
    _, _, fwd = mg.mgrit_forward(params, x, h0)
    same = {k: v.copy() for k, v in params.items()}
    mg.mgrit_backward(same, fwd, dy)                           # equal values: fine
    other = {k: v.copy() for k, v in params.items()}
    other["bias_hh_l1"][0] += 1e-3
    with pytest.raises(ValueError, match="params differ"):
        mg.mgrit_backward(other, fwd, dy)
    params["weight_hh_l0"] -= 1e-3                             # an in-place SGD step
    with pytest.raises(ValueError, match="params differ"):
        mg.mgrit_backward(params, fwd, dy)
    one_layer = mg.init_gru(I, H, 1)
    with pytest.raises(ValueError, match="params differ"):
        mg.mgrit_backward(one_layer, fwd, dy[..., :H])


def test_outputs_do_not_alias_the_states_the_backward_uses():
    """y and h_T are the caller's to change in place (a loss computed in place, a reused
    buffer): the backward pass must not see it. y used to be a view of the solver's states."""
    params, x, h0, dy, _ = gradient_case(16, 2)
    y, h_T, fwd = mg.mgrit_forward(params, x, h0, max_iter=2)
    grads, dx, dh0, _ = mg.mgrit_backward(params, fwd, dy, max_iter=1)
    y[...] = np.nan
    h_T[...] = np.nan
    grads2, dx2, dh02, _ = mg.mgrit_backward(params, fwd, dy, max_iter=1)
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k])
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dh02, dh0)


def test_divergence_is_reported():
    """Exploding gradients (large recurrent weights): the adjoint grows along the sequence and
    MGRIT's residual grows; the solve stops, warns and sets info.diverged."""
    params = mg.init_gru(I, 8, 1, seed=1)
    params["weight_hh_l0"] *= 10.0
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(128, B, I)), rng.normal(size=(128, B, 8))
    _, _, fwd = mg.mgrit_forward(params, x, levels=1)
    with pytest.warns(RuntimeWarning, match="MGRIT diverged"):
        info = mg.mgrit_backward(params, fwd, dy, relax="F", max_iter=40, tol=0.0)[3]
    assert info.diverged and not info.converged and info.iterations < 40


def test_overflow_raises(solved):
    params, fwd, dy, _ = solved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # numpy's overflow warning
        with pytest.raises(MGRITDivergedError, match="residual became"):
            mg.mgrit_backward(params, fwd, dy * 1e306)


def test_serial_gather_local_reports_dx_rows():
    """gather="local" works without MPI too: dx is the whole sequence and info.dx_rows says so
    (it was set only under MPI, so code written for both crashed on one rank)."""
    params, x, h0, dy, _ = gradient_case(20, 1)
    _, _, fwd = mg.mgrit_forward(params, x, h0, gather="local", **TIGHT)
    grads, dx, dh0, info = mg.mgrit_backward(params, fwd, dy, gather="local", **TIGHT)
    assert info.dx_rows == (0, 20) and dx.shape == (20, B, I)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("gather", ["all", "local"])
def test_without_input_grad_the_same_gradients_and_no_dx(layers, gather):
    """input_grad=False (what training asks for) skips dx alone: every parameter gradient and
    dh0 are bit for bit the full call's, for BPTT and for MGRIT (inexact: 1 cycle)."""
    params, x, h0, dy, dh_T = gradient_case(24, layers)
    cache = mg.gru_forward(params, x, h0)[2]
    full, part = (mg.gru_backward(params, cache, dy=dy, dh_T=dh_T, input_grad=g)
                  for g in (True, False))
    assert full[1].shape == (24, B, I) and part[1] is None
    _, _, fwd = mg.mgrit_forward(params, x, h0, max_iter=2, gather=gather)
    m_full, m_part = (mg.mgrit_backward(params, fwd, dy, dh_T, max_iter=1, gather=gather,
                                        input_grad=g) for g in (True, False))
    assert m_full[1].shape == (24, B, I) and m_part[1] is None
    assert m_part[3].dx_rows == m_full[3].dx_rows == (0, 24)
    for a, b in [(full, part), (m_full, m_part)]:
        assert set(a[0]) == set(b[0]) == set(params)
        for k in a[0]:
            np.testing.assert_array_equal(b[0][k], a[0][k], err_msg=k)
        np.testing.assert_array_equal(b[2], a[2])
    with pytest.raises(ValueError, match="input_grad must be True or False, got 'no'"):
        mg.gru_backward(params, cache, dy=dy, input_grad="no")
    with pytest.raises(ValueError, match="input_grad must be True or False, got 0"):
        mg.mgrit_backward(params, fwd, dy, input_grad=0)
