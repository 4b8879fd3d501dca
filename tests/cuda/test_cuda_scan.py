"""The persistent kernels (`mgrit_gru.cuda.scan_kernels`): a whole recurrence in one launch.

Against a loop of NumPy steps (`step_forward` / `step_backward`). Under the simulator the grid is
one block (its barrier is then `syncthreads`); sizes are chosen so that one block needs several
rounds of items (B*H > 8) and the split dot products have idle threads (H < 32). Outputs are
NaN-poisoned. On a real GPU (`real_gpu`) the multi-block barrier runs at H = 256 with every block
count from 1 to the number of multiprocessors' worth.
"""
import textwrap

import numpy as np
import pytest
from _cuda_helpers import GATES, close, nan, real_gpu
from _nosim import run_without_simulator

from mgrit_gru.cuda import CudaGRU
from mgrit_gru.gru import init_gru, step_backward, step_forward


def problem(dtype, L, n=4, B=3, H=5, I=3, T=7, seed=0):
    p = init_gru(I, H, L, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    gx0 = (x @ p["weight_ih_l0"].T + p["bias_ih_l0"]).astype(dtype)
    t = rng.permutation(T)[:n].astype(np.int64)              # rows of gx0, any order
    return p, gx0, t, rng


def ref_march(p, gx0, u0, t, cell, dt, g=None):
    """u[i+1] = Φ(u[i]) (+ g[i+1]) by NumPy steps; u: (n+1, L, B, H), and each step's caches."""
    u = [u0]
    caches = []
    for i, ti in enumerate(t):
        h, c = step_forward(p, gx0[ti][None], u[-1][:, None], cell, dt)
        h = h[:, 0]
        u.append(h + (0 if g is None else g[i + 1]))
        caches.append(c)
    return np.stack(u), caches


# every value of every option at least twice, every pair of options at least once (the simulator
# runs 256 Python threads per block: the full product would cost minutes)
COMBOS = [(np.float64, "classic", 1, False), (np.float64, "implicit", 2, True),
          (np.float32, "classic", 2, True), (np.float32, "implicit", 1, False),
          (np.float64, "classic", 2, False), (np.float32, "implicit", 2, True),
          (np.float64, "implicit", 1, True), (np.float32, "classic", 1, True)]


@pytest.mark.parametrize("dtype, cell, L, forcing", COMBOS)
def test_scan_equals_stepping(dtype, cell, L, forcing):
    p, gx0, t, rng = problem(dtype, L)
    n = len(t)
    _, B, _ = gx0.shape
    H = p["weight_hh_l0"].shape[1]
    u0 = rng.standard_normal((L, B, H)).astype(dtype)
    g = rng.standard_normal((n + 1, L, B, H)).astype(dtype) if forcing else None
    want, caches = ref_march(p, gx0, u0, t, cell, 0.7, g)
    be = CudaGRU(p, cell)
    us = nan((n + 1, L, B, H), dtype)
    us[0] = u0
    d_us = be.to_device(us)
    tg = np.arange(n, dtype=np.int64)[::-1].copy() + 2          # gate rows, reversed and shifted
    gates = {k: be.to_device(nan((n + 2, L, B, H), dtype)) for k in GATES}
    be.scan(d_us, be.to_device(t, np.int64), be.to_device(gx0), 0.7,
            g=None if g is None else be.to_device(g), gates=gates, tg=be.to_device(tg, np.int64))
    close(be.to_host(d_us), want, dtype)
    for k in GATES:
        tab = be.to_host(gates[k])
        close(tab[tg], np.stack([[c[k][0] for c in ci] for ci in caches]), dtype)
        assert np.all(np.isnan(tab[:2])), "gates written outside rows tg"


@pytest.mark.parametrize("dtype, cell, L, forcing", COMBOS)
def test_vjp_scan_equals_adjoint_stepping(dtype, cell, L, forcing):
    """lam[i+1] = J_iᵀ lam[i] (+ g[i+1]) (+ f[i+1] on the top layer) at states U[tu[i]] with the
    gates at rows tg[i]; the gate cotangents stored at td[i]."""
    p, gx0, t, rng = problem(dtype, L, seed=3)
    n, (_, B, _) = len(t), gx0.shape
    H = p["weight_hh_l0"].shape[1]
    U = rng.standard_normal((n + 2, L, B, H)).astype(dtype)
    tu = rng.permutation(n + 2)[:n].astype(np.int64)
    caches = [step_forward(p, gx0[t[i]][None], U[tu[i]][:, None], cell, 0.7)[1] for i in range(n)]
    tg = rng.permutation(n + 1)[:n].astype(np.int64)
    tabs = {k: np.zeros((n + 1, L, B, H), dtype) for k in GATES}
    for i in range(n):
        for k in GATES:
            tabs[k][tg[i]] = np.stack([c[k][0] for c in caches[i]])     # caches: per layer
    g = rng.standard_normal((n + 1, L, B, H)).astype(dtype) if forcing else None
    f = rng.standard_normal((n + 1, 1, B, H)).astype(dtype) if forcing else None
    lam0 = rng.standard_normal((L, B, H)).astype(dtype)
    want, dgxs, dghs = [lam0], [], []
    for i in range(n):
        dh, dgx, dgh = step_backward(p, caches[i], want[-1][:, None], cell, 0.7)
        nxt = dh[:, 0].copy()
        if forcing:
            nxt += g[i + 1]
            nxt[L - 1] += f[i + 1, 0]
        want.append(nxt)
        dgxs.append(np.stack(dgx)[:, 0])
        dghs.append(np.stack(dgh)[:, 0])
    be = CudaGRU(p, cell)
    lam = nan((n + 1, L, B, H), dtype)
    lam[0] = lam0
    d_lam = be.to_device(lam)
    td = np.arange(n, dtype=np.int64) + 1
    dg = (be.to_device(nan((n + 1, L, B, 3 * H), dtype)),
          be.to_device(nan((n + 1, L, B, 3 * H), dtype)))
    dv = be.to_device
    be.vjp_scan(dv(U), dv(tu, np.int64), d_lam, {k: dv(v) for k, v in tabs.items()},
                dv(tg, np.int64), 0.7, g=None if g is None else dv(g),
                f=None if f is None else dv(f), dg=dg, td=dv(td, np.int64))
    close(be.to_host(d_lam), np.stack(want), dtype)
    close(be.to_host(dg[0])[td], np.stack(dgxs), dtype)
    close(be.to_host(dg[1])[td], np.stack(dghs), dtype)
    assert np.all(np.isnan(be.to_host(dg[0])[0])), "cotangents written outside rows td"


def test_scan_of_no_steps_is_a_no_op():
    p, gx0, t, _ = problem(np.float64, 1)
    be = CudaGRU(p)
    us = be.to_device(np.ones((1, 1, 3, 5)))
    be.scan(us, be.to_device(t[:0], np.int64), be.to_device(gx0), 1.0)
    assert np.all(be.to_host(us) == 1.0)


def test_scan_refuses_more_blocks_than_can_be_resident():
    p, gx0, t, _ = problem(np.float64, 1)
    be = CudaGRU(p)
    us = be.to_device(np.zeros((len(t) + 1, 1, 3, 5)))
    for bad in (0, be.max_scan_blocks() + 1, 1.5):           # simulator: 1; a GPU: its SMs
        with pytest.raises(ValueError, match="blocks"):
            be.scan(us, be.to_device(t, np.int64), be.to_device(gx0), 1.0, blocks=bad)


PTX_SCRIPT = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from mgrit_gru.cuda.scan_kernels import scan_kernels, scan_signatures
    for dtype in (np.float32, np.float64):
        ks = scan_kernels(dtype)
        assert set(scan_signatures(dtype)) == set(ks.py_funcs)
        for name, sig in scan_signatures(dtype).items():
            ptx, _ = cuda.compile_ptx(ks.py_funcs[name], sig, cc=(9, 0))
            assert ".entry" in ptx and "atom" in ptx and "membar.gl" in ptx, name
            assert "ld.global.cg" in ptx, name               # cross-block reads bypass L1
            assert dtype is np.float64 or ".f64" not in ptx, f"float64 ops in float32 {name}"
            print(np.dtype(dtype).name, name, "ok")
""")


def test_scan_ptx_sm90():
    """Both persistent kernels compile for sm_90, float32 and float64, with the barrier's atomic
    and fence in the PTX (the simulator cannot check either)."""
    proc = run_without_simulator(PTX_SCRIPT)
    assert proc.stdout.count(" ok") == 4


@real_gpu
@pytest.mark.parametrize("Bs", [1, 32])
def test_real_gpu_scans_h256_every_block_count(Bs):
    """H = 256, 2 layers, float64: the multi-block barrier at several grid sizes, three times each
    (a barrier race need not show every time), gives the march of the per-step launches, which
    is NumPy's."""
    dtype, Hs, Ls, n = np.float64, 256, 2, 64
    p = init_gru(Hs, Hs, Ls, seed=5, dtype=dtype)
    rng = np.random.default_rng(5)
    gx0 = rng.standard_normal((n, Bs, 3 * Hs)).astype(dtype)
    u0 = rng.standard_normal((Ls, Bs, Hs)).astype(dtype)
    be = CudaGRU(p, "implicit")
    d_gx, d_t = be.to_device(gx0), be.to_device(np.arange(n), np.int64)
    ref = be.to_device(np.concatenate([u0[None], nan((n, Ls, Bs, Hs), dtype)]))
    gates = {k: be.empty((n, Ls, Bs, Hs)) for k in GATES}
    for i in range(n):                                       # one launch per step: the reference
        be.step(ref[i:i + 1], d_t[i:i + 1], d_gx, 1.0, ref[i + 1:i + 2], gates=gates)
    want = be.to_host(ref)
    close(want, ref_march(p, gx0, u0, np.arange(n), "implicit", 1.0)[0], dtype)
    lam0 = rng.standard_normal((Ls, Bs, Hs))
    rev = be.to_device(np.arange(n)[::-1].copy(), np.int64)
    lam_ref = be.to_device(np.concatenate([lam0[None], nan((n, Ls, Bs, Hs), dtype)]))
    for i in range(n):
        be.vjp(ref[n - 1 - i:n - i], lam_ref[i:i + 1], rev[i:i + 1], 1.0, lam_ref[i + 1:i + 2],
               gates=gates)
    lam_want = be.to_host(lam_ref)
    for blocks in (1, 7, be.scan_blocks(Bs)) * 3:
        us = be.to_device(np.concatenate([u0[None], nan((n, Ls, Bs, Hs), dtype)]))
        be.scan(us, d_t, d_gx, 1.0, blocks=blocks)
        close(be.to_host(us), want, dtype)
        lam = be.to_device(np.concatenate([lam0[None], nan((n, Ls, Bs, Hs), dtype)]))
        be.vjp_scan(ref, rev, lam, gates, rev, 1.0, blocks=blocks)
        close(be.to_host(lam), lam_want, dtype)
    # back to back, no host copy between: the second scan's memset of the shared barrier
    # counter must wait (stream order) until the first scan is done with it
    us_a, us_b = (be.to_device(np.concatenate([u0[None], nan((n, Ls, Bs, Hs), dtype)]))
                  for _ in range(2))
    be.scan(us_a, d_t, d_gx, 1.0)
    be.scan(us_b, d_t, d_gx, 1.0)
    close(be.to_host(us_a), want, dtype)
    close(be.to_host(us_b), want, dtype)


def test_scans_with_hidden_size_over_32():
    """H = 40 > S = 32: each split thread sums two columns (c = sp, sp + 32)."""
    dtype, L, B, H, I, n = np.float64, 2, 1, 40, 3, 2
    p = init_gru(I, H, L, seed=2, dtype=dtype)
    rng = np.random.default_rng(2)
    gx0 = rng.standard_normal((n, B, 3 * H)).astype(dtype)
    u = [rng.standard_normal((L, B, H))]
    caches = []
    for i in range(n):
        h, c = step_forward(p, gx0[i][None], u[-1][:, None], "classic", 1.0)
        u.append(h[:, 0])
        caches.append(c)
    be = CudaGRU(p)
    us = nan((n + 1, L, B, H), dtype)
    us[0] = u[0]
    d_us = be.to_device(us)
    d_t = be.to_device(np.arange(n), np.int64)
    gates = {k: be.to_device(nan((n, L, B, H), dtype)) for k in GATES}
    be.scan(d_us, d_t, be.to_device(gx0), 1.0, gates=gates)
    close(be.to_host(d_us), np.stack(u), dtype)
    lam = nan((n + 1, L, B, H), dtype)
    lam[0] = rng.standard_normal((L, B, H))
    want = [lam[0]]
    for i in range(n):
        want.append(step_backward(p, caches[i], want[-1][:, None], "classic", 1.0)[0][:, 0])
    d_lam = be.to_device(lam)
    be.vjp_scan(be.to_device(np.stack(u[:n])), d_t, d_lam, gates, d_t, 1.0)
    close(be.to_host(d_lam), np.stack(want), dtype)
