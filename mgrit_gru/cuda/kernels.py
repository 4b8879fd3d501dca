"""numba.cuda kernels for GRU time stepping on one GPU (float32 and float64).

Every kernel is built by a factory specialised at compile time on the floating type (so that
constants, shared and local arrays are float32 in a float32 kernel: a bare ``0.5`` literal would
promote float32 arithmetic to float64) and, for the two step kernels, on the row-tile size ``BT``.
`kernels(dtype, BT)` returns them as a namespace; `signatures(dtype)` gives the explicit argument
types used to compile each one to PTX (tests/cuda/test_cuda_kernels.py compiles them all for sm_90).

Shapes (all arrays may be strided views, e.g. every cf-th point of a per-level array; layout 'A'):

    u, out, g       (n, L, B, H)    states at n intervals, L layers, B sequences, H hidden units
    t, tg, td       (n,) int64      per interval: row of the input-projection table / of the gate
                                    tables / of the dgx, dgh tables
    gx              (T, B, 3H)      layer 0's input projection W_ih_l0 x_t + b_ih_l0 (gate order r,z,n)
    r_tab .. ghn_tab (T, L, B, H)   gate values stored by the forward step for the backward step
    dgx_tab, dgh_tab (T, L, B, 3H)  cotangents on the input and hidden projections
    W_hhT, W_ihT    (L, H, 3H)      *transposed* weights for the forward matvecs (coalesced, below)
    W_hh, W_ih      (L, 3H, H)      nn.GRU layout for the transposed matvecs of the VJP
    b_hh, b_ih      (L, 3H)

The step kernels (forward and VJP): one thread per hidden unit j (blockDim.x = H <= 1024), one
thread block per tile of BT *rows*, a row being one (interval i, sequence b) pair, row = i*B + b.
Tiling rows rather than sequences lets a block reuse every weight it reads for BT state vectors,
for B = 1 (BT intervals per block) and B = 32 alike: the weights (3H x H, 768 KiB for float32 at
H = 256) are the dominant memory traffic, read once per block from L2 and used BT times from
registers. The matvec W_hh h needs every h[c] in every thread, so the tile's states are staged in
shared memory (BT x H); all threads read the same h[c] at once (a broadcast, no bank conflict) and
thread j reads weight W_hhT[k, c, j]: consecutive threads read consecutive addresses (coalesced).
The VJP's transposed matvec dh[j] = Σ_m dgh[m] W_hh[m, j] reads the nn.GRU layout W_hh[k, m, j],
coalesced for the same reason, with the gate cotangents staged in shared memory. Local arrays are
indexed by loops over the compile-time BT only, so they live in registers (no .local in the PTX).

`gru_step` and `gru_vjp` also run m steps per interval in one launch (a block keeps its rows and
reads back what it wrote one step earlier): a whole F-relaxation, every interval's cf - 1
F-points.

Launches per MGRIT operation (every interval of a level at once; the CUDA backend runs on one
rank): F-relaxation = 1 `gru_step` or `gru_vjp`, C-relaxation = 1, C-point residual = 1 step + 1 `diff_norms` (+ 1
`total` for the time norm). The adjoint's VJP also adds the output forcing dy; on coarse levels
one batched `gru_step` first recomputes the gates of all the launch's steps. Gradients: the gate
cotangents stored by the adjoint's last fine sweep, then 2 launches per `outer_partial` /
`colsum_partial` sum.

The step kernels and the cell math are built here; the matmul and norm kernels, and the
thread-layout helpers (`project_grid`, `threads`, `unit_of`), in `mgrit_gru.cuda.linalg_kernels`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
from numba import cuda, types
from numba.cuda import config

from .linalg_kernels import (RED, TILE, _make_matmuls, _make_norms, _nb_type, project_grid,
                             threads, unit_of)

__all__ = ["MAX_H", "RED", "TILE", "cell_math", "kernels", "project_grid", "signatures",
           "threads", "unit_of"]

MAX_H = 1024            # one thread per hidden unit: H is at most the block size limit


# ----------------------------------------------------------------------------------------------
# one hidden unit's cell update and its VJP, side by side (shared by the step and scan kernels)
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def cell_math(dtype):
    """Device functions for one unit, in ``dtype`` arithmetic (IR-inlined: compile_ptx then
    needs no device). The math is `mgrit_gru.gru.cell_update` and its VJP:

        r = σ(a_r), z = σ(a_z), n = tanh(gx_n + r ghn), s = dt (1 - z)
        classic  h⁺ = h + s (n - h)             implicit  h⁺ = (h + s n) / (1 + s)
    """
    dtype = np.dtype(dtype)
    HALF, ONE = dtype.type(0.5), dtype.type(1.0)

    @cuda.jit(device=True, inline="always")
    def sigmoid(a):
        return HALF * math.tanh(HALF * a) + HALF             # σ(a) without overflow, as gru.sigmoid

    @cuda.jit(device=True, inline="always")
    def cell(gx_r, gx_z, gx_n, gh_r, gh_z, ghn, h, dt, implicit):
        """(r, z, n, h⁺) from the input and hidden projections of one unit."""
        r = sigmoid(gx_r + gh_r)
        z = sigmoid(gx_z + gh_z)
        n = math.tanh(gx_n + r * ghn)
        s = dt * (ONE - z)                                   # the step's weight dt (1 - z)
        if implicit:
            h_new = (s * n + h) / (ONE + s)                  # (h + s n) / (1 + s)
        else:
            h_new = (n - h) * s + h                          # h + s (n - h)
        return r, z, n, h_new

    @cuda.jit(device=True, inline="always")
    def cell_vjp(d, r, z, n, ghn, h, dt, implicit):
        """d = ∂L/∂h⁺ -> (da_r, da_z, da_n, ∂L/∂h|direct), a_· the gates' pre-activations.

        classic:  ∂h⁺/∂n = s, ∂h⁺/∂z = -dt (n - h), ∂h⁺/∂h|direct = 1 - s
        implicit: ∂h⁺/∂n = s/(1+s), ∂h⁺/∂z = -dt (n - h⁺)/(1+s), ∂h⁺/∂h|direct = 1/(1+s)
        then da_n = dn (1 - n²), da_r = da_n ghn r (1 - r), da_z = dz z (1 - z).
        """
        s = dt * (ONE - z)
        if implicit:
            inv = ONE / (ONE + s)
            h_new = (s * n + h) / (ONE + s)                  # the forward's h⁺, recomputed
            dn = d * s * inv
            dz = -dt * d * (n - h_new) * inv
            dh = d * inv
        else:
            dn = d * s
            dz = -dt * d * (n - h)
            dh = d * (ONE - s)
        da_n = dn * (ONE - n * n)
        return da_n * ghn * r * (ONE - r), dz * z * (ONE - z), da_n, dh

    @cuda.jit(device=True, inline="always")
    def store_dg(dgx_tab, dgh_tab, row, k, b, j, H, da_r, da_z, da_n, r):
        """Unit j's gate cotangents at ``row`` of the tables `param_grads` sums:
        dgx = (da_r, da_z, da_n) on the input projection, dgh = (da_r, da_z, da_n r)."""
        dgx_tab[row, k, b, j] = da_r
        dgx_tab[row, k, b, H + j] = da_z
        dgx_tab[row, k, b, 2 * H + j] = da_n
        dgh_tab[row, k, b, j] = da_r
        dgh_tab[row, k, b, H + j] = da_z
        dgh_tab[row, k, b, 2 * H + j] = da_n * r

    return SimpleNamespace(sigmoid=sigmoid, cell=cell, cell_vjp=cell_vjp, store_dg=store_dg)


# ----------------------------------------------------------------------------------------------
# the stacked GRU step Φ for a batch of states at a batch of time indices
# ----------------------------------------------------------------------------------------------
def _make_step(dtype, nb_t, BT, jit_kw):
    ZERO = dtype.type(0.0)
    BT3 = 3 * BT
    cell = cell_math(dtype).cell

    def gru_step(u, t, gx, W_hhT, b_hh, W_ihT, b_ih, dt, implicit, g, use_g, out,
                 r_tab, z_tab, n_tab, ghn_tab, tg, store, m, ostride, tstep):
        """m steps from each u[i], interval i's k-th into out[i*ostride + k] (+ g[same row]).

        Step k of interval i: Φ(u[i] if k == 0 else out[i*ostride + k - 1]; gx[t[i] + k*tstep],
        dt); its gates stored at row tg[i] + k if store. Rows i*ostride + k >= out.shape[0] (a
        short last interval) are not computed. m = 1, ostride = 1: one batched step,
        out[i] = Φ(u[i]) (+ g[i]); m = cf - 1, ostride = cf, out = the F-points of a level from
        the first one on: a whole F-relaxation in one launch.

        Safe in place (out is u, m = 1): a block reads u[i, k] into shared memory before anyone
        writes out[i, k], and no two blocks touch the same (i, b). Step k reads what the same
        block wrote at step k - 1 (visible after its syncthreads).
        """
        n_int, L, B, H = u.shape
        rows = n_int * B
        o_rows = out.shape[0]
        row0 = cuda.blockIdx.x * BT                          # first (interval, sequence) row of the tile
        j = cuda.threadIdx.x                                 # hidden unit of this thread
        active = j < H
        sh = cuda.shared.array(0, nb_t)                      # dynamic: 2 * BT * H elements
        h_s = sh[0:BT * H]                                   # old states of layer k, row q at q*H
        x_s = sh[BT * H:2 * BT * H]                          # layer k's input = layer k-1's new state
        acc_h = cuda.local.array(BT3, nb_t)                  # W_h{r,z,n} h per row (registers: BT constant)
        acc_x = cuda.local.array(BT3, nb_t)                  # W_i{r,z,n} x per row (layers k > 0)
        for sub in range(m):                                 # the interval's steps, in order
            for k in range(L):
                if active:
                    for q in range(BT):
                        row = min(row0 + q, rows - 1)        # a partial last tile repeats its last row
                        i = row // B
                        b = row - i * B
                        if sub == 0:
                            h_s[q * H + j] = u[i, k, b, j]   # coalesced: j is the contiguous axis
                        else:                                # (clamped: a short interval's rows
                            o = min(i * ostride + sub - 1, o_rows - 1)   # are computed, not written)
                            h_s[q * H + j] = out[o, k, b, j]
                cuda.syncthreads()                           # h_s (and x_s from layer k-1) complete
                if active:
                    for q in range(BT3):
                        acc_h[q] = ZERO
                        acc_x[q] = ZERO
                    for c in range(H):
                        w_r = W_hhT[k, c, j]                 # coalesced: consecutive j, consecutive address
                        w_z = W_hhT[k, c, H + j]
                        w_n = W_hhT[k, c, 2 * H + j]
                        for q in range(BT):                  # each weight reused for BT rows
                            h_c = h_s[q * H + c]             # broadcast read of shared memory
                            acc_h[3 * q] += w_r * h_c
                            acc_h[3 * q + 1] += w_z * h_c
                            acc_h[3 * q + 2] += w_n * h_c
                    if k > 0:
                        for c in range(H):
                            w_r = W_ihT[k, c, j]
                            w_z = W_ihT[k, c, H + j]
                            w_n = W_ihT[k, c, 2 * H + j]
                            for q in range(BT):
                                x_c = x_s[q * H + c]
                                acc_x[3 * q] += w_r * x_c
                                acc_x[3 * q + 1] += w_z * x_c
                                acc_x[3 * q + 2] += w_n * x_c
                cuda.syncthreads()                           # everyone done reading h_s, x_s
                if active:
                    for q in range(BT):
                        row = min(row0 + q, rows - 1)
                        i = row // B
                        b = row - i * B
                        o = i * ostride + sub                # output row of this step
                        gh_r = acc_h[3 * q] + b_hh[k, j]
                        gh_z = acc_h[3 * q + 1] + b_hh[k, H + j]
                        ghn = acc_h[3 * q + 2] + b_hh[k, 2 * H + j]
                        if k == 0:
                            ti = min(t[i] + sub * tstep, gx.shape[0] - 1)   # (clamped as o)
                            gx_r = gx[ti, b, j]              # precomputed W_ih_l0 x_t + b_ih_l0
                            gx_z = gx[ti, b, H + j]
                            gx_n = gx[ti, b, 2 * H + j]
                        else:
                            gx_r = acc_x[3 * q] + b_ih[k, j]
                            gx_z = acc_x[3 * q + 1] + b_ih[k, H + j]
                            gx_n = acc_x[3 * q + 2] + b_ih[k, 2 * H + j]
                        r, z, n, h_new = cell(gx_r, gx_z, gx_n, gh_r, gh_z, ghn, h_s[q * H + j],
                                              dt, implicit)
                        x_s[q * H + j] = h_new               # next layer's input (Φ's own value, no g)
                        if row0 + q < rows and o < o_rows:   # repeated rows, short intervals: no write
                            if use_g:
                                out[o, k, b, j] = h_new + g[o, k, b, j]
                            else:
                                out[o, k, b, j] = h_new
                            if store:
                                tgi = tg[i] + sub
                                r_tab[tgi, k, b, j] = r
                                z_tab[tgi, k, b, j] = z
                                n_tab[tgi, k, b, j] = n
                                ghn_tab[tgi, k, b, j] = ghn
            cuda.syncthreads()                               # step sub's outputs written (block-wide)
    return cuda.jit(gru_step, **jit_kw), gru_step


def _make_vjp(dtype, nb_t, BT, jit_kw):
    ZERO = dtype.type(0.0)
    cell_vjp, store_dg = cell_math(dtype).cell_vjp, cell_math(dtype).store_dg

    def gru_vjp(u, lam, r_tab, z_tab, n_tab, ghn_tab, tg, W_hh, W_ih, dt, implicit, g, use_g,
                f, use_f, out, dgx_tab, dgh_tab, td, store, nsub, ostride):
        """nsub adjoint steps from each lam[i], the k-th into out[o], o = i*ostride + k:
        out[o] = (∂Φ/∂u at u[o], gates at row tg[o])ᵀ λ (+ f[o] on the top layer) (+ g[o]),
        λ = lam[i] for k = 0, out[o - 1] after; dgx, dgh stored at td[o]. Rows o >= out.shape[0]
        (a short last interval) are not written. nsub = ostride = 1: one batched VJP,
        out[i] from lam[i]; nsub = cf - 1, ostride = cf: a whole adjoint F-relaxation. f is the
        adjoint's output forcing dy (n, 1, B, H) (so a step needs no second launch to add it).

        Layers run last to first; layer k's cotangent gets the carry dgx_{k+1} W_ih_{k+1} from the
        layer above (its input was layer k's new state). Thread j owns hidden unit j of the
        cotangents: λ, the carry and dh|direct; the gate cotangents (3H per row) are staged in
        shared memory because the transposed matvec dh[j] = Σ_m dgh[m] W_hh[m, j] needs them all.
        Safe in place (out is lam, nsub = 1): thread j reads lam[i, k, b, j] before it writes
        out[i, k, b, j]; step k > 0 reads what the same thread wrote at step k - 1.
        """
        n_int, L, B, H = lam.shape
        rows = n_int * B
        o_rows = out.shape[0]
        row0 = cuda.blockIdx.x * BT
        j = cuda.threadIdx.x
        active = j < H
        sh = cuda.shared.array(0, nb_t)                      # dynamic: 4 * BT * H elements
        dgh_s = sh[0:3 * BT * H]                             # (da_r, da_z, da_n r) of row q at q*3H
        dan_s = sh[3 * BT * H:4 * BT * H]                    # da_n (dgx = (da_r, da_z, da_n))
        carry = cuda.local.array(BT, nb_t)                   # dgx_{k+1} W_ih_{k+1}, unit j, per row
        dh_dir = cuda.local.array(BT, nb_t)                  # ∂h⁺/∂h|direct ⊙ d, unit j, per row
        for sub in range(nsub):                              # the interval's steps, in order
            for q in range(BT):
                carry[q] = ZERO
            for kk in range(L):
                k = L - 1 - kk
                if active:
                    for q in range(BT):
                        row = min(row0 + q, rows - 1)
                        i = row // B
                        b = row - i * B
                        o = min(i * ostride + sub, o_rows - 1)   # clamped: a short interval's
                        ti = tg[o]                               # rows are computed, not written
                        if sub == 0:
                            d = lam[i, k, b, j] + carry[q]
                        else:
                            d = out[o - 1, k, b, j] + carry[q]
                        r = r_tab[ti, k, b, j]
                        da_r, da_z, da_n, dh = cell_vjp(
                            d, r, z_tab[ti, k, b, j], n_tab[ti, k, b, j], ghn_tab[ti, k, b, j],
                            u[o, k, b, j], dt, implicit)
                        dh_dir[q] = dh
                        dgh_s[q * 3 * H + j] = da_r
                        dgh_s[q * 3 * H + H + j] = da_z
                        dgh_s[q * 3 * H + 2 * H + j] = da_n * r
                        dan_s[q * H + j] = da_n
                        if store and row0 + q < rows and i * ostride + sub < o_rows:
                            store_dg(dgx_tab, dgh_tab, td[o], k, b, j, H, da_r, da_z, da_n, r)
                cuda.syncthreads()                           # all gate cotangents staged
                if active:
                    for m in range(H):
                        w_r = W_hh[k, m, j]                  # coalesced: row m, consecutive columns j
                        w_z = W_hh[k, H + m, j]
                        w_n = W_hh[k, 2 * H + m, j]
                        for q in range(BT):                  # broadcast reads of shared memory
                            dh_dir[q] += (dgh_s[q * 3 * H + m] * w_r + dgh_s[q * 3 * H + H + m] * w_z
                                          + dgh_s[q * 3 * H + 2 * H + m] * w_n)
                    for q in range(BT):
                        row = row0 + q
                        if row < rows:
                            i = row // B
                            b = row - i * B
                            o = i * ostride + sub
                            if o < o_rows:
                                v = dh_dir[q]
                                if use_f and k == L - 1:     # (vjp + f) + g: NumPy's order
                                    v += f[o, 0, b, j]
                                if use_g:
                                    v += g[o, k, b, j]
                                out[o, k, b, j] = v
                    if k > 0:
                        for q in range(BT):
                            carry[q] = ZERO
                        for m in range(H):
                            w_r = W_ih[k, m, j]
                            w_z = W_ih[k, H + m, j]
                            w_n = W_ih[k, 2 * H + m, j]
                            for q in range(BT):
                                carry[q] += (dgh_s[q * 3 * H + m] * w_r
                                             + dgh_s[q * 3 * H + H + m] * w_z
                                             + dan_s[q * H + m] * w_n)
                cuda.syncthreads()                           # done with dgh_s before layer k-1 rewrites it
    return cuda.jit(gru_vjp, **jit_kw), gru_vjp



# ----------------------------------------------------------------------------------------------
# factories and the signatures for ahead-of-time (PTX) compilation
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def kernels(dtype, BT=1, threads=None):
    """All kernels for one floating type and step row tile BT; attributes are numba dispatchers,
    ``py_funcs`` holds the undecorated Python functions (for `numba.cuda.compile_ptx`).

    ``threads``: the block size the step kernels will be launched with (H). They are then
    compiled with ``launch_bounds=(threads,)``: ptxas keeps registers x threads within one
    multiprocessor's 64 K registers. Unbounded, they take 110-230 registers a thread, and a block
    of more than ~320 threads could not launch (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES); at H = 256
    the bound allows 255, so nothing changes there. (The simulator takes no launch bounds.)
    """
    dtype, nb_t = _nb_type(dtype)
    if not (isinstance(BT, int) and BT >= 1):
        raise ValueError(f"BT must be a positive int, got {BT!r}")
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= MAX_H):
        raise ValueError(f"threads must be an int in 1..{MAX_H}, got {threads!r}")
    jit_kw = {} if threads is None or config.ENABLE_CUDASIM else {"launch_bounds": (threads,)}
    table = {"gru_step": _make_step(dtype, nb_t, BT, jit_kw),
             "gru_vjp": _make_vjp(dtype, nb_t, BT, jit_kw)}
    table.update(_make_matmuls(dtype, nb_t))
    table.update(_make_norms(dtype, nb_t))
    ns = SimpleNamespace(**{name: k for name, (k, _) in table.items()})
    ns.py_funcs = {name: f for name, (_, f) in table.items()}
    ns.dtype, ns.BT, ns.threads = dtype, BT, threads
    return ns


def signatures(dtype):
    """Argument types of every kernel for ``dtype`` (arrays of any layout), keyed by kernel name."""
    _, f = _nb_type(dtype)
    a1, a2, a3, a4 = f[:], f[:, :], f[:, :, :], f[:, :, :, :]
    i1 = types.int64[:]
    bo = types.boolean
    return {
        "gru_step": types.void(a4, i1, a3, a3, a2, a3, a2, f, bo, a4, bo, a4,
                               a4, a4, a4, a4, i1, bo, types.int64, types.int64, types.int64),
        "gru_vjp": types.void(a4, a4, a4, a4, a4, a4, i1, a3, a3, f, bo, a4, bo, a4, bo,
                              a4, a4, a4, i1, bo, types.int64, types.int64),
        "project": types.void(a3, a2, a1, a3),
        "outer_partial": types.void(a3, a3, a3),
        "colsum_partial": types.void(a3, a2),
        "reduce_chunks": types.void(a2, a1, bo),
        "diff_norms": types.void(a4, a4, a4, a1, a1),
        "norms": types.void(a4, a1, a1),
        "total": types.void(a1, a1, a1),
        "axpby": types.void(f, a4, f, a4, a4),
    }
