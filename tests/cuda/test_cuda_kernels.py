"""The CUDA kernels against the NumPy reference (mgrit_gru.gru).

On CPU (CI) the kernels run under numba's CUDA simulator (tests/conftest.py sets
NUMBA_ENABLE_CUDASIM=1), on tiny sizes because the simulator runs every thread as a Python thread.
Every output is poisoned with NaN before the launch, so an element a kernel forgets to write fails.
`test_ptx_sm90` compiles every kernel for sm_90 in a subprocess without the simulator, which
catches the typing errors the simulator cannot see. Tests marked `real_gpu` need a real GPU.
"""
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from _cuda_helpers import DTYPES, GATES, close, nan, real_gpu
from _nosim import run_without_simulator

from mgrit_gru.cuda import CudaGRU
from mgrit_gru.gru import gru_backward, gru_forward, init_gru, step_backward, step_forward
from mgrit_gru.cuda.problems import input_gradient

n, L2, B, H, I, T = 3, 2, 2, 4, 3, 5                         # intervals, layers, batch, hidden, input, steps


def setup(dtype, L, seed=0):
    """Parameters, inputs x (T, B, I), states u (n, L, B, H), time indices t, the projection gx0."""
    p = init_gru(I, H, L, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    u = rng.standard_normal((n, L, B, H)).astype(dtype)
    t = np.array([4, 0, 2], np.int64)                        # unsorted, not contiguous
    gx0 = (x @ p["weight_ih_l0"].T + p["bias_ih_l0"]).astype(dtype)
    return p, x, u, t, gx0


def ref_step(p, gx0, u, t, cell, dt):
    """NumPy Φ on (n, L, B, H) states: the reference takes the layer axis first."""
    h_new, caches = step_forward(p, gx0[t], u.transpose(1, 0, 2, 3), cell, dt)
    return h_new.transpose(1, 0, 2, 3), caches


def ref_vjp(p, caches, lam, cell, dt):
    dh, dgx, dgh = step_backward(p, caches, lam.transpose(1, 0, 2, 3), cell, dt)
    return dh.transpose(1, 0, 2, 3), np.stack(dgx, 1), np.stack(dgh, 1)   # (n, L, B, ·)


# ----------------------------------------------------------------------------------------------
# input projection
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_project(dtype):
    p, x, _, _, gx0 = setup(dtype, 1)
    be = CudaGRU(p)
    out = be.to_device(nan((T, B, 3 * H), dtype))
    be.project(be.to_device(x), out=out)
    close(be.to_host(out), gx0, dtype)


# ----------------------------------------------------------------------------------------------
# the step Φ
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["classic", "implicit"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("forcing", [False, True])
def test_step(dtype, cell, L, forcing):
    """Fine step (the model's cell, dt = 0.7 to exercise dt) with gate store, vs step_forward."""
    p, _, u, t, gx0 = setup(dtype, L)
    be = CudaGRU(p, cell, bt=1 if L == 1 else 4)             # bt = 4: 6 rows = a full and a partial tile
    g = np.random.default_rng(7).standard_normal(u.shape).astype(dtype) if forcing else None
    out = be.to_device(nan(u.shape, dtype))
    gates = {k: be.to_device(nan((T, L, B, H), dtype)) for k in GATES}
    be.step(be.to_device(u), be.to_device(t, np.int64), be.to_device(gx0), 0.7, out,
            g=None if g is None else be.to_device(g), gates=gates)
    want, caches = ref_step(p, gx0, u, t, cell, 0.7)
    close(be.to_host(out), want + (g if forcing else 0), dtype)
    for k in GATES:
        tab = be.to_host(gates[k])
        close(tab[t], np.stack([c[k] for c in caches], 1), dtype)
        assert np.all(np.isnan(np.delete(tab, t, axis=0))), "gates written outside rows t"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L, short, fine", [(1, False, True), (2, True, True), (2, False, False)])
@pytest.mark.parametrize("bt", [2, 4])                       # 6 rows: 3 full tiles / 1 + a partial
def test_sweep_is_m_steps_per_interval(dtype, L, short, fine, bt):
    """`sweep` (one launch of an F-relaxation) = m reference steps per interval: n = 3
    intervals of cf = 3 in a level array, u = the C-points, out = the rows from the first
    F-point on (short: the last interval has one F-point), FAS forcing on every F-point, input
    rows t[i] + k*tstep, gates stored at tg[i] + k. C-points, rows past out and gate rows
    nobody owns stay NaN."""
    cf, m, tstep = 3, 2, 2
    p = init_gru(I, H, L, seed=5, dtype=dtype)
    rng = np.random.default_rng(5)
    gx = rng.standard_normal((12, B, 3 * H)).astype(dtype)
    level = nan((3 * cf + 1, L, B, H), dtype)
    level[0::cf] = rng.standard_normal((4, L, B, H))         # C-points (the 4th: not an input)
    g = rng.standard_normal(level.shape).astype(dtype)
    t, tg = np.array([0, 5, 2], np.int64), np.array([0, 2, 6], np.int64)   # any rows
    n_rows = 2 * cf + (1 if short else m)                    # out = level[1 : 1 + n_rows]
    cell, dt = ("classic", 0.7) if fine else ("implicit", float(cf))   # coarse: implicit cell
    be = CudaGRU(p, "classic", bt=bt)
    d_level, d_g = be.to_device(level), be.to_device(g)
    gates = {k: be.to_device(nan((8, L, B, H), dtype)) for k in GATES}
    be.sweep(d_level[0:3 * cf:cf], be.to_device(t, np.int64), be.to_device(gx), dt,
             d_level[1:1 + n_rows], m, cf, tstep, fine=fine, g=d_g[1:1 + n_rows],
             gates=gates, tg=be.to_device(tg, np.int64))
    got, want = be.to_host(d_level), level.copy()
    tabs = {k: nan((8, L, B, H), dtype) for k in GATES}
    for i in range(3):
        h = level[i * cf][None]
        for k in range(m):
            row = i * cf + 1 + k
            if row > n_rows:
                break
            h, caches = ref_step(p, gx, h, np.array([t[i] + k * tstep]), cell, dt)
            h = h + g[row][None]
            want[row] = h[0]
            for name in GATES:
                tabs[name][tg[i] + k] = np.stack([c[name] for c in caches], 1)[0]
    close_nan(got, want, dtype)
    for name in GATES:
        close_nan(be.to_host(gates[name]), tabs[name], dtype)


def close_nan(got, want, dtype):
    """NaN exactly where the reference is NaN (unwritten), close elsewhere."""
    assert np.array_equal(np.isnan(got), np.isnan(want)), "written where it should not be, or not written"
    close(got[~np.isnan(want)], want[~np.isnan(want)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_coarse_strided_views(dtype):
    """Coarse step (implicit, dt = cf) from every cf-th point of a level array into the next points,
    input injected at the interval start; the points in between must stay untouched."""
    L, cf = 2, 2
    p, _, u, t, gx0 = setup(dtype, L)
    be = CudaGRU(p, "classic")                               # coarse ignores the fine cell
    level = nan((2 * n + 1, L, B, H), dtype)
    level[0:2 * n:cf] = u
    d_level = be.to_device(level)
    be.step(d_level[0:2 * n:cf], be.to_device(t, np.int64), be.to_device(gx0), float(cf),
            d_level[1:2 * n:cf], fine=False)
    got = be.to_host(d_level)
    want, _ = ref_step(p, gx0, u, t, "implicit", float(cf))
    close(got[1:2 * n:cf], want, dtype)
    close(got[0:2 * n:cf], u, dtype)                         # inputs unchanged
    assert np.all(np.isnan(got[2 * n])), "wrote past the views"


def test_step_in_place():
    """out may be u itself (a block stages u[i, k] before writing out[i, k])."""
    p, _, u, t, gx0 = setup(np.float64, 2)
    be = CudaGRU(p, "implicit", bt=4)
    d_u = be.to_device(u)
    be.step(d_u, be.to_device(t, np.int64), be.to_device(gx0), 1.0, d_u)
    close(be.to_host(d_u), ref_step(p, gx0, u, t, "implicit", 1.0)[0], np.float64)


# ----------------------------------------------------------------------------------------------
# the VJP of Φ
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["classic", "implicit"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("forcing", [False, True])
def test_vjp_fine(dtype, cell, L, forcing):
    """Fine VJP from the gate tables the reference forward stored, plus the dgx, dgh store;
    with forcing, the FAS forcing g on every layer and the output forcing f on the top one."""
    p, _, u, t, gx0 = setup(dtype, L)
    rng = np.random.default_rng(3)
    lam = rng.standard_normal(u.shape).astype(dtype)
    g = rng.standard_normal(u.shape).astype(dtype) if forcing else None
    f = rng.standard_normal((n, 1, B, H)).astype(dtype) if forcing else None
    _, caches = ref_step(p, gx0, u, t, cell, 0.7)
    tabs = {k: np.zeros((T, L, B, H), dtype) for k in GATES}
    for k in GATES:
        tabs[k][t] = np.stack([c[k] for c in caches], 1)
    be = CudaGRU(p, cell, bt=4 if L == 1 else 1)
    out = be.to_device(nan(u.shape, dtype))
    dg = (be.to_device(nan((T, L, B, 3 * H), dtype)), be.to_device(nan((T, L, B, 3 * H), dtype)))
    be.vjp(be.to_device(u), be.to_device(lam), be.to_device(t, np.int64), 0.7, out,
           gates={k: be.to_device(v) for k, v in tabs.items()},
           g=None if g is None else be.to_device(g), dg=dg,
           f=None if f is None else be.to_device(f))
    dh, dgx, dgh = ref_vjp(p, caches, lam, cell, 0.7)
    if forcing:
        dh[:, L - 1] += f[:, 0]                              # dy on the top layer only
        dh += g
    close(be.to_host(out), dh, dtype)
    close(be.to_host(dg[0])[t], dgx, dtype)
    close(be.to_host(dg[1])[t], dgh, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L, short, fine", [(1, False, True), (2, True, True), (2, True, False)])
@pytest.mark.parametrize("bt", [2, 4])                       # full tiles / a partial last tile
def test_vjp_sweep_is_m_adjoint_steps_per_interval(dtype, L, short, fine, bt):
    """`vjp` with m steps per interval (one launch of an adjoint F-relaxation) = m reference
    VJPs: n = 3 intervals of cf = 3, lam = the C-points, out = the rows from the first F-point
    on (short: the last interval has one), step o linearised at u[o] with the gates at tg[o]
    (fine) or recomputed from gx[t[o]] (coarse), forcing f (top layer) and g, cotangents stored
    at td[o] (fine). Rows past out stay NaN."""
    cf, m = 3, 2
    p = init_gru(I, H, L, seed=6, dtype=dtype)
    rng = np.random.default_rng(6)
    n_rows = 2 * cf + (1 if short else m)
    gx = rng.standard_normal((12, B, 3 * H)).astype(dtype)
    lam = rng.standard_normal((3, L, B, H)).astype(dtype)
    u = rng.standard_normal((n_rows, L, B, H)).astype(dtype)   # the state each step linearises at
    g = rng.standard_normal((n_rows, L, B, H)).astype(dtype)
    f = rng.standard_normal((n_rows, 1, B, H)).astype(dtype)
    t = rng.permutation(12)[:n_rows].astype(np.int64)          # row of step o (gates / gx / td)
    cell, dt = ("classic", 0.7) if fine else ("implicit", float(cf))
    be = CudaGRU(p, "classic", bt=bt)
    tabs = {k: np.zeros((12, L, B, H), dtype) for k in GATES}
    caches = []
    for o in range(n_rows):
        caches.append(ref_step(p, gx, u[o][None], t[o:o + 1], cell, dt)[1])
        for k in GATES:
            tabs[k][t[o]] = np.stack([c[k] for c in caches[o]], 1)[0]
    out = be.to_device(nan((n_rows + 1, L, B, H), dtype))    # one row more: must stay NaN
    dg = (be.to_device(nan((12, L, B, 3 * H), dtype)), be.to_device(nan((12, L, B, 3 * H), dtype)))
    kw = dict(gates={k: be.to_device(v) for k, v in tabs.items()}, dg=dg) if fine else \
        dict(gx=be.to_device(gx))
    be.vjp(be.to_device(u), be.to_device(lam), be.to_device(t, np.int64), dt, out[:n_rows],
           fine=fine, g=be.to_device(g), f=be.to_device(f), m=m, ostride=cf, **kw)
    want = nan((n_rows + 1, L, B, H), dtype)
    want_dg = (nan((12, L, B, 3 * H), dtype), nan((12, L, B, 3 * H), dtype))
    for i in range(3):
        d = lam[i][None]
        for k in range(m):
            o = i * cf + k
            if o >= n_rows:
                break
            d, dgx, dgh = ref_vjp(p, caches[o], d, cell, dt)
            d[:, L - 1] += f[o]
            d = d + g[o][None]
            want[o] = d[0]
            want_dg[0][t[o]], want_dg[1][t[o]] = dgx[0], dgh[0]
    close_nan(be.to_host(out), want, dtype)
    if fine:
        close_nan(be.to_host(dg[0]), want_dg[0], dtype)
        close_nan(be.to_host(dg[1]), want_dg[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L", [1, 2])
def test_vjp_coarse_in_place(dtype, L):
    """Coarse VJP (implicit, dt = 4) recomputes the gates from the states; out is lam itself,
    the output forcing f added on the top layer."""
    p, _, u, t, gx0 = setup(dtype, L)
    rng = np.random.default_rng(4)
    lam = rng.standard_normal(u.shape).astype(dtype)
    f = rng.standard_normal((n, 1, B, H)).astype(dtype)
    be = CudaGRU(p, "classic")
    d_lam = be.to_device(lam)
    be.vjp(be.to_device(u), d_lam, be.to_device(t, np.int64), 4.0, d_lam, fine=False,
           gx=be.to_device(gx0), f=be.to_device(f))
    _, caches = ref_step(p, gx0, u, t, "implicit", 4.0)
    dh = ref_vjp(p, caches, lam, "implicit", 4.0)[0]
    dh[:, L - 1] += f[:, 0]
    close(be.to_host(d_lam), dh, dtype)


def test_vjp_needs_gates_or_gx():
    p, _, u, t, _ = setup(np.float64, 1)
    be = CudaGRU(p)
    d_u, d_t = be.to_device(u), be.to_device(t, np.int64)
    with pytest.raises(ValueError, match="gate tables"):
        be.vjp(d_u, d_u, d_t, 1.0, be.empty(u.shape))
    with pytest.raises(ValueError, match="gx"):
        be.vjp(d_u, d_u, d_t, 1.0, be.empty(u.shape), fine=False)


# ----------------------------------------------------------------------------------------------
# parameter gradients: the whole backward pass from batched kernels = serial BPTT
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_param_grads_equal_bptt(dtype):
    """Forward states and gates of all T steps in ONE batched step launch (u_t from the reference),
    the adjoints λ_{t+1} from the reference, all T VJPs in ONE launch, then the deterministic
    reductions: the gradients equal gru_backward's."""
    L, cell = 2, "classic"
    p, x, _, _, _ = setup(dtype, L)
    rng = np.random.default_rng(5)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    _, _, cache = gru_forward(p, x, cell=cell)
    want, _, _ = gru_backward(p, cache, dy=dy)
    hs = cache["hs"]                                         # (T+1, L, B, H)
    lam = np.zeros((T, L, B, H), dtype)                      # λ_{t+1}: cotangent on u_{t+1}
    run = np.zeros((L, B, H), dtype)
    from mgrit_gru.gru import caches_at
    for s in reversed(range(T)):
        run[L - 1] += dy[s]
        lam[s] = run
        run = step_backward(p, caches_at(hs, cache["gates"], s), run, cell)[0]
    be = CudaGRU(p, cell, bt=4)
    d_x, d_hs = be.to_device(x), be.to_device(hs)
    d_t = be.to_device(np.arange(T), np.int64)
    gx = be.project(d_x)
    gates = {k: be.to_device(nan((T, L, B, H), dtype)) for k in GATES}
    u_next = be.to_device(nan((T, L, B, H), dtype))
    be.step(d_hs[:T], d_t, gx, 1.0, u_next, gates=gates)
    close(be.to_host(u_next), hs[1:], dtype)
    dg = (be.to_device(nan((T, L, B, 3 * H), dtype)), be.to_device(nan((T, L, B, 3 * H), dtype)))
    be.vjp(d_hs[:T], be.to_device(lam), d_t, 1.0, be.empty((T, L, B, H)), gates=gates, dg=dg)
    got = be.param_grads(d_x, d_hs, *dg, chunks=3)           # 3 chunks: the split-and-sum path
    assert set(got) == set(want)
    for name in want:
        close(be.to_host(got[name]), want[name], dtype)
    be.param_grads(d_x, d_hs, *dg, grads=got, chunks=1)     # accumulate (a second batch), 1 chunk
    for name in want:
        close(be.to_host(got[name]), 2 * want[name], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outer_sum_and_col_sum(dtype):
    """The reductions on their own, sizes not multiples of the 16x16 tile, strided inputs."""
    rng = np.random.default_rng(6)
    A_full = rng.standard_normal((7, 3, 2 * 17)).astype(dtype)
    A = A_full[:, :, ::2]                                    # (7, 3, 17), strided last axis
    V = rng.standard_normal((7, 3, 5)).astype(dtype)
    be = CudaGRU(init_gru(I, H, 1, dtype=dtype))
    dA = be.to_device(A_full)
    for chunks in (1, 4):                                   # 4 chunks of 21 rows: 6, 6, 6, 3
        W = be.to_device(nan((17, 5), dtype))
        be.outer_sum(dA[:, :, ::2], be.to_device(V), W, chunks=chunks)
        close(be.to_host(W), np.einsum("tbp,tbq->pq", A, V), dtype)
        s = be.to_device(nan(17, dtype))
        be.col_sum(dA[:, :, ::2], s, chunks=chunks)
        close(be.to_host(s), A.sum(axis=(0, 1)), dtype)


# ----------------------------------------------------------------------------------------------
# residual and norms
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_and_norms(dtype):
    rng = np.random.default_rng(8)
    shape = (2, 2, 3, 50)                                    # L*B*H = 300 > 256 threads: strided loop
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    be = CudaGRU(init_gru(I, H, 1, dtype=dtype))
    out = be.to_device(nan(shape, dtype))
    sq, mx = be.to_device(nan(2, dtype)), be.to_device(nan(2, dtype))
    be.residual(be.to_device(a), be.to_device(b), out, sq, mx)
    r = a - b
    close(be.to_host(out), r, dtype)
    close(be.to_host(sq), (r ** 2).sum(axis=(1, 2, 3)), dtype)
    close(be.to_host(mx), np.abs(r).max(axis=(1, 2, 3)), dtype)
    sq2, mx2 = be.sq_norms(out, be.to_device(nan(2, dtype)), be.to_device(nan(2, dtype)))
    close(be.to_host(sq2), (r ** 2).sum(axis=(1, 2, 3)), dtype)   # against NumPy, poisoned
    close(be.to_host(sq2), be.to_host(sq), dtype)
    close(be.to_host(mx2), be.to_host(mx), dtype)
    tot = be.to_host(be.total(sq, mx, out=be.to_device(nan(2, dtype))))
    close(tot, np.array([(r ** 2).sum(), np.abs(r).max()], dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_project_and_input_gradient_several_tiles(dtype):
    """2 row tiles (the second partial), 2 reduction slabs, 2 column tiles: the CI sizes above
    fit one 16 x 16 tile, so a swapped grid axis or a lost slab passed them."""
    T, B, I, H = 7, 3, 20, 6           # 21 rows: 2 row tiles (2nd partial); I = 20: 2 slabs; 3H = 18: 2 col tiles
    p = init_gru(I, H, 1, seed=1, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    be = CudaGRU(p)
    out = be.to_device(nan((T, B, 3 * H), dtype))
    be.project(be.to_device(x), out=out)
    close(be.to_host(out), x @ p["weight_ih_l0"].T + p["bias_ih_l0"], dtype)
    dg = rng.standard_normal((T, B, 3 * H)).astype(dtype)      # dx = dg W_ih_l0: reduction over 18 > 16
    close(be.to_host(input_gradient(be, p, be.to_device(dg))), dg @ p["weight_ih_l0"], dtype)



def test_total_over_more_points_than_threads():
    """600 points > 256 threads: the strided loop, with the maximum in its tail."""
    rng = np.random.default_rng(0)
    sq, mx = rng.random(600), rng.random(600)
    mx[599] = 7.0                                            # the max only in the strided tail
    be = CudaGRU(init_gru(3, 4, 1))
    tot = be.to_host(be.total(be.to_device(sq), be.to_device(mx), out=be.to_device(nan(2, np.float64))))
    close(tot, np.array([sq.sum(), 7.0]), np.float64)



def test_norms_propagate_nan():
    """A NaN anywhere makes both norms NaN (a max that drops NaN would report convergence)."""
    v = np.zeros((2, 1, 2, 3))
    v[1, 0, 1, 2] = np.nan
    v[1, 0, 0, 0] = 5.0
    be = CudaGRU(init_gru(I, H, 1))
    sq, mx = be.sq_norms(be.to_device(v))
    assert np.isnan(be.to_host(mx)[1]) and np.isnan(be.to_host(sq)[1])
    assert be.to_host(mx)[0] == 0.0
    assert np.all(np.isnan(be.to_host(be.total(sq, mx))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_axpby_and_copy_on_views(dtype):
    rng = np.random.default_rng(10)
    a = rng.standard_normal((6, 2, 2, 3)).astype(dtype)
    b = rng.standard_normal((3, 2, 2, 3)).astype(dtype)
    be = CudaGRU(init_gru(I, H, 1, dtype=dtype))
    level = be.to_device(nan((6, 2, 2, 3), dtype))
    be.axpby(2.0, be.to_device(a)[::2], -0.5, be.to_device(b), level[::2])
    be.copy(be.to_device(b), level[1::2])
    got = be.to_host(level)
    close(got[::2], 2 * a[::2] - 0.5 * b, dtype)
    close(got[1::2], b, dtype)


def test_residual_at_strided_c_points():
    """r = Φ(u_{i-1}) + g - u_i at C-points: views of level arrays; the F-points stay untouched."""
    rng = np.random.default_rng(9)
    a = rng.standard_normal((7, 1, 2, 3))
    b = rng.standard_normal((7, 1, 2, 3))
    be = CudaGRU(init_gru(I, H, 1))
    res = be.to_device(nan((7, 1, 2, 3), np.float64))
    _, sq, mx = be.residual(be.to_device(a)[::3], be.to_device(b)[::3], res[::3])
    got = be.to_host(res)
    close(got[::3], a[::3] - b[::3], np.float64)
    assert np.all(np.isnan(np.delete(got, [0, 3, 6], axis=0)))
    close(be.to_host(sq), ((a[::3] - b[::3]) ** 2).sum(axis=(1, 2, 3)), np.float64)


# ----------------------------------------------------------------------------------------------
# the compile check
# ----------------------------------------------------------------------------------------------
PTX_SCRIPT = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from mgrit_gru.cuda.kernels import kernels, signatures
    for dtype in (np.float32, np.float64):
        for BT in (1, 8):
            ks = kernels(dtype, BT)
            assert set(signatures(dtype)) == set(ks.py_funcs), "a kernel without a PTX signature"
            for name, sig in signatures(dtype).items():
                if BT > 1 and name not in ("gru_step", "gru_vjp"):
                    continue                                 # only the step kernels depend on BT
                ptx, _ = cuda.compile_ptx(ks.py_funcs[name], sig, cc=(9, 0))
                assert ".entry" in ptx, name
                # a float32 kernel must not compute in float64 (a stray literal promotes)
                assert dtype is np.float64 or ".f64" not in ptx, f"float64 ops in float32 {name}"
                print(np.dtype(dtype).name, BT, name, "ok")
""")


REGS_SCRIPT = textwrap.dedent("""
    import math, re, shutil, subprocess, tempfile
    import numpy as np
    from numba import cuda
    from mgrit_gru.cuda.backend import row_tile
    from mgrit_gru.cuda.kernels import kernels, signatures

    def ptxas_regs(ptx):
        with tempfile.TemporaryDirectory() as tmp:       # removed afterwards, ptx and all
            path = f"{tmp}/kernel.ptx"
            with open(path, "w") as f:
                f.write(ptx)
            run = lambda: subprocess.run(["ptxas", "-arch=sm_90", "-v", path, "-o", "/dev/null"],
                                         capture_output=True, text=True)
            p = run()
            old = re.search(r"Unsupported .version (\\S+); current version is '([^']+)'", p.stderr)
            if old:                              # an older ptxas: its own ISA (same code)
                with open(path, "w") as f:
                    f.write(ptx.replace(f".version {old[1]}", f".version {old[2]}", 1))
                p = run()
        assert p.returncode == 0, p.stderr[-400:]
        return int(re.search(r"Used (\\d+) registers", p.stderr)[1])

    have_ptxas = shutil.which("ptxas") is not None
    for dtype in (np.float32, np.float64):
        for H in (256, 512, 1024):
            for BT in sorted({1, row_tile(H, np.dtype(dtype).itemsize, 10 ** 6)}):
                ks = kernels(dtype, BT, H)
                for name in ("gru_step", "gru_vjp"):
                    ptx, _ = cuda.compile_ptx(ks.py_funcs[name], signatures(dtype)[name],
                                              cc=(9, 0), launch_bounds=(H,))
                    assert f".maxntid {H}" in ptx, name
                    if have_ptxas:               # 64 K registers per block, per-warp granules of 256
                        regs = ptxas_regs(ptx)
                        need = math.ceil(H / 32) * math.ceil(regs * 32 / 256) * 256
                        assert need <= 65536, (np.dtype(dtype).name, H, BT, name, regs)
                    print(np.dtype(dtype).name, H, BT, name, "fits", flush=True)
    print("ptxas" if have_ptxas else "no ptxas: register counts not checked")
""")


def test_step_kernels_fit_a_multiprocessor_at_every_hidden_size():
    """One thread per hidden unit: with launch_bounds=(H,) the step kernels' registers x H fit
    one SM's 64 K up to H = 1024 (unbounded, H = 512 could not launch). Checked on ptxas's own
    register count where ptxas is installed; the .maxntid bound is checked everywhere."""
    pytest.importorskip("numba.cuda")
    proc = run_without_simulator(REGS_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count(" fits") >= 2 * 3 * 2, proc.stdout


def test_ptx_sm90():
    """Every kernel compiles to PTX for sm_90 (H100/H200), float32 and float64, in a subprocess
    without the simulator (compile_ptx needs NVVM from numba-cuda[cu13], no GPU)."""
    pytest.importorskip("numba.cuda")
    proc = run_without_simulator(PTX_SCRIPT)
    assert proc.stdout.count(" ok") == 2 * (len(PTX_NAMES) + 2)


PTX_NAMES = ("gru_step", "gru_vjp", "project", "outer_partial", "colsum_partial", "reduce_chunks",
             "diff_norms", "norms", "total", "axpby")


# ----------------------------------------------------------------------------------------------
# real GPU only: production sizes (too slow for the simulator)
# ----------------------------------------------------------------------------------------------
def _step_and_fine_vjp(p, cell, dt, ns, Bs, Ts, seed, gx_scale=1.0):
    """Step and fine VJP of ns random rows (gx rows any order) against NumPy, outputs poisoned;
    returns the data and device arrays for further checks."""
    dtype = p["weight_hh_l0"].dtype
    Ls, Hs = sum(k.startswith("weight_hh") for k in p), p["weight_hh_l0"].shape[1]
    rng = np.random.default_rng(seed)
    gx0 = (gx_scale * rng.standard_normal((Ts, Bs, 3 * Hs))).astype(dtype)
    u = rng.standard_normal((ns, Ls, Bs, Hs)).astype(dtype)
    lam = rng.standard_normal(u.shape).astype(dtype)
    t = rng.permutation(Ts)[:ns].astype(np.int64)
    be = CudaGRU(p, cell)
    d_u, d_t, d_gx = be.to_device(u), be.to_device(t, np.int64), be.to_device(gx0)
    gates = {k: be.to_device(nan((Ts, Ls, Bs, Hs), dtype)) for k in GATES}
    out = be.to_device(nan(u.shape, dtype))
    be.step(d_u, d_t, d_gx, dt, out, gates=gates)
    want, caches = ref_step(p, gx0, u, t, cell, dt)
    close(be.to_host(out), want, dtype)
    be.vjp(d_u, be.to_device(lam), d_t, dt, out, gates=gates)
    close(be.to_host(out), ref_vjp(p, caches, lam, cell, dt)[0], dtype)
    return SimpleNamespace(be=be, gx0=gx0, u=u, lam=lam, t=t, d_u=d_u, d_t=d_t, d_gx=d_gx,
                           out=out)


@real_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Bs", [1, 32])
def test_real_gpu_h256(dtype, Bs):
    """H = 256, 2 layers, 512 intervals: step, fine VJP and coarse VJP against NumPy."""
    Hs, Ls, ns, Ts = 256, 2, 512, 600
    p = init_gru(Hs, Hs, Ls, seed=2, dtype=dtype)
    c = _step_and_fine_vjp(p, "classic", 1.0, ns, Bs, Ts, seed=2)
    be, gx0, u, lam, t, d_u, d_t, d_gx, out = (c.be, c.gx0, c.u, c.lam, c.t, c.d_u, c.d_t,
                                               c.d_gx, c.out)
    be.vjp(d_u, be.to_device(lam), d_t, 4.0, out, fine=False, gx=d_gx)
    _, caches = ref_step(p, gx0, u, t, "implicit", 4.0)
    close(be.to_host(out), ref_vjp(p, caches, lam, "implicit", 4.0)[0], dtype)
    # a whole F-relaxation (cf = 4) in one launch: each block reads back its own writes
    cf = 4
    level = nan((cf * ns, Ls, Bs, Hs), dtype)
    level[0::cf] = u
    d_level, tt = be.to_device(level), t % (Ts - cf)
    be.sweep(d_level[0::cf], be.to_device(tt, np.int64), d_gx, 1.0, d_level[1:], cf - 1, cf, 1)
    got, h = be.to_host(d_level), u
    for k in range(1, cf):
        h = ref_step(p, gx0, h, tt + k - 1, "classic", 1.0)[0]
        close(got[k::cf], h, dtype)


@real_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Hs", [512, 1024])
def test_real_gpu_large_hidden_sizes_launch(dtype, Hs):
    """One thread per unit: blocks of 512 and 1024 threads launch (launch_bounds) and agree
    with NumPy, step and fine VJP, 2 layers, the default row tile."""
    p = init_gru(8, Hs, 2, seed=4, dtype=dtype)
    _step_and_fine_vjp(p, "implicit", 2.0, ns=12, Bs=2, Ts=16, seed=4, gx_scale=0.3)


@real_gpu
def test_real_gpu_projection_of_more_rows_than_gridDim_y_allows():
    """T B = 33000 x 32 rows = 66000 row tiles of 16: over gridDim.y's 65535 (it is on x)."""
    T, B, I, H = 33000, 32, 4, 8
    p = init_gru(I, H, 1, seed=5, dtype=np.float32)
    x = np.random.default_rng(5).standard_normal((T, B, I)).astype(np.float32)
    be = CudaGRU(p)
    got = be.to_host(be.project(be.to_device(x)))
    want = x @ p["weight_ih_l0"].T + p["bias_ih_l0"]
    close(got, want, np.float32)


@real_gpu
def test_real_gpu_reductions_are_deterministic():
    """Same inputs, same bits: the gradient sums and norms use no atomics (M = 2^16 rows, 64 chunks)."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4096, 16, 768)).astype(np.float32)
    V = rng.standard_normal((4096, 16, 256)).astype(np.float32)
    be = CudaGRU(init_gru(256, 256, 1, dtype=np.float32))
    dA, dV = be.to_device(A), be.to_device(V)
    W1 = be.to_host(be.outer_sum(dA, dV, be.empty((768, 256))))
    W2 = be.to_host(be.outer_sum(dA, dV, be.empty((768, 256))))
    assert np.array_equal(W1, W2)
    close(W1, np.tensordot(A.astype(np.float64), V.astype(np.float64), ([0, 1], [0, 1])),
          np.float32)                                        # BLAS: einsum took ~9 s
    s1 = be.to_host(be.sq_norms(dA.reshape(4096, 16, 3, 256))[0])
    s2 = be.to_host(be.sq_norms(dA.reshape(4096, 16, 3, 256))[0])
    assert np.array_equal(s1, s2)


def test_project_grid_stays_within_cuda_grid_limits():
    """Row tiles on gridDim.x (limit 2^31 - 1), columns on y (65535): T B = 65536 x 32 rows
    needed 131072 row tiles, which did not fit on y (CUDA_ERROR_INVALID_VALUE on hardware)."""
    from mgrit_gru.cuda.kernels import TILE, project_grid
    for rows, cols in ((65536 * 32, 3 * 1024), (1, 1), (17, 768)):
        gx, gy = project_grid(rows, cols)
        assert gx * TILE >= rows > (gx - 1) * TILE and gy * TILE >= cols > (gy - 1) * TILE
        assert gx <= 2 ** 31 - 1 and gy <= 65535
