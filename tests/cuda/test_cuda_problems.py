"""backend="cuda" against the NumPy backend: the device MGRIT problems (`mgrit_gru.cuda.problems`)
in forward and backward solves (solution, residual history, grads, dx, dh0), their vector
operations, what crosses between host and device, and the launches per solve.

Runs under numba's CUDA simulator on CPU (tests/conftest.py), tiny sizes (T 8-16, H 4, B 2),
with `strict_device_arrays` (tests/conftest.py): a slice with a negative step, arithmetic on a
device array or a copy into a strided device view raises (as on a GPU), and every device array
the backend allocates is NaN-poisoned (an output a kernel forgets to write shows). Tests marked
`real_gpu` need a GPU.
"""
import numpy as np
import pytest
from _cuda_helpers import nan, real_gpu
from _cuda_solve_helpers import SIM, B, H, I, close, close_hist, data

from mgrit_gru import gru_backward, gru_forward, init_gru
from mgrit_gru.cuda import CudaGRU
from mgrit_gru.mgrit.problem import NumpyVectors
from mgrit_gru.solve import mgrit_backward, mgrit_forward

pytestmark = pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py


# ----------------------------------------------------------------------------------------------
# MGRIT forward and backward: cuda == numpy (solution, residual history, grads, dx, dh0)
# ----------------------------------------------------------------------------------------------
CASES = [  # dtype, cell, L, T, forward options, backward options
    (np.float64, "classic", 2, 8, dict(levels=3, cf=2, max_iter=2), dict(levels=3, cf=2)),
    (np.float64, "implicit", 1, 8,
     dict(levels=3, cf=2, max_iter=2, coarse_input="average", relax="F", skip=False),
     dict(levels=2, cf=4, relax="FCF", c_weight=0.7, norm="max")),
    (np.float32, "implicit", 2, 8, dict(levels=2, cf=4, max_iter=3, c_weight=0.8),
     dict(levels=2, cf=2)),
]


@pytest.mark.parametrize("dtype, cell, L, T, fopts, bopts", CASES)
def test_mgrit_forward_backward_equal_numpy(dtype, cell, L, T, fopts, bopts):
    p, x, h0, dy, dh_T = data(dtype, T, L)
    fopts = dict(fopts, tol=0.0, cell=cell)
    bopts = dict(bopts, tol=0.0, max_iter=1)
    y_c, hT_c, fi_c = mgrit_forward(p, x, h0, backend="cuda", **fopts)
    y_n, hT_n, fi_n = mgrit_forward(p, x, h0, **fopts)
    close(y_c, y_n, dtype, "y")
    close(hT_c, hT_n, dtype, "h_T")
    close_hist(fi_c.residual_history, fi_n.residual_history, dtype, "forward residuals")
    assert fi_c.iterations == fi_n.iterations
    g_c, dx_c, dh0_c, bi_c = mgrit_backward(p, fi_c, dy, dh_T, backend="cuda", **bopts)
    g_n, dx_n, dh0_n, bi_n = mgrit_backward(p, fi_n, dy, dh_T, **bopts)
    assert set(g_c) == set(g_n)
    for k in g_n:
        assert g_c[k].dtype == dtype
        close(g_c[k], g_n[k], dtype, k)
    close(dx_c, dx_n, dtype, "dx")
    close(dh0_c, dh0_n, dtype, "dh0")
    close_hist(bi_c.residual_history, bi_n.residual_history, dtype, "backward residuals")


@pytest.mark.parametrize("T, cf, levels", [(7, 2, 2), (10, 3, 2)])
def test_mgrit_short_last_interval_equals_numpy(T, cf, levels):
    """T not a multiple of cf: the last interval of the sweeps is short (rows skipped)."""
    p = init_gru(3, 4, 2, seed=0)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((T, 2, 3)), rng.standard_normal((T, 2, 4))
    o = dict(levels=levels, cf=cf, max_iter=2, tol=0.0, cell="classic")
    y_c, _, fc = mgrit_forward(p, x, backend="cuda", **o)
    y_n, _, fn = mgrit_forward(p, x, **o)
    close(y_c, y_n, np.float64)
    b = dict(levels=levels, cf=cf, max_iter=1, tol=0.0)
    g_c, dx_c, dh0_c, _ = mgrit_backward(p, fc, dy, backend="cuda", **b)
    g_n, dx_n, dh0_n, _ = mgrit_backward(p, fn, dy, **b)
    for k in g_n:
        close(g_c[k], g_n[k], np.float64)
    close(dx_c, dx_n, np.float64)
    close(dh0_c, dh0_n, np.float64)


def test_mgrit_converged_cuda_equals_serial_bptt():
    """Converged MGRIT on the device = serial BPTT (docs/theory/mgrit.md, Properties), and one level = serial."""
    p, x, h0, dy, _ = data(np.float64, 8, 1, seed=3)
    y_s, hT_s, cache = gru_forward(p, x, h0, cell="implicit")
    g_s, dx_s, dh0_s = gru_backward(p, cache, dy)
    y, hT, fi = mgrit_forward(p, x, h0, cell="implicit", backend="cuda", levels=2, cf=2,
                              max_iter=10, tol=1e-13)
    assert fi.converged
    close(y, y_s, np.float64, "y")
    g, dx, dh0, bi = mgrit_backward(p, fi, dy, backend="cuda", levels=1)
    for k in g_s:
        close(g[k], g_s[k], np.float64, k)
    close(dx, dx_s, np.float64, "dx")
    close(dh0, dh0_s, np.float64, "dh0")


def test_device_built_initial_guesses_and_reversed_dy():
    """What the device problems build on the GPU instead of uploading: the forward's initial
    guess (h_0 everywhere), the adjoint's (zeros), and dy in reversed time (dyr[s] = dy_{N-1-s},
    zero at s = N and where a slice of dy has no row) = the host constructions."""
    from mgrit_gru.cuda.problems import CudaAdjointProblem
    T, L = 8, 2
    p, x, h0, dy, _ = data(np.float64, T, L)
    _, _, fi = mgrit_forward(p, x, h0, backend="cuda", levels=2, cf=2, max_iter=1)
    fwd, gru = fi.problem, fi.problem.gru
    for prob in (fwd, CudaAdjointProblem(fwd, fi.solver.U[0], 0, dy, 0, None)):
        dst = gru.to_device(nan((T + 1, L, B, H), np.float64))
        prob.initial_guess_into(dst[1:], range(1, T + 1))
        want = np.concatenate([nan((1, L, B, H), np.float64), prob.initial_guess(0, range(T))])
        np.testing.assert_array_equal(gru.to_host(dst), want)
    for first, rows in ((0, dy), (3, dy[3:6])):                # whole dy (device), a slice (host)
        adj = CudaAdjointProblem(fwd, fi.solver.U[0], 0, rows, first, None)
        want = np.zeros((T + 1, 1, B, H))
        for s in range(T):
            if 0 <= T - 1 - s - first < len(rows):
                want[s, 0] = rows[T - 1 - s - first]
        np.testing.assert_array_equal(gru.to_host(adj.dyr), want)


def test_sync_timers_env_makes_the_solver_wait_for_the_device(monkeypatch):
    """MGRIT_GRU_SYNC_TIMERS=1: the solver waits for the device at both ends of each timed
    phase (phase_times then measure the GPU's work, not the queueing), same results."""
    from numba import cuda
    waits = []
    sync = cuda.synchronize
    monkeypatch.setattr(cuda, "synchronize", lambda: (waits.append(1), sync()))
    p, x, h0, dy, _ = data(np.float64, 16, 1)
    o = dict(levels=2, cf=2, max_iter=2, tol=0.0, backend="cuda", cell="implicit")
    monkeypatch.delenv("MGRIT_GRU_SYNC_TIMERS", raising=False)
    y0, _, fi0 = mgrit_forward(p, x, h0, **o)
    plain = len(waits)
    monkeypatch.setenv("MGRIT_GRU_SYNC_TIMERS", "1")
    y1, _, fi1 = mgrit_forward(p, x, h0, **o)
    assert fi1.problem.vec.sync_timers and not fi0.problem.vec.sync_timers
    assert len(waits) - plain >= 2 * len(fi1.phase_times) > 0
    np.testing.assert_array_equal(y0, y1)


# ----------------------------------------------------------------------------------------------
# host and device: device inputs and outputs, what is copied
# ----------------------------------------------------------------------------------------------
def test_mgrit_device_in_device_out_equals_host_api():
    """x (and dy) given as device arrays: y, h_T and dx come back as device arrays, with the
    same numbers as the host API (the same launches on the same data); the returned y is a
    copy (writing into it cannot change the states the backward pass linearises at)."""
    from numba import cuda
    dtype = np.float32
    p, x, h0, dy, _ = data(dtype, 8, 2, seed=4)
    f = dict(cell="implicit", levels=3, cf=2, max_iter=2, tol=0.0, backend="cuda")
    b = dict(levels=3, cf=2, max_iter=1, tol=0.0, backend="cuda")
    y, hT, fi = mgrit_forward(p, x, h0, **f)
    g, dx, dh0, _ = mgrit_backward(p, fi, dy, **b)
    d_y, d_hT, d_fi = mgrit_forward(p, cuda.to_device(x), cuda.to_device(h0), **f)
    assert d_fi.y_rows == fi.y_rows and d_fi.residual_history == fi.residual_history
    np.testing.assert_array_equal(d_y.copy_to_host(), y)
    np.testing.assert_array_equal(d_hT.copy_to_host(), hT)
    d_y.copy_to_device(np.full(y.shape, np.nan, dtype))     # the caller's array to scribble on
    for dy_in in (dy, cuda.to_device(dy)):                  # dy from the host or the device
        d_g, d_dx, d_dh0, _ = mgrit_backward(p, d_fi, dy_in, **b)
        assert isinstance(d_dh0, np.ndarray) and not isinstance(d_dx, np.ndarray)
        np.testing.assert_array_equal(d_dx.copy_to_host(), dx)
        np.testing.assert_array_equal(d_dh0, dh0)
        for k in g:
            np.testing.assert_array_equal(d_g[k], g[k])


def test_a_device_x_refilled_before_the_backward_pass_changes_nothing():
    """A data loader may write the next batch into x's device buffer between the forward and
    the backward pass: the gradients (dW_ih_l0 reads x) must be those of the x the forward
    saw, as on the host path, for MGRIT and for serial BPTT."""
    from numba import cuda

    from mgrit_gru.cuda.serial import gru_backward as cuda_backward
    from mgrit_gru.cuda.serial import gru_forward as cuda_forward
    p, x, h0, dy, _ = data(np.float64, 8, 2, seed=6)
    o = dict(levels=2, cf=2, tol=0.0, backend="cuda")
    solves = {
        "mgrit": (lambda xx: mgrit_forward(p, xx, h0, max_iter=1, **o)[2],
                  lambda fi: mgrit_backward(p, fi, dy, max_iter=1, **o)[0]),
        "serial": (lambda xx: cuda_forward(p, xx, h0)[2], lambda c: cuda_backward(p, c, dy)[0]),
    }
    for name, (forward, backward) in solves.items():
        want = backward(forward(x))
        buf = cuda.to_device(x)
        saved = forward(buf)
        buf.copy_to_device(np.full_like(x, 7.0))            # the next batch, same buffer
        got = backward(saved)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")


def test_cuda_backward_copies_only_results_to_the_host(monkeypatch):
    """The backward solve hands λ back on the device: of its T+1 points only λ_0 (dh0)
    crosses to the host, with dx and the gradients (it used to copy all of λ)."""
    from mgrit_gru.cuda import CudaGRU
    from mgrit_gru.cuda import problems as cuda_problems
    T = 16
    p, x, h0, dy, _ = data(np.float64, T, 1)
    fi = mgrit_forward(p, x, h0, levels=3, cf=2, max_iter=1, backend="cuda")[2]
    shapes = []
    to_host, vec_to_host = CudaGRU.to_host, cuda_problems.to_host

    def recording(gru, d):
        shapes.append(tuple(d.shape))
        return to_host(gru, d)
    monkeypatch.setattr(CudaGRU, "to_host", recording)
    monkeypatch.setattr(cuda_problems, "to_host", lambda gru, d: (shapes.append(tuple(d.shape)),
                                                                 vec_to_host(gru, d))[1])
    mgrit_backward(p, fi, dy, levels=3, cf=2, max_iter=1, backend="cuda")
    big = [s for s in shapes if s[0] == T + 1]
    assert big == [] and (1, 1, B, H) in shapes and (T, B, I) in shapes


@pytest.mark.parametrize("solver", ["mgrit", "serial"])
def test_without_input_grad_no_dx_is_launched_or_copied(monkeypatch, solver):
    """input_grad=False (training's call): dx is None, its kernel is not launched and nothing
    of shape (T, B, I) crosses to the host; gradients and dh0 are the full call's bits."""
    from mgrit_gru.cuda import problems as cuda_problems
    from mgrit_gru.cuda import serial as cuda_serial
    T = 8
    p, x, h0, dy, dh_T = data(np.float64, T, 2, seed=6)
    if solver == "mgrit":
        fi = mgrit_forward(p, x, h0, levels=2, cf=2, max_iter=1, backend="cuda")[2]
        run = lambda g: mgrit_backward(p, fi, dy, dh_T, levels=2, cf=2, max_iter=1,
                                       backend="cuda", input_grad=g)[:3]
    else:
        cache = gru_forward(p, x, h0, backend="cuda")[2]
        run = lambda g: gru_backward(p, cache, dy, dh_T, input_grad=g)
    g_full, dx_full, dh0_full = run(True)
    launched, copied = [], []
    real_dx, to_host = cuda_problems.input_gradient, CudaGRU.to_host
    for mod in (cuda_problems, cuda_serial):
        monkeypatch.setattr(mod, "input_gradient", lambda *a: launched.append(1) or real_dx(*a))
    monkeypatch.setattr(CudaGRU, "to_host", lambda gru, d: copied.append(tuple(d.shape))
                        or to_host(gru, d))
    g, dx, dh0 = run(False)
    assert dx is None and launched == [] and (T, B, I) not in copied
    assert dx_full.shape == (T, B, I)
    np.testing.assert_array_equal(dh0, dh0_full)
    for k in g_full:
        np.testing.assert_array_equal(g[k], g_full[k], err_msg=k)
    run(True)
    assert launched == [1] and (T, B, I) in copied           # (the counters do count)


# ----------------------------------------------------------------------------------------------
# launches per solve
# ----------------------------------------------------------------------------------------------
def count_launches(monkeypatch):
    """Record the name of every kernel launched under the simulator, leaving out the NaN
    fills that poison `Vectors.empty` scratch there (a GPU's `empty` launches nothing)."""
    from numba.cuda.simulator import kernel as sim
    names = []
    call = sim.FakeCUDAKernel.__call__

    def counting(self, *args):
        if not self._device and not (self.fn.__name__ == "fill" and args[1] != args[1]):
            names.append(self.fn.__name__)
        return call(self, *args)

    monkeypatch.setattr(sim.FakeCUDAKernel, "__call__", counting)
    return names


def test_mgrit_launches_per_solve_do_not_grow_with_T(monkeypatch):
    """Launches per MGRIT solve at the paper's settings (3 levels, cf 4, FCF, 2 forward / 1
    backward iterations): the same for any T (each F-relaxation is ONE launch over all its
    intervals, the coarsest level one persistent scan), and the numbers docs/cuda.md quotes
    (each launch costs host time from Python; a change here must update the docs)."""
    if not SIM:
        pytest.skip("counts the simulator's kernel calls: a real GPU run has none to patch")
    names = count_launches(monkeypatch)
    o = dict(levels=3, cf=4, relax="FCF", tol=0.0, backend="cuda")
    counts = []
    for T in (16, 32):
        p, x, h0, dy, _ = data(np.float64, T, 1, seed=T)
        names.clear()
        fi = mgrit_forward(p, x, h0, cell="implicit", max_iter=2, **o)[2]
        n_fwd = len(names)
        assert names.count("gru_scan") == 2 and "gru_vjp_scan" not in names
        names.clear()
        mgrit_backward(p, fi, dy, max_iter=1, **o)
        assert names.count("gru_vjp_scan") == 1
        counts.append((n_fwd, len(names)))
    assert counts == [(36, 29), (36, 29)]


# ----------------------------------------------------------------------------------------------
# the vector operations
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_vectors_equal_numpy_vectors(dtype):
    from mgrit_gru.cuda.problems import CudaVectors
    L = 2
    gru = CudaGRU(init_gru(I, H, L, dtype=dtype))
    shape = (L, B, H)
    nv, cv = NumpyVectors(shape, dtype), CudaVectors(gru, shape)
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((7,) + shape).astype(dtype) for _ in range(3))
    da, db, dc = (gru.to_device(v) for v in (a, b, c))
    assert np.array_equal(cv.to_host(cv.zeros(5)), nv.zeros(5))
    for name, args in [("sub", (a, b)), ("fas", (a, b, c)), ("fas", (a, None, c)),
                       ("axpby", (0.3, a, 0.7, b))]:
        want = nv.zeros(7)
        getattr(nv, name)(want, *args)
        out = cv.zeros(7)
        dargs = [{id(a): da, id(b): db, id(c): dc}.get(id(v), v) for v in args]
        getattr(cv, name)(out, *dargs)
        close(cv.to_host(out), want, dtype, name)
    # strided views (every 3rd point) in place, as the solver uses them
    cv.axpby(da[1::3], 0.5, da[1::3], 2.0, db[0:4:3])
    want = a.copy()
    want[1::3] = 0.5 * a[1::3] + 2.0 * b[0:4:3]
    close(cv.to_host(da), want, dtype, "strided axpby")
    close(cv.to_host(da[1::3]), want[1::3], dtype, "to_host of a strided view")
    cv.assign(da[0::2], db[0:4])
    want[0::2] = b[0:4]
    close(cv.to_host(da), want, dtype, "assign")
    rel = 1e-10 if dtype == np.float64 else 1e-5                # the backend's stated accuracy
    assert cv.sq_norm(db[2:6]) == pytest.approx(nv.sq_norm(b[2:6]), rel=rel)
    assert cv.max_abs(db[::2]) == pytest.approx(nv.max_abs(b[::2]), rel=rel)
    assert cv.sq_norm(db[0:0]) == 0.0
    for norm in ("2", "max"):                                  # the residual's fused norm
        assert cv.diff_norm(da[1::2], db[0:3], norm) == pytest.approx(
            nv.diff_norm(want[1::2], b[0:3], norm), rel=rel)   # want mirrors da
    assert cv.diff_norm(da[0:0], db[0:0]) == 0.0
    assert np.isnan(cv.to_host(cv.empty(2))).all()             # scratch is poisoned here
    cv.from_host(da[2:3], c[0])
    cv.from_host(da[::3], c[:3])                               # strided: staged then copied
    want[2], want[::3] = c[0], c[:3]
    close(cv.to_host(da), want, dtype, "from_host")
    bad = gru.to_device(np.full((2,) + shape, np.nan, dtype))
    assert np.isnan(cv.sq_norm(bad)) and np.isnan(cv.max_abs(bad))


# ----------------------------------------------------------------------------------------------
# real GPU only: production sizes
# ----------------------------------------------------------------------------------------------
@real_gpu
@pytest.mark.parametrize("Bs", [1, 32])
def test_real_gpu_mgrit_h256(Bs):
    """H = 256, T = 512, float32: MGRIT forward+backward on the GPU = the NumPy backend."""
    dtype, T, Hs = np.float32, 512, 256
    p = init_gru(Hs, Hs, 1, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, Bs, Hs)).astype(dtype)
    dy = rng.standard_normal((T, Bs, Hs)).astype(dtype)
    opts = dict(cell="implicit", levels=3, cf=4, max_iter=2, tol=0.0)
    y_c, _, fi_c = mgrit_forward(p, x, backend="cuda", **opts)
    y_n, _, fi_n = mgrit_forward(p, x, **opts)
    close(y_c, y_n, dtype, "y")
    close_hist(fi_c.residual_history, fi_n.residual_history, np.float32, "residuals")
    g_c, dx_c, dh0_c, _ = mgrit_backward(p, fi_c, dy, backend="cuda", levels=3, cf=4, max_iter=1)
    g_n, dx_n, dh0_n, _ = mgrit_backward(p, fi_n, dy, levels=3, cf=4, max_iter=1)
    for k in g_n:
        close(g_c[k], g_n[k], dtype, k)
    close(dx_c, dx_n, dtype, "dx")
    close(dh0_c, dh0_n, dtype, "dh0")


@real_gpu
def test_real_gpu_device_io_h256():
    """H = 256, T = 512, float32: x and dy given on the GPU (numba device arrays, and PyTorch
    CUDA tensors when torch is there) give the host API's numbers, y and dx left on the GPU."""
    from numba import cuda
    dtype, T, Hs = np.float32, 512, 256
    p = init_gru(Hs, Hs, 1, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, 1, Hs)).astype(dtype)
    dy = rng.standard_normal((T, 1, Hs)).astype(dtype)
    f = dict(cell="implicit", levels=3, cf=4, max_iter=2, tol=0.0, backend="cuda")
    b = dict(levels=3, cf=4, max_iter=1, tol=0.0, backend="cuda")
    y, _, fi = mgrit_forward(p, x, **f)
    g, dx, dh0, _ = mgrit_backward(p, fi, dy, **b)
    inputs = [(cuda.to_device(x), cuda.to_device(dy))]
    try:
        import torch
        if torch.cuda.is_available():
            inputs.append((torch.from_numpy(x).cuda(), torch.from_numpy(dy).cuda()))
    except ImportError:
        pass
    for d_x, d_dy in inputs:                                 # (a kernel compiled for another
        d_y, _, d_fi = mgrit_forward(p, d_x, **f)            # layout may round differently)
        close(d_y.copy_to_host(), y, dtype, "y")
        d_g, d_dx, d_dh0, _ = mgrit_backward(p, d_fi, d_dy, **b)
        close(d_dx.copy_to_host(), dx, dtype, "dx")
        close(d_dh0, dh0, dtype, "dh0")
        for k in g:
            close(d_g[k], g[k], dtype, k)
