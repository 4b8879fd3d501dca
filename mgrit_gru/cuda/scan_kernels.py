"""Persistent kernels: a whole sequential recurrence (forward or adjoint) in ONE launch.

Serial stepping with one launch per step is bound by launch latency (numba's launch path with ~20
arguments costs a few hundred µs on the host, far more than the step itself at B = 1). The same
recurrence runs on the coarsest MGRIT level. These kernels launch once for all n steps:

    gru_scan       us[i+1] = Φ(us[i]; gx[t[i]], dt) (+ g[i+1])                i = 0 .. n-1
    gru_vjp_scan   lam[i+1] = (∂Φ/∂u at U[tu[i]], gates[tg[i]])ᵀ lam[i] (+ g[i+1]) (+ f[i+1] on
                   the top layer)

Grid-wide barrier. Step i+1 needs every hidden unit of step i, so the grid waits for all its
blocks between steps (and between layers: layer k+1's input is layer k's new state). The barrier
is a counter in global memory: thread 0 of each block fences its block's writes
(`threadfence` after `syncthreads`: the cumulative fence that cooperative groups' grid sync also
uses), adds 1 and spins until the counter reaches (barriers so far) x (blocks). It is only safe
when every block is resident at once, so the host launches at most one block per multiprocessor
(`scan_blocks`), with small blocks that always fit. The simulator runs blocks one after another:
there the grid is one block, and the barrier reduces to `syncthreads`.

Thread layout (block of NT = 256 threads = NI = 8 item slots x S = 32 splits). An *item* is one
output unit (sequence b, hidden unit j); its dot products over the H inputs are split across the
32 threads of a slot (thread sp sums c = sp, sp + 32, ...: consecutive threads read consecutive
weights and states, coalesced), then tree-reduced in shared memory in a fixed order (the
simulator has no warp shuffles; the reduction is deterministic either way). Items are dealt to
slots grid-wide in rounds; item = j * B + b, so the slots of a block share the weight rows of one
j across sequences (L1 hits). The forward matvec W_hh h reads W_hh (L, 3H, H) row-wise; the VJP's
transposed matvec Σ_m dg[m] W_hh[m, j] reads the transposed copy W_hhT (L, H, 3H) row-wise, both
coalesced. The VJP runs in two phases per layer: the gate cotangents (elementwise, every thread
of the grid), a barrier, then the transposed matvecs (items), a barrier.

Scratch in global memory: ``phi`` (L, B, H) holds layer k's Φ value (without the forcing g) as
layer k+1's input (stored as (1, L, B, H)); ``dga`` (B, 3H), ``dan``, ``dhd``, ``carry`` (B, H) the VJP's staged gate
cotangents, da_n, the direct term and the carry dgx_{k+1} W_ih_{k+1} to layer k. ``bar`` is the
barrier counter (int64, zeroed by the host before each launch).
"""
from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

from numba import cuda, int64, types
from numba.cuda import config

from .kernels import _nb_type, cell_math

NT = 256                # threads per block
S = 32                  # threads splitting one item's dot products (a warp's worth)
NI = NT // S            # items per block per round
SHARED = 6 * NT         # shared partial sums: 6 rows (3 gates x 2 matvecs) of NT (a constant for numba)


# Loads of what other blocks wrote during this launch (states, λ, the scratch) go through L2
# (ld.global.cg): the SM's L1 is not coherent across SMs, and a line cached before the barrier
# would be stale after it. Weights, biases, inputs and stored gates (written before the launch)
# use ordinary loads and stay in L1. The simulator has no cache hints: a plain load there.
if config.ENABLE_CUDASIM:
    @cuda.jit(device=True, inline="always")
    def ld4(a, i, k, b, j):
        return a[i, k, b, j]

    @cuda.jit(device=True, inline="always")
    def ld2(a, i, j):
        return a[i, j]
else:
    # the intrinsic behind cuda.ldcg: the overload would need a live device to compile (PTX tests)
    from numba.cuda.cache_hints import ldcg_intrinsic

    @cuda.jit(device=True, inline="always")
    def ld4(a, i, k, b, j):
        return ldcg_intrinsic(a, (int64(i), int64(k), int64(b), int64(j)))

    @cuda.jit(device=True, inline="always")
    def ld2(a, i, j):
        return ldcg_intrinsic(a, (int64(i), int64(j)))


@cuda.jit(device=True, inline="always")
def grid_barrier(bar, target):
    """Wait until ``target`` block arrivals are counted in bar[0] (this block's included)."""
    cuda.syncthreads()                                       # the block's writes precede thread 0's fence
    if cuda.threadIdx.x == 0:
        cuda.threadfence()                                   # ... and are visible grid-wide before we count
        cuda.atomic.add(bar, 0, 1)
        while cuda.atomic.add(bar, 0, 0) < target:           # atomic read: served by L2, never stale
            pass
        cuda.threadfence()
    cuda.syncthreads()


def _make_scans(dtype, nb_t):
    ZERO = dtype.type(0.0)
    cm = cell_math(dtype)
    cell, cell_vjp, store_dg = cm.cell, cm.cell_vjp, cm.store_dg

    @cuda.jit(device=True, inline="always")
    def reduce6(red, tid, sp, v0, v1, v2, v3, v4, v5):
        """Stage this thread's 6 partial sums, then sum each row's S partials of the slot into
        red[q*NT + tid] of its sp = 0 thread (a fixed-order tree; every thread must call it)."""
        red[tid] = v0
        red[NT + tid] = v1
        red[2 * NT + tid] = v2
        red[3 * NT + tid] = v3
        red[4 * NT + tid] = v4
        red[5 * NT + tid] = v5
        cuda.syncthreads()
        w = S // 2
        while w > 0:
            if sp < w:
                for q in range(6):
                    red[q * NT + tid] += red[q * NT + tid + w]
            cuda.syncthreads()
            w //= 2

    def gru_scan(us, t, gx, W_hh, b_hh, W_ih, b_ih, dt, implicit, g, use_g, phi,
                 r_tab, z_tab, n_tab, ghn_tab, tg, store, bar):
        """us[i+1] = Φ(us[i]; gx[t[i]], dt) (+ g[i+1]) for i = 0..n-1 (us: (n+1, L, B, H));
        the gates of step i are stored at row tg[i] if store."""
        n1, L, B, H = us.shape
        tid = cuda.threadIdx.x
        slot = tid // S
        sp = tid - slot * S
        nblk = cuda.gridDim.x
        red = cuda.shared.array(SHARED, nb_t)                # partial sums: 3 gates x (W_hh h, W_ih x)
        items = B * H
        rounds = (items + nblk * NI - 1) // (nblk * NI)      # the same for every block (barriers!)
        arrivals = 0
        for i in range(n1 - 1):
            ti = t[i]
            for k in range(L):
                for rd in range(rounds):
                    item = (rd * nblk + cuda.blockIdx.x) * NI + slot
                    ok = item < items
                    j = item // B
                    b = item - j * B
                    a_r = ZERO
                    a_z = ZERO
                    a_n = ZERO
                    x_r = ZERO
                    x_z = ZERO
                    x_n = ZERO
                    if ok:
                        for c in range(sp, H, S):            # coalesced across the slot's threads
                            h_c = ld4(us, i, k, b, c)
                            a_r += W_hh[k, j, c] * h_c
                            a_z += W_hh[k, H + j, c] * h_c
                            a_n += W_hh[k, 2 * H + j, c] * h_c
                            if k > 0:
                                x_c = ld4(phi, 0, k - 1, b, c)   # layer k-1's Φ value (no forcing)
                                x_r += W_ih[k, j, c] * x_c
                                x_z += W_ih[k, H + j, c] * x_c
                                x_n += W_ih[k, 2 * H + j, c] * x_c
                    reduce6(red, tid, sp, a_r, a_z, a_n, x_r, x_z, x_n)
                    if ok and sp == 0:
                        gh_r = red[tid] + b_hh[k, j]
                        gh_z = red[NT + tid] + b_hh[k, H + j]
                        ghn = red[2 * NT + tid] + b_hh[k, 2 * H + j]
                        if k == 0:
                            gx_r = gx[ti, b, j]
                            gx_z = gx[ti, b, H + j]
                            gx_n = gx[ti, b, 2 * H + j]
                        else:
                            gx_r = red[3 * NT + tid] + b_ih[k, j]
                            gx_z = red[4 * NT + tid] + b_ih[k, H + j]
                            gx_n = red[5 * NT + tid] + b_ih[k, 2 * H + j]
                        r, z, n, h_new = cell(gx_r, gx_z, gx_n, gh_r, gh_z, ghn,
                                              ld4(us, i, k, b, j), dt, implicit)
                        phi[0, k, b, j] = h_new
                        if use_g:
                            us[i + 1, k, b, j] = h_new + g[i + 1, k, b, j]
                        else:
                            us[i + 1, k, b, j] = h_new
                        if store:
                            tgi = tg[i]
                            r_tab[tgi, k, b, j] = r
                            z_tab[tgi, k, b, j] = z
                            n_tab[tgi, k, b, j] = n
                            ghn_tab[tgi, k, b, j] = ghn
                arrivals += nblk
                grid_barrier(bar, arrivals)                  # layer k of step i complete everywhere

    def gru_vjp_scan(U, tu, lam, r_tab, z_tab, n_tab, ghn_tab, tg, W_hhT, W_ihT, dt, implicit,
                     g, use_g, f, use_f, dgx_tab, dgh_tab, td, store, dga, dan, dhd, carry, bar):
        """lam[i+1] = (∂Φ/∂u at U[tu[i]] with gates at row tg[i])ᵀ lam[i] (+ g[i+1]) (+ f[i+1]
        on the top layer), i = 0..n-1 (lam: (n+1, L, B, H), f: (n+1, 1, B, H)); the gate
        cotangents of step i stored at row td[i] if store. Layers last to first, as `gru_vjp`."""
        n1, L, B, H = lam.shape
        tid = cuda.threadIdx.x
        slot = tid // S
        sp = tid - slot * S
        nblk = cuda.gridDim.x
        gtid = cuda.blockIdx.x * NT + tid                    # grid-wide thread index (phase A)
        red = cuda.shared.array(SHARED, nb_t)
        items = B * H
        rounds = (items + nblk * NI - 1) // (nblk * NI)
        arrivals = 0
        for i in range(n1 - 1):
            ui = tu[i]
            ti = tg[i]
            for kk in range(L):
                k = L - 1 - kk
                # phase A: gate cotangents of layer k, one thread per (b, j), elementwise
                for e in range(gtid, items, nblk * NT):
                    b = e // H
                    j = e - b * H
                    d = ld4(lam, i, k, b, j)
                    if k < L - 1:
                        d += ld2(carry, b, j)                     # dgx_{k+1} W_ih_{k+1}: layer k fed layer k+1
                    r = r_tab[ti, k, b, j]
                    da_r, da_z, da_n, dh = cell_vjp(
                        d, r, z_tab[ti, k, b, j], n_tab[ti, k, b, j], ghn_tab[ti, k, b, j],
                        U[ui, k, b, j], dt, implicit)
                    dhd[b, j] = dh
                    dga[b, j] = da_r
                    dga[b, H + j] = da_z
                    dga[b, 2 * H + j] = da_n * r
                    dan[b, j] = da_n
                    if store:
                        store_dg(dgx_tab, dgh_tab, td[i], k, b, j, H, da_r, da_z, da_n, r)
                arrivals += nblk
                grid_barrier(bar, arrivals)                  # every gate cotangent of layer k staged
                # phase B: transposed matvecs, one item (b, j) per slot of S threads
                for rd in range(rounds):
                    item = (rd * nblk + cuda.blockIdx.x) * NI + slot
                    ok = item < items
                    j = item // B
                    b = item - j * B
                    a_r = ZERO
                    a_z = ZERO
                    a_n = ZERO
                    x_r = ZERO
                    x_z = ZERO
                    x_n = ZERO
                    if ok:
                        for m in range(sp, H, S):            # W_hhT[k, j, g*H + m] = W_hh[k, g*H + m, j]
                            a_r += ld2(dga, b, m) * W_hhT[k, j, m]
                            a_z += ld2(dga, b, H + m) * W_hhT[k, j, H + m]
                            a_n += ld2(dga, b, 2 * H + m) * W_hhT[k, j, 2 * H + m]
                            if k > 0:
                                x_r += ld2(dga, b, m) * W_ihT[k, j, m]
                                x_z += ld2(dga, b, H + m) * W_ihT[k, j, H + m]
                                x_n += ld2(dan, b, m) * W_ihT[k, j, 2 * H + m]
                    reduce6(red, tid, sp, a_r, a_z, a_n, x_r, x_z, x_n)
                    if ok and sp == 0:
                        v = ld2(dhd, b, j) + (red[tid] + red[NT + tid] + red[2 * NT + tid])
                        if use_g:
                            v = v + g[i + 1, k, b, j]
                        if use_f and k == L - 1:
                            v = v + f[i + 1, 0, b, j]
                        lam[i + 1, k, b, j] = v
                        if k > 0:
                            carry[b, j] = red[3 * NT + tid] + red[4 * NT + tid] + red[5 * NT + tid]
                arrivals += nblk
                grid_barrier(bar, arrivals)                  # layer k's λ and carry complete

    return {"gru_scan": (cuda.jit(gru_scan), gru_scan),
            "gru_vjp_scan": (cuda.jit(gru_vjp_scan), gru_vjp_scan)}


@lru_cache(maxsize=None)
def scan_kernels(dtype):
    """The two persistent kernels for one floating type (numba dispatchers; ``py_funcs`` holds
    the Python functions for `numba.cuda.compile_ptx`)."""
    dtype, nb_t = _nb_type(dtype)
    table = _make_scans(dtype, nb_t)
    ns = SimpleNamespace(**{name: k for name, (k, _) in table.items()})
    ns.py_funcs = {name: fn for name, (_, fn) in table.items()}
    ns.dtype = dtype
    return ns


def scan_signatures(dtype):
    """Argument types of both kernels for ``dtype`` (arrays of any layout)."""
    _, f = _nb_type(dtype)
    a2, a3, a4 = f[:, :], f[:, :, :], f[:, :, :, :]
    i1, bo, c1 = types.int64[:], types.boolean, types.int64[:]
    return {
        "gru_scan": types.void(a4, i1, a3, a3, a2, a3, a2, f, bo, a4, bo, a4,
                               a4, a4, a4, a4, i1, bo, c1),
        "gru_vjp_scan": types.void(a4, i1, a4, a4, a4, a4, a4, i1, a3, a3, f, bo,
                                   a4, bo, a4, bo, a4, a4, i1, bo, a2, a2, a2, a2, c1),
    }
