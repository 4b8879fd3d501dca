"""numba.cuda kernels besides the GRU step: the input projection, the parameter-gradient
reductions, the residual norms and axpby; and the thread-layout helpers every kernel module uses.

Same factory pattern as `mgrit_gru.cuda.kernels` (which collects these kernels with the step
kernels in `kernels`): each factory is specialised on the floating type, so a float32 kernel does
float32 arithmetic, and returns ``{name: (dispatcher, python function)}``.

- `project`: the input projection x W_ihᵀ + b of layer 0 for all time steps, TILE x TILE
  output tiles staged through shared memory (grid from `project_grid`).
- `outer_partial`, `colsum_partial`, `reduce_chunks`: the parameter gradients Σ_m Aᵀ ⊗ V and
  Σ_m A, reduced in fixed-size chunks and then in chunk order: no atomics, bit-for-bit
  reproducible.
- `diff_norms`, `norms`, `total`: the C-point residual and the squared 2-norm and max-norm per
  point and over time, as block tree reductions of RED threads in a fixed order.
- `axpby`: out = alpha a + beta b on (n, L, B, H) views (copies, differences, FAS corrections).
"""
from __future__ import annotations

import numpy as np
from numba import cuda, types

TILE = 16               # side of the square output tiles of the matmul kernels
RED = 256               # threads per block of the norm reductions (a power of two)

_NB = {np.dtype(np.float32): types.float32, np.dtype(np.float64): types.float64}


def project_grid(rows, cols):
    """Grid of `project` for an (rows, cols) output: row tiles on x (T B reaches 2^21 at
    T = 65536, B = 32: over gridDim.y's 65535 tiles), column tiles on y."""
    return (rows + TILE - 1) // TILE, (cols + TILE - 1) // TILE


def threads(K):
    """Threads per block of the per-point kernels (K elements a point): K rounded up to whole
    warps, at most RED."""
    return min(RED, 32 * ((K + 31) // 32))


@cuda.jit(device=True, inline="always")                      # IR-inlined: compile_ptx needs no device
def unit_of(e, B, H):
    """(k, b, j) of element e of one point's (L, B, H) state flattened in C order: the
    per-point kernels stride their threads over e, consecutive threads on consecutive j."""
    k = e // (B * H)
    rem = e - k * B * H
    b = rem // H
    return k, b, rem - b * H


def _nb_type(dtype):
    """(numpy dtype, numba type) of float32 or float64; a ValueError for any other."""
    dtype = np.dtype(dtype)
    if dtype not in _NB:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype, _NB[dtype]


# ----------------------------------------------------------------------------------------------
# matmuls: input projection and the deterministic parameter-gradient reduction
# ----------------------------------------------------------------------------------------------
def _make_matmuls(dtype, nb_t):
    ZERO = dtype.type(0.0)

    def project(x, W_T, bias, out):
        """out[t, b, :] = x[t, b, :] @ W_T + bias: (T, B, I) x (I, 3H) -> (T, B, 3H).

        Block = TILE x TILE threads owning a TILE x TILE tile of out (rows m = t*B + b, columns p;
        grid = `project_grid`: row tiles on blockIdx.x, whose limit is 2^31 - 1, not 65535);
        the matching tiles of x and W_T are staged in shared memory one TILE-wide slab of the
        reduction axis at a time, each element loaded once and used TILE times. Loads and the
        store are coalesced: threadIdx.x runs along the contiguous last axis.
        """
        T, B, I = x.shape
        P = W_T.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        m = cuda.blockIdx.x * TILE + ty                      # output row (t, b)
        p = cuda.blockIdx.y * TILE + tx                      # output column
        x_s = cuda.shared.array((TILE, TILE), nb_t)
        w_s = cuda.shared.array((TILE, TILE), nb_t)
        acc = ZERO
        for c0 in range(0, I, TILE):
            mt = min(m, T * B - 1)                           # out-of-range threads load a valid row
            ti = mt // B
            c = c0 + tx
            x_s[ty, tx] = x[ti, mt - ti * B, c] if c < I else ZERO
            cw = c0 + ty
            w_s[ty, tx] = W_T[cw, p] if (cw < I and p < P) else ZERO
            cuda.syncthreads()
            for cc in range(TILE):
                acc += x_s[ty, cc] * w_s[cc, tx]
            cuda.syncthreads()
        if m < T * B and p < P:
            ti = m // B
            out[ti, m - ti * B, p] = acc + bias[p]

    def outer_partial(A, V, partial):
        """partial[s] = Σ_{m in chunk s} A[m]ᵀ ⊗ V[m]: (T, B, P), (T, B, Q) -> (S, P, Q).

        The reduction axis m = t*B + b (M = T*B rows) is cut into S equal chunks (blockIdx.z), each
        reduced by one block in a fixed order; `reduce_chunks` then sums the S partials in order.
        No atomics: the result is bit-for-bit reproducible. Thread (ty, tx) owns partial[s, p, q]
        with p along ty and q along tx, so the store and the V loads are coalesced.
        """
        T, B, P = A.shape
        Q = V.shape[2]
        S = partial.shape[0]
        M = T * B
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        s = cuda.blockIdx.z
        p0 = cuda.blockIdx.y * TILE
        q0 = cuda.blockIdx.x * TILE
        chunk = (M + S - 1) // S
        m_lo = s * chunk
        m_hi = min(M, m_lo + chunk)
        a_s = cuda.shared.array((TILE, TILE), nb_t)          # a_s[mm, pp] = A[m0 + mm, p0 + pp]
        v_s = cuda.shared.array((TILE, TILE), nb_t)          # v_s[mm, qq] = V[m0 + mm, q0 + qq]
        acc = ZERO
        for m0 in range(m_lo, m_hi, TILE):
            m = m0 + ty                                      # this thread loads row m of the slab
            ok = m < m_hi
            ti = min(m, M - 1) // B
            bi = min(m, M - 1) - ti * B
            a_s[ty, tx] = A[ti, bi, p0 + tx] if (ok and p0 + tx < P) else ZERO
            v_s[ty, tx] = V[ti, bi, q0 + tx] if (ok and q0 + tx < Q) else ZERO
            cuda.syncthreads()
            for mm in range(TILE):
                acc += a_s[mm, ty] * v_s[mm, tx]
            cuda.syncthreads()
        if p0 + ty < P and q0 + tx < Q:
            partial[s, p0 + ty, q0 + tx] = acc

    def colsum_partial(A, partial):
        """partial[s, p] = Σ_{m in chunk s} A[m, p]: (T, B, P) -> (S, P); one thread per (s, p).

        Threads run along p, the contiguous axis: each step of the loop is one coalesced row read.
        """
        T, B, P = A.shape
        S = partial.shape[0]
        M = T * B
        p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        s = cuda.blockIdx.y
        if p < P:
            chunk = (M + S - 1) // S
            acc = ZERO
            for m in range(s * chunk, min(M, s * chunk + chunk)):
                ti = m // B
                acc += A[ti, m - ti * B, p]
            partial[s, p] = acc

    def reduce_chunks(partial, out, accumulate):
        """out[e] (+)= Σ_s partial[s, e] in the order s = 0, 1, ..: (S, K) -> (K,); one thread per e."""
        S, K = partial.shape
        e = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if e < K:
            acc = out[e] if accumulate else ZERO
            for s in range(S):
                acc += partial[s, e]
            out[e] = acc

    return {name: (cuda.jit(f), f) for name, f in
            (("project", project), ("outer_partial", outer_partial),
             ("colsum_partial", colsum_partial), ("reduce_chunks", reduce_chunks))}


# ----------------------------------------------------------------------------------------------
# residual and per-point norms (deterministic block reductions)
# ----------------------------------------------------------------------------------------------
def _make_norms(dtype, nb_t):
    ZERO = dtype.type(0.0)

    @cuda.jit(device=True, inline="always")   # IR-inlined: compile_ptx then needs no device
    def nanmax(a, b):
        """max(a, b) that propagates NaN (fmax and Python's max drop it: a NaN residual must not
        look converged)."""
        return b if (b > a or b != b) else a

    @cuda.jit(device=True, inline="always")
    def block_reduce(sq_s, mx_s, acc, big):
        """Each thread's partial sum ``acc`` and maximum ``big`` -> their totals in sq_s[0],
        mx_s[0]: a tree reduction over the block's RED threads in shared memory, fixed order."""
        tid = cuda.threadIdx.x
        sq_s[tid] = acc
        mx_s[tid] = big
        cuda.syncthreads()
        w = RED // 2
        while w > 0:
            if tid < w:
                sq_s[tid] += sq_s[tid + w]
                mx_s[tid] = nanmax(mx_s[tid], mx_s[tid + w])
            cuda.syncthreads()
            w //= 2

    def diff_norms(a, b, out, sq, mx):
        """out[i] = a[i] - b[i]; sq[i] = ‖out[i]‖², mx[i] = max |out[i]|, over the (L, B, H) of point i.

        One block of RED threads per point i; thread tid strides over the L*B*H elements with
        consecutive threads on consecutive j (coalesced), keeps its own partial sum and maximum in
        a fixed order, then the block tree-reduces them: reproducible, no atomics.
        """
        n_pt, L, B, H = a.shape
        i = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        sq_s = cuda.shared.array(RED, nb_t)
        mx_s = cuda.shared.array(RED, nb_t)
        acc = ZERO
        big = ZERO
        for e in range(tid, L * B * H, RED):
            k, bb, j = unit_of(e, B, H)
            d = a[i, k, bb, j] - b[i, k, bb, j]
            out[i, k, bb, j] = d
            acc += d * d
            big = nanmax(big, abs(d))
        block_reduce(sq_s, mx_s, acc, big)
        if tid == 0:
            sq[i] = sq_s[0]
            mx[i] = mx_s[0]

    def norms(v, sq, mx):
        """sq[i] = ‖v[i]‖², mx[i] = max |v[i]| over the (L, B, H) of point i (layout as diff_norms)."""
        n_pt, L, B, H = v.shape
        i = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        sq_s = cuda.shared.array(RED, nb_t)
        mx_s = cuda.shared.array(RED, nb_t)
        acc = ZERO
        big = ZERO
        for e in range(tid, L * B * H, RED):
            k, bb, j = unit_of(e, B, H)
            d = v[i, k, bb, j]
            acc += d * d
            big = nanmax(big, abs(d))
        block_reduce(sq_s, mx_s, acc, big)
        if tid == 0:
            sq[i] = sq_s[0]
            mx[i] = mx_s[0]

    def total(sq, mx, out):
        """out[0] = Σ_i sq[i], out[1] = max_i mx[i]: the time norm from per-point norms, one block."""
        tid = cuda.threadIdx.x
        sq_s = cuda.shared.array(RED, nb_t)
        mx_s = cuda.shared.array(RED, nb_t)
        acc = ZERO
        big = ZERO
        for i in range(tid, sq.shape[0], RED):
            acc += sq[i]
            big = nanmax(big, mx[i])
        block_reduce(sq_s, mx_s, acc, big)
        if tid == 0:
            out[0] = sq_s[0]
            out[1] = mx_s[0]

    def axpby(alpha, a, beta, b, out):
        """out = alpha a + beta b on (n, L, B, H) views: copies (alpha = 1, beta = 0, b = a),
        differences, FAS corrections. One block per point i, threads along the contiguous j."""
        n_pt, L, B, H = out.shape
        i = cuda.blockIdx.x
        for e in range(cuda.threadIdx.x, L * B * H, cuda.blockDim.x):
            k, bb, j = unit_of(e, B, H)
            out[i, k, bb, j] = alpha * a[i, k, bb, j] + beta * b[i, k, bb, j]

    return {name: (cuda.jit(f), f) for name, f in
            (("diff_norms", diff_norms), ("norms", norms), ("total", total), ("axpby", axpby))}

