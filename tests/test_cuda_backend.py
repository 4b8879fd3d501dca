"""backend="cuda" against the NumPy backend: MGRIT forward/backward, serial forward/BPTT.

Runs under numba's CUDA simulator on CPU (tests/conftest.py), tiny sizes (T 8-16, H 4, B 2).
The simulator is more permissive than real device arrays, so every test here runs with
`strict_device_arrays`: a slice with a negative step, arithmetic on a device array or a copy into
a strided device view raises (as on a GPU), and every device array the backend allocates is
NaN-poisoned (an output a kernel forgets to write shows). Tests marked `real_gpu` need a GPU.
"""
import os
import textwrap

import numpy as np
import pytest
from _cuda_helpers import nan
from _nosim import run_without_simulator

from mgrit_gru.cuda import CudaGRU, cuda_available
from mgrit_gru import gru_backward, gru_forward, init_gru
from mgrit_gru.mgrit.problem import NumpyVectors
from mgrit_gru.solve import mgrit_backward, mgrit_forward

real_gpu = pytest.mark.skipif(not cuda_available(), reason="needs a real CUDA GPU")
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
I, H, B = 3, 4, 2


@pytest.fixture(autouse=True)
def strict_device_arrays(monkeypatch):
    """Make the simulator's device arrays as strict as real ones, and poison allocations."""
    if not SIM:
        yield
        return
    from numba.cuda.simulator.cudadrv import devicearray as sim

    orig_getitem, orig_to_dev = sim.FakeCUDAArray.__getitem__, sim.FakeCUDAArray.copy_to_device
    orig_to_host = sim.FakeCUDAArray.copy_to_host

    def getitem(self, idx):
        for k in idx if isinstance(idx, tuple) else (idx,):
            if isinstance(k, slice) and k.step is not None and k.step < 0:
                raise NotImplementedError("device arrays have no negative-stride views")
        return orig_getitem(self, idx)

    def to_dev(self, ary, stream=0):
        assert self.is_c_contiguous(), "copy_to_device into a strided device view"
        return orig_to_dev(self, ary, stream)

    def to_host(self, ary=None, stream=0):
        assert all(s >= 0 for s in self.strides), "D->H copy of a negative-stride view"
        return orig_to_host(self, ary, stream)

    def no_math(self, other):
        raise TypeError("no arithmetic on device arrays")

    monkeypatch.setattr(sim.FakeCUDAArray, "__getitem__", getitem)
    monkeypatch.setattr(sim.FakeCUDAArray, "copy_to_device", to_dev)
    monkeypatch.setattr(sim.FakeCUDAArray, "copy_to_host", to_host)
    for op in ("__add__", "__sub__", "__mul__", "__truediv__", "__neg__"):
        monkeypatch.setattr(sim.FakeCUDAArray, op, no_math, raising=False)
    orig_empty = CudaGRU.empty

    def poisoned(self, shape, dtype=None):
        a = orig_empty(self, shape, dtype)
        if np.dtype(a.dtype).kind == "f":
            a.copy_to_device(np.full(a.shape, np.nan, a.dtype))
        return a

    monkeypatch.setattr(CudaGRU, "empty", poisoned)
    yield


def close(got, want, dtype, what=""):
    """float64: 1e-10 absolute; float32: 1e-5 relative to the largest reference entry."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    assert np.all(np.isfinite(got)), f"{what}: unwritten (NaN) or non-finite"
    err = np.max(np.abs(got - want)) if got.size else 0.0
    tol = 1e-10 if dtype == np.float64 else 1e-5 * max(1.0, np.max(np.abs(want)))
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


def close_hist(got, want, dtype, what):
    """Residual histories: float64 to 1e-10 relative; float32 to 1e-5 relative to the largest
    entry (a float32 residual near 1e-7 is round-off, and so is its difference)."""
    assert len(got) == len(want), what
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(want), err_msg=what)


def data(dtype, T, L, seed=0):
    p = init_gru(I, H, L, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = 0.5 * rng.standard_normal((L, B, H)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_T = rng.standard_normal((L, B, H)).astype(dtype)
    return p, x, h0, dy, dh_T


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


def test_the_scan_barrier_counter_is_zeroed_on_the_device_not_uploaded(monkeypatch):
    """On a GPU each persistent scan gets its barrier counter zeroed by a device memset of one
    counter kept per CudaGRU: no host-to-device copy (from pageable memory that waits for every
    queued kernel). The GPU side is checked by the real-GPU scans run three times in a row."""
    from numba import cuda
    from numba.cuda import config
    from numba.cuda.cudadrv import driver
    gru = CudaGRU(init_gru(I, H, 1), "classic")
    memsets, uploads = [], []
    monkeypatch.setattr(config, "ENABLE_CUDASIM", False)     # take the GPU branch
    monkeypatch.setattr(cuda, "device_array", lambda shape, dtype: np.full(shape, 5, dtype))
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: uploads.append(a))
    monkeypatch.setattr(driver, "device_memset",
                        lambda dst, val, size: (memsets.append(size), dst.fill(val)))
    first, second = gru._barrier(), gru._barrier()
    assert first is second and first.dtype == np.int64 and first.tolist() == [0]
    assert memsets == [8, 8] and uploads == []


def test_device_inputs_are_checked():
    """Wrong dtype, shape or backend of a device input: ValueError naming it."""
    from numba import cuda
    p, x, h0, dy, _ = data(np.float64, 8, 1)
    o = dict(levels=2, cf=2, max_iter=1)
    with pytest.raises(ValueError, match="x is a GPU array: use backend='cuda'"):
        mgrit_forward(p, cuda.to_device(x), **o)
    with pytest.raises(ValueError, match="x is a float32 device array but the parameters are "
                                         "float64"):
        mgrit_forward(p, cuda.to_device(x.astype(np.float32)), backend="cuda", **o)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, \*, 3\)"):
        mgrit_forward(p, cuda.to_device(x[:, :, :2].copy()), backend="cuda", **o)
    with pytest.raises(ValueError, match="x must be a 3-d device array"):
        mgrit_forward(p, cuda.to_device(x[0]), backend="cuda", **o)
    fi = mgrit_forward(p, cuda.to_device(x), backend="cuda", **o)[2]
    with pytest.raises(ValueError, match=r"dy must have shape \(8, 2, 4\)"):
        mgrit_backward(p, fi, cuda.to_device(dy[:7].copy()), backend="cuda", **o)
    with pytest.raises(ValueError, match="x on the device must be C-contiguous"):
        mgrit_forward(p, cuda.to_device(np.concatenate([x, x], axis=2))[:, :, ::2],
                      backend="cuda", **o)
    with pytest.raises(ValueError, match="dy on the device must be C-contiguous"):
        wide = cuda.to_device(np.concatenate([dy, dy], axis=2))
        mgrit_backward(p, fi, wide[:, :, ::2], backend="cuda", **o)
    if SIM:                                                  # a foreign x[::-1] (CuPy): numba
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray   # mis-slices these
        with pytest.raises(ValueError, match="x on the device has a negative stride"):
            mgrit_forward(p, FakeCUDAArray(x[::-1]), backend="cuda", **o)
    for bt in (0, 2.5, True, 4096):                          # 4 bt H itemsize over 48 KiB at 4096
        with pytest.raises(ValueError, match="bt must be an int >= 1"):
            CudaGRU(p, "implicit", bt=bt)
    gru = CudaGRU(p, "implicit")                             # uploads pass device arrays through
    d = cuda.to_device(x)
    assert gru.to_device(d) is d
    with pytest.raises(ValueError, match="a float32 device array where float64 is needed"):
        gru.to_device(cuda.to_device(x.astype(np.float32)))


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


def test_docs_cuda_page_code_runs():
    """The Python blocks of docs/cuda.md run as shown (here under the simulator), in order,
    in one namespace (the second block uses the first one's data)."""
    import re
    from pathlib import Path
    page = Path(__file__).resolve().parents[1] / "docs" / "cuda.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) >= 2
    ns = {"__name__": "__snippet__"}
    for code in blocks:
        exec(compile(code, "docs/cuda.md:python", "exec"), ns)
    assert ns["d_dx"].shape == ns["x"].shape and ns["dh0"].shape == (1, 2, 8)
    # and the numbers are the NumPy backend's (float32: 1e-5 relative)
    p, x, dy = ns["params"], ns["x"], ns["dy"]
    y_n, _, fi_n = mgrit_forward(p, x, cell="implicit", max_iter=2, tol=0)
    g_n, dx_n, dh0_n, _ = mgrit_backward(p, fi_n, dy, max_iter=1, tol=0)
    close(ns["d_y"].copy_to_host(), y_n, np.float32, "y")
    close(ns["d_dx"].copy_to_host(), dx_n, np.float32, "dx")
    close(ns["dh0"], dh0_n, np.float32, "dh0")
    for k in g_n:
        close(ns["grads"][k], g_n[k], np.float32, k)


def test_cuda_solves_defer_device_frees(monkeypatch):
    """Both MGRIT solves of the cuda backend run inside numba's defer_cleanup (a device free
    mid-solve would synchronise and stall the launches), the numpy backend's do not."""
    import contextlib

    from numba import cuda
    depth = []

    @contextlib.contextmanager
    def recording():
        depth.append("in")
        yield

    monkeypatch.setattr(cuda, "defer_cleanup", recording)
    p, x, h0, dy, _ = data(np.float64, 8, 1)
    fi = mgrit_forward(p, x, h0, levels=2, cf=2, max_iter=1)[2]
    mgrit_backward(p, fi, dy, levels=2, cf=2, max_iter=1)
    assert depth == []
    fi = mgrit_forward(p, x, h0, levels=2, cf=2, max_iter=1, backend="cuda")[2]
    mgrit_backward(p, fi, dy, levels=2, cf=2, max_iter=1, backend="cuda")
    assert depth == ["in", "in"]


class _Pending:
    """Stands in for numba's queue of pending frees: counts flushes."""

    def __init__(self):
        self.cleared = 0

    def clear(self):
        self.cleared += 1


@pytest.mark.parametrize("code, becomes", [
    (2, MemoryError),                                        # numba's ctypes binding: an int
    (type("CUresult", (), {"value": 2, "name": "CUDA_ERROR_OUT_OF_MEMORY"})(), MemoryError),
    (700, "CudaAPIError"),                                   # an illegal address stays itself
])
def test_solve_scope_flushes_queued_frees_first_and_names_out_of_memory(monkeypatch, code,
                                                                        becomes):
    """Arrays released before a solve are freed on entry (not held through it), and an
    out-of-memory error inside it (numba cannot free and retry under defer_cleanup) is a
    MemoryError saying what to make smaller."""
    from numba import cuda
    from numba.cuda.cudadrv.driver import CudaAPIError

    from mgrit_gru.cuda.backend import solve_scope
    ctx = type("Ctx", (), {})()
    ctx.deallocations, ctx.memory_manager = _Pending(), type("MM", (), {})()
    ctx.memory_manager.deallocations = _Pending()
    ctx.get_memory_info = lambda: (0.5 * 2**30, 80 * 2**30)
    monkeypatch.setattr(cuda, "current_context", lambda: ctx)
    seen = []
    error = CudaAPIError(2, "out of memory")
    error.code = code
    with pytest.raises(Exception) as exc:
        with solve_scope():
            seen.append((ctx.deallocations.cleared, ctx.memory_manager.deallocations.cleared))
            raise error
    assert seen == [(1, 1)]                                  # both queues flushed before the body
    if becomes is MemoryError:
        assert type(exc.value) is MemoryError and exc.value.__cause__ is error
        assert "0.50 of 80.00 GiB free" in str(exc.value) and "smaller batch" in str(exc.value)
    else:
        assert exc.value is error


@real_gpu
def test_real_gpu_solve_scope_frees_what_was_released_before_it():
    from numba import cuda

    from mgrit_gru.cuda.backend import flush_pending_frees, solve_scope
    pending = cuda.current_context().memory_manager.deallocations
    flush_pending_frees()                                    # an empty queue to start from
    for _ in range(3):                                       # fewer than numba's batch of 10
        cuda.device_array(1 << 20, dtype=np.float32)         # released at once: queued
    assert len(pending) >= 3
    with solve_scope():
        assert len(pending) == 0
        cuda.device_array(1 << 20, dtype=np.float32)         # released inside: kept queued
        assert len(pending) == 1


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


def test_backend_mismatch_and_ranks_are_refused():
    p, x, h0, dy, _ = data(np.float64, 4, 1)
    _, _, fi = mgrit_forward(p, x, levels=1)
    with pytest.raises(ValueError, match="backend='cuda' but fwd was solved with backend='numpy'"):
        mgrit_backward(p, fi, dy, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        mgrit_forward(p, x, backend="tpu")
    from mgrit_gru.solve import get_backend
    with pytest.raises(NotImplementedError, match="one rank"):
        get_backend("cuda").problems(comm_size=2)


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
# serial forward and BPTT
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, cell, L", [(np.float64, "implicit", 2), (np.float32, "classic", 1)])
def test_serial_forward_backward_equal_numpy(dtype, cell, L):
    p, x, h0, dy, dh_T = data(dtype, 6, L, seed=2)
    y_c, hT_c, cache_c = gru_forward(p, x, h0, cell=cell, dt=0.7, backend="cuda")
    y_n, hT_n, cache_n = gru_forward(p, x, h0, cell=cell, dt=0.7)
    close(y_c, y_n, dtype, "y")
    close(hT_c, hT_n, dtype, "h_T")
    g_c, dx_c, dh0_c = gru_backward(p, cache_c, dy, dh_T)
    g_n, dx_n, dh0_n = gru_backward(p, cache_n, dy, dh_T)
    for k in g_n:
        close(g_c[k], g_n[k], dtype, k)
    close(dx_c, dx_n, dtype, "dx")
    close(dh0_c, dh0_n, dtype, "dh0")
    g_c2, dx_c2, dh0_c2 = gru_backward(p, cache_c, None, dh_T, backend="cuda")   # no dy
    g_n2, dx_n2, dh0_n2 = gru_backward(p, cache_n, None, dh_T)
    for k in g_n2:
        close(g_c2[k], g_n2[k], dtype, f"no dy: {k}")
    close(dx_c2, dx_n2, dtype, "no dy: dx")
    close(dh0_c2, dh0_n2, dtype, "no dy: dh0")
    with pytest.raises(ValueError, match="backend"):
        gru_backward(p, cache_c, dy, backend="numpy")
    with pytest.raises(ValueError, match="not this model"):
        gru_backward(init_gru(I, H + 1, L, dtype=dtype), cache_c, None)


@pytest.mark.parametrize("launches", ["scan", "per_step"])
def test_serial_device_in_device_out_equals_host_api(launches):
    """gru_forward / gru_backward (cuda) with x, dy on the device: y, h_T, dx stay there,
    with the host API's numbers; a NumPy-backend call refuses a device x by name."""
    from numba import cuda
    from mgrit_gru.cuda.serial import gru_backward as cuda_backward
    from mgrit_gru.cuda.serial import gru_forward as cuda_forward
    p, x, h0, dy, dh_T = data(np.float64, 6, 2, seed=5)
    y, hT, c = cuda_forward(p, x, h0, cell="implicit", launches=launches)
    g, dx, dh0 = cuda_backward(p, c, dy, dh_T, launches=launches)
    d_y, d_hT, d_c = cuda_forward(p, cuda.to_device(x), cuda.to_device(h0), cell="implicit",
                                  launches=launches)
    np.testing.assert_array_equal(d_y.copy_to_host(), y)
    np.testing.assert_array_equal(d_hT.copy_to_host(), hT)
    for dy_in in (dy, cuda.to_device(dy)):
        d_g, d_dx, d_dh0 = cuda_backward(p, d_c, dy_in, cuda.to_device(dh_T), launches=launches)
        np.testing.assert_array_equal(d_dx.copy_to_host(), dx)
        np.testing.assert_array_equal(d_dh0, dh0)
        for k in g:
            np.testing.assert_array_equal(d_g[k], g[k])
    with pytest.raises(ValueError, match="x is a GPU array: use backend='cuda'"):
        gru_forward(p, cuda.to_device(x))
    with pytest.raises(ValueError, match="dy must have shape"):
        cuda_backward(p, d_c, cuda.to_device(dy[:5].copy()))


def test_serial_per_step_launches_equal_the_scan():
    """The one-launch-per-step baseline (benchmark rows) = the persistent scan = NumPy."""
    from mgrit_gru.cuda import serial
    p, x, h0, dy, dh_T = data(np.float64, 5, 2, seed=4)
    y_n, _, cache_n = gru_forward(p, x, h0, cell="implicit")
    g_n, dx_n, dh0_n = gru_backward(p, cache_n, dy, dh_T)
    for launches in ("per_step", "scan"):
        y_c, _, cache_c = serial.gru_forward(p, x, h0, cell="implicit", launches=launches)
        close(y_c, y_n, np.float64, f"y {launches}")
        g_c, dx_c, dh0_c = serial.gru_backward(p, cache_c, dy, dh_T, launches=launches)
        for k in g_n:
            close(g_c[k], g_n[k], np.float64, f"{k} {launches}")
        close(dx_c, dx_n, np.float64, f"dx {launches}")
        close(dh0_c, dh0_n, np.float64, f"dh0 {launches}")
    with pytest.raises(ValueError, match="launches"):
        serial.gru_forward(p, x, h0, launches="graph")


# ----------------------------------------------------------------------------------------------
# the vector operations and the small kernels
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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_kernels(dtype):
    from mgrit_gru.cuda.vector_kernels import take_rows, window_mean
    gru = CudaGRU(init_gru(I, H, 1, dtype=dtype))
    rng = np.random.default_rng(1)
    src = rng.standard_normal((9, 2, B, H)).astype(dtype)
    idx = np.array([8, 3, 3, 0, 5], np.int64)
    out = gru.empty((5, 2, B, H))
    take_rows(gru.to_device(src), gru.to_device(idx, np.int64), out)
    close(gru.to_host(out), src[idx], dtype, "take_rows")
    gx = rng.standard_normal((10, B, 6)).astype(dtype)
    for span in (1, 4):
        out = gru.empty((10 - span + 1, B, 6))
        window_mean(gru.to_device(gx), span, out)
        want = np.stack([gx[a:a + span].mean(0) for a in range(10 - span + 1)])
        close(gru.to_host(out), want, dtype, f"window_mean span {span}")


PTX_SCRIPT = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from mgrit_gru.cuda.vector_kernels import vector_kernels, signatures
    for dtype in (np.float32, np.float64):
        ks = vector_kernels(dtype)
        assert set(signatures(dtype)) == set(ks.py_funcs)
        for name, sig in signatures(dtype).items():
            ptx, _ = cuda.compile_ptx(ks.py_funcs[name], sig, cc=(9, 0))
            assert ".entry" in ptx, name
            assert dtype is np.float64 or ".f64" not in ptx, f"float64 ops in float32 {name}"
            print(name, "ok")
""")


def test_vector_kernels_ptx_sm90():
    """The backend's own small kernels compile for sm_90 (outside the simulator)."""
    proc = run_without_simulator(PTX_SCRIPT)
    assert proc.stdout.count(" ok") == 6


# ----------------------------------------------------------------------------------------------
# the benchmark: refuses without a GPU; its logic on tiny sizes under the simulator
# ----------------------------------------------------------------------------------------------
def test_bench_cuda_refuses_without_gpu(capsys):
    from mgrit_gru.tools.cli import main
    if cuda_available():
        pytest.skip("a GPU is present")
    assert main(["bench", "--what", "cuda", "--seq-len", "8"]) == 2
    assert "GPU" in capsys.readouterr().err


def _stub_torch(built):
    """A stand-in for torch that records what the cuDNN rows build and call: no GPU here.
    Tensors are NumPy arrays; the GRU returns (y, h) with h numbered by call, so a test can see
    which state each chunk started from."""
    import types

    class GRU:
        def __init__(self, *args, **kw):
            built.append(("GRU", args, kw))

        def cuda(self):
            return self

        def to(self, dtype):
            built.append(("to", dtype))
            return self

        def zero_grad(self, **kw):
            pass

        def __call__(self, x, h=None):
            built.append(("call", x.shape[0], h))
            return np.zeros(x.shape[:2] + (8,)), len([b for b in built if b[0] == "call"])

    class NoGrad:
        def __enter__(self):
            pass

        def __exit__(self, *a):
            pass

    return types.SimpleNamespace(
        nn=types.SimpleNamespace(GRU=GRU), float32="f32", float64="f64", no_grad=NoGrad,
        cuda=types.SimpleNamespace(is_available=lambda: True, synchronize=lambda: None,
                                   empty_cache=lambda: built.append(("empty_cache",))),
        autograd=types.SimpleNamespace(backward=lambda ys, dys: built.append(
            ("backward", [y.shape[0] for y in ys], [d.shape[0] for d in dys]))),
        manual_seed=lambda s: None, __version__="stub",
        randn=lambda *shape, **kw: (built.append(("randn", shape, kw["dtype"])),
                                    np.zeros(shape))[1],
        backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(enabled=True)))


def test_cudnn_rows_build_the_gru_the_row_says(monkeypatch):
    """The cuDNN baseline has the rows' layers and dtype (it was always one float32 layer),
    and its rows say the classic cell (cuDNN's only one)."""
    import sys

    from mgrit_gru.tools.bench_cuda import _torch_rows
    built = []
    monkeypatch.setitem(sys.modules, "torch", _stub_torch(built))
    base = dict(bench="cuda", layers=3, dtype="float64", hidden=8, input=4, cell="implicit")
    rows = _torch_rows(16, 2, 8, 4, 1, 0, base)
    assert built[:4] == [("GRU", (4, 8), {"num_layers": 3}), ("to", "f64"),
                         ("randn", (16, 2, 4), "f64"), ("randn", (16, 2, 8), "f64")]
    assert [r["run"] for r in rows] == ["torch_forward", "torch_forward_backward"]
    assert all((r["layers"], r["dtype"], r["cell"], r["chunks"]) == (3, "float64", "classic", 1)
               for r in rows)


def test_cudnn_runs_a_long_sequence_as_chunks_carrying_the_state(monkeypatch):
    """cuDNN refuses T = 65536 (CUDNN_STATUS_NOT_SUPPORTED on the H200): a sequence longer than
    TORCH_CHUNK runs as chunks of at most that many steps, each starting from the state the
    last one returned, and the backward gets each chunk's dy; torch's cache is emptied after."""
    import sys

    from mgrit_gru.cuda import bench
    built = []
    monkeypatch.setitem(sys.modules, "torch", _stub_torch(built))
    monkeypatch.setattr(bench, "TORCH_CHUNK", 6)
    rows = bench._torch_rows_or_none(16, 2, 8, 4, 0, 0, dict(dtype="float32", layers=1))
    assert [r["chunks"] for r in rows] == [3, 3]
    calls = [b for b in built if b[0] == "call"]
    assert [c[1] for c in calls] == [6, 6, 4] * 2               # forward, then forward+backward
    assert [c[2] for c in calls] == [None, 1, 2, None, 4, 5]    # h: None, then the last chunk's
    assert ("backward", [6, 6, 4], [6, 6, 4]) in built
    assert built[-1] == ("empty_cache",)


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


def test_a_failing_cudnn_baseline_costs_only_its_own_rows(monkeypatch, capsys):
    """torch failing (out of memory, a cuDNN or driver error) gives no torch rows and a line
    on stderr, not an exception that would lose the (T, B)'s MGRIT rows."""
    import sys
    import types

    from mgrit_gru.tools.bench_cuda import _torch_rows_or_none

    def oom(*a, **kw):
        raise RuntimeError("CUDA out of memory")
    emptied = []
    torch = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, empty_cache=lambda: emptied.append(1)), manual_seed=oom)
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert _torch_rows_or_none(16, 2, 8, 4, 1, 0, dict(dtype="float32", layers=1)) == []
    assert "(T, B) = (16, 2) failed: RuntimeError: CUDA out of memory" in capsys.readouterr().err
    assert emptied == [1]                                    # what it had cached goes back


def test_bench_cuda_logic_under_the_simulator(tmp_path):
    import json

    from numba.cuda import config

    from mgrit_gru.tools.bench import bench_cuda
    from mgrit_gru.tools.bench_cuda import table
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    out = tmp_path / "r.json"
    recs = list(bench_cuda(seq_lens=(4,), batches=(1,), hidden=4, input_size=3, repeat=0,
                           levels=2, cf=2, simulate=True, torch=False, out=str(out)))
    kinds = {r["run"] for r in recs}
    assert {"serial_forward", "serial_forward_backward", "mgrit_forward", "mgrit_backward",
            "mgrit_forward_backward", "serial_forward_per_step",
            "serial_forward_backward_per_step", "mgrit_forward_backward_device"} <= kinds
    by = {r["run"]: r for r in recs}                         # device I/O: the same numbers
    assert by["mgrit_forward_backward_device"]["error_vs_serial"] == \
        by["mgrit_forward_backward"]["error_vs_serial"]
    for r in recs:
        assert r["seconds"] > 0 and r["seq_len"] == 4 and r["hidden"] == 4
        if r["run"].startswith("mgrit"):
            assert np.isfinite(r["residual"]) and np.isfinite(r["error_vs_serial"])
        if r["run"] in ("mgrit_forward", "mgrit_backward"):
            assert 0 < r["solver_s"] <= r["seconds"] and r["phase_s"]
            assert set(r["phase_device_s"]) == set(r["phase_s"])       # a synced solve's split
            assert all(v > 0 for v in r["phase_device_s"].values())
        if r["run"] == "mgrit_forward_backward":
            assert r["host_io_s"] > 0
        if r["run"].endswith("per_step"):                    # the same numbers as the scan
            assert r["error_vs_serial"] < 1e-5
    assert "host copies alone" in table(recs) and "on-device I/O" in table(recs)
    assert "forward: device ms by phase: " in table(recs)
    assert "MGRIT_GRU_SYNC_TIMERS" not in os.environ                # restored after the bench
    saved = json.loads(out.read_text())
    assert saved["records"] == recs
    assert set(saved["launch_us"]) == {"axpby", "gru_step"}
    assert all(v > 0 for v in saved["launch_us"].values())


def test_a_pair_out_of_gpu_memory_costs_only_its_own_rows(monkeypatch, capsys):
    """A (T, B) that runs out of device memory (T = 65536, B = 32 on a smaller card) keeps the
    rows measured before it and the next (T, B) still runs; any other error is raised."""
    from numba.cuda import config

    from mgrit_gru.cuda import bench
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    real = bench.mgrit_forward

    def forward(params, x, *a, **kw):
        if x.shape[0] == 4:
            raise MemoryError("the GPU ran out of memory during the MGRIT solve")
        return real(params, x, *a, **kw)
    monkeypatch.setattr(bench, "mgrit_forward", forward)
    o = dict(batches=(1,), hidden=4, input_size=3, repeat=0, levels=2, cf=2, simulate=True,
             torch=False)
    recs = list(bench.bench_cuda(seq_lens=(4, 8), **o))
    runs = {T: [r["run"] for r in recs if r["seq_len"] == T] for T in (4, 8)}
    assert runs[4] == ["serial_forward", "serial_forward_backward", "serial_forward_per_step",
                       "serial_forward_backward_per_step"]
    assert "mgrit_forward_backward_device" in runs[8]
    assert "(T, B) = (4, 1): out of GPU memory after 4 rows" in capsys.readouterr().err

    def broken(*a, **kw):
        raise ValueError("a bug, not the card")
    monkeypatch.setattr(bench, "mgrit_forward", broken)
    with pytest.raises(ValueError, match="a bug"):
        list(bench.bench_cuda(seq_lens=(4,), **o))


def test_the_bench_knows_out_of_memory_from_other_errors():
    from numba.cuda.cudadrv.driver import CudaAPIError

    from mgrit_gru.tools.bench_cuda import _out_of_memory

    def api_error(code):                                     # the driver's error carries .code;
        e = CudaAPIError(code, "m")                          # the simulator's class keeps none
        e.code = code
        return e
    assert _out_of_memory(MemoryError("solve_scope's")) and _out_of_memory(api_error(2))
    assert not _out_of_memory(api_error(700))
    assert not _out_of_memory(ValueError("x"))


def test_scan_blocks_sweep_logic_under_the_simulator():
    """The grid-size sweep of the persistent scan: one record per grid that fits (one block
    under the simulator), its states equal to NumPy stepping and to the default grid's."""
    from numba.cuda import config

    from mgrit_gru.tools.bench_cuda import scan_blocks_sweep
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    recs = scan_blocks_sweep(T=5, B=2, hidden=4, dtype="float64", blocks=(1, 2, 4), repeat=0)
    assert [r["blocks"] for r in recs] == [1] and recs[0]["default"]
    assert recs[0]["us_per_step"] > 0 and recs[0]["max_diff"] == 0.0
    assert recs[0]["error_vs_numpy"] < 1e-12


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


@real_gpu
def test_real_gpu_serial_h256():
    dtype, T, Hs = np.float32, 256, 256
    p = init_gru(Hs, Hs, 2, seed=1, dtype=dtype)
    x = np.random.default_rng(1).standard_normal((T, 4, Hs)).astype(dtype)
    y_c, _, c_c = gru_forward(p, x, backend="cuda")
    y_n, _, c_n = gru_forward(p, x)
    close(y_c, y_n, dtype, "y")
    g_c, dx_c, _ = gru_backward(p, c_c, np.ones_like(y_n))
    g_n, dx_n, _ = gru_backward(p, c_n, np.ones_like(y_n))
    for k in g_n:
        close(g_c[k], g_n[k], dtype, k)
    close(dx_c, dx_n, dtype, "dx")


@pytest.mark.parametrize("solver", ["mgrit", "serial"])
def test_training_step_on_cuda_equals_numpy(solver):
    """backend='cuda' reaches training: one classifier step gives the numpy step's loss/grads."""
    from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier
    rng = np.random.default_rng(0)
    params = init_classifier(3, 4, 2, 3, seed=1)
    x, labels = rng.standard_normal((8, 2, 3)), np.array([0, 2])
    kw = dict(solver=solver, levels=2, cf=2, fwd_iters=2, bwd_iters=1, cell="implicit")
    ref = forward_backward(params, x, labels, SolverOptions(**kw))
    got = forward_backward(params, x, labels, SolverOptions(backend="cuda", **kw))
    assert abs(got.loss - ref.loss) <= 1e-10 * abs(ref.loss)
    for k in ref.grads:
        close(got.grads[k], ref.grads[k], np.float64, k)
    with pytest.raises(ValueError, match="backend"):
        SolverOptions(backend="opencl")


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
    close(dx_c, dx_n, np.float64); close(dh0_c, dh0_n, np.float64)


NO_GPU_SCRIPT = textwrap.dedent("""
    import numpy as np
    import mgrit_gru as mg
    from mgrit_gru.cuda import cuda_available
    p = mg.init_gru(3, 4, 1)
    x = np.zeros((8, 1, 3))
    for run in (lambda: mg.mgrit_forward(p, x, backend="cuda", levels=2, cf=2),
                lambda: mg.gru_forward(p, x, backend="cuda")):
        try:
            run()
            print("RAN")
        except ValueError as e:
            print("ValueError:", e)
    print("GPU" if cuda_available() else "NOGPU")
""")


def test_backend_cuda_without_a_gpu_says_so():
    """Outside the simulator and without a GPU, backend='cuda' is a ValueError that says how to
    use the simulator, not a driver traceback (with a GPU: it runs)."""
    out = run_without_simulator(NO_GPU_SCRIPT).stdout
    if "NOGPU" in out:
        assert out.count("ValueError: backend='cuda' needs a CUDA GPU") == 2, out
        assert "NUMBA_ENABLE_CUDASIM=1" in out
    else:
        assert out.count("RAN") == 2, out


def test_train_one_epoch_on_cuda_equals_numpy(tmp_path):
    """The whole loop (data, batches, solves, Adam, evaluation, checkpoint) with backend='cuda'
    gives the numpy backend's history and parameters (float64)."""
    from mgrit_gru import training as tr
    cfg = dict(data="pulse", seq_len=8, num_sequences=8, hidden=3, batch_size=6,
               levels=2, cf=2, fwd_iters=2, bwd_iters=1, epochs=1, seed=0, test_fraction=0.25,
               dtype="float64")
    runs = {b: tr.train(out=str(tmp_path / b), progress=False, verbose=False, backend=b, **cfg)
            for b in ("numpy", "cuda")}
    hn, hc = runs["numpy"].history[0], runs["cuda"].history[0]
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert abs(hc[key] - hn[key]) <= 1e-10 * max(1.0, abs(hn[key])), key
    for k, v in runs["numpy"].params.items():
        close(runs["cuda"].params[k], v, np.float64, k)
    assert tr.load_checkpoint(tmp_path / "cuda" / "checkpoint.npz").config.backend == "cuda"
