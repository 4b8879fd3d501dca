"""Host side of the CUDA kernels: device copies of the weights and launches on device arrays.

Every method takes and returns numba device arrays; nothing is copied to or from the host except
by `to_device` / `to_host`. The solver keeps states, gate tables and cotangents on the device for
the whole solve.
"""
from __future__ import annotations

import contextlib

import numpy as np
from numba import cuda

from ..checks import float_dtype
from ..checks import check_cell, gru_dims
from .kernels import MAX_H, RED, TILE, kernels, project_grid, threads
from .scan_kernels import NI, NT, scan_kernels

GATES = ("r", "z", "n", "ghn")
SHARED_BYTES = 48 * 1024          # dynamic shared memory available without an opt-in


def cuda_available():
    """True when a real CUDA GPU is usable (False under the simulator, NUMBA_ENABLE_CUDASIM=1)."""
    from numba.cuda import config
    if config.ENABLE_CUDASIM:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:                                        # no driver, no device
        return False


def require_gpu():
    """ValueError unless a GPU is usable (or the simulator is on): a message, not a driver
    traceback, where ``backend="cuda"`` is asked for on a machine without one."""
    from numba.cuda import config
    if not (config.ENABLE_CUDASIM or cuda_available()):
        raise ValueError("backend='cuda' needs a CUDA GPU, and none is usable here (no "
                         "driver/device). To run the kernels in numba's CPU simulator (slow: "
                         "seconds a step) set NUMBA_ENABLE_CUDASIM=1 before numba is imported.")


def flush_pending_frees():
    """Free the device memory numba has queued for release (it frees in batches of 10 arrays,
    NUMBA_CUDA_MAX_PENDING_DEALLOCS_COUNT). Does nothing under the simulator, which queues
    nothing. A free synchronises the device: call it between pieces of work, not inside them."""
    ctx = cuda.current_context()
    for owner in (ctx, getattr(ctx, "memory_manager", None)):  # streams/events; device memory
        pending = getattr(owner, "deallocations", None)
        if pending is not None:
            pending.clear()


@contextlib.contextmanager
def solve_scope():
    """Around one MGRIT solve on the device: no device frees until it ends.

    A free synchronises the device and would stall the host's stream of launches (say behind a
    coarsest-level scan) in the middle of the solve; the solve's scratch is small, and it is
    freed afterwards. Two things numba's `cuda.defer_cleanup` alone gets wrong here:

    - arrays released *before* the solve (the last training step's caches) would stay queued,
      and allocated, through the whole solve: they are freed on entry, where a sync costs
      nothing;
    - numba answers an out-of-memory error by freeing its queue and retrying, which
      defer_cleanup forbids: the error surfaces as a driver error. It becomes a MemoryError
      that says what to make smaller.
    """
    from numba.cuda.cudadrv.driver import CudaAPIError
    flush_pending_frees()
    try:
        with cuda.defer_cleanup():
            yield
    except CudaAPIError as e:
        if not _is_out_of_memory(e):
            raise
        free, total = cuda.current_context().get_memory_info()
        raise MemoryError(
            f"the GPU ran out of memory during the MGRIT solve ({free / 2**30:.2f} of "
            f"{total / 2**30:.2f} GiB free after it): use a smaller batch or sequence, float32, "
            "or fewer levels (the solve keeps every level's states and the fine level's gates "
            "on the device)") from e


def _is_out_of_memory(error):
    """True for numba's CudaAPIError carrying CUDA_ERROR_OUT_OF_MEMORY (2), whichever binding
    (numba's ctypes one: an int; NVIDIA's cuda-python: a CUresult enum) raised it."""
    code = getattr(error, "code", None)
    return getattr(code, "value", code) == 2


def as_device(a):
    """``a`` as a numba device array if it lives on a GPU, else None (a host array).

    A numba device array is returned as it is; any other object with
    ``__cuda_array_interface__`` (a CuPy array, a PyTorch CUDA tensor) is wrapped without a
    copy (`numba.cuda.as_cuda_array`).
    """
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    return None


def small_to_host(a):
    """A small input (h0, dh_T: L*B*H numbers) given on the GPU, copied to the host; anything
    else as it is."""
    d = as_device(a)
    return a if d is None else d.copy_to_host()


def check_device(a, name, shape, dtype, contiguous=False):
    """ValueError unless the device array ``a`` has ``shape`` (None: any size >= 1 there),
    exactly ``dtype`` (nothing is converted on the device behind the caller's back) and, if
    asked, C-contiguous layout. Its values are not checked for NaN (that would be a reduction
    on the device): a NaN shows as a NaN residual, which the solver reports."""
    if a.ndim != len(shape):
        raise ValueError(f"{name} must be a {len(shape)}-d device array, got shape {a.shape}")
    if any(n < 1 or (want is not None and n != want) for n, want in zip(a.shape, shape)):
        want = ", ".join("*" if w is None else str(w) for w in shape)
        raise ValueError(f"{name} must have shape ({want}) (sizes >= 1), got {a.shape}")
    if np.dtype(a.dtype) != np.dtype(dtype):
        raise ValueError(f"{name} is a {np.dtype(a.dtype)} device array but the parameters are "
                         f"{np.dtype(dtype)}: convert it on the device first")
    if any(s < 0 for s in a.strides):                       # numba's slicing of these computes
        raise ValueError(f"{name} on the device has a negative stride (e.g. x[::-1]): make it "
                         "contiguous first")                 # a wrong data pointer
    if contiguous and not a.is_c_contiguous():
        raise ValueError(f"{name} on the device must be C-contiguous (e.g. .contiguous() in "
                         "PyTorch, cupy.ascontiguousarray)")
    return a


def view(a, item):
    """``a[item]`` for a numba device array, without numba's cost for strided views.

    numba's ``DeviceNDArray.__getitem__`` lists every contiguous extent of a non-contiguous
    result only to find that there is more than one: for a (4096, L, B, H) view taking every
    cf-th point that is 4096 L B Python-level index computations (the H200 profile of one MGRIT
    solve spent most of its host time there). This builds the same array numba builds in that
    case: the same dummy-array shape and strides over the memory range spanned by the view.
    Contiguous results, element indexing and the simulator go through ``a[item]`` unchanged.
    """
    dummy = getattr(a, "_dummy", None)
    if dummy is None:                                        # simulator arrays, host arrays
        return a[item]
    d = dummy[item]
    if not d.is_array or d.is_c_contig or d.is_f_contig:
        return a[item]                                       # numba's fast path
    if any(s < 0 for s in d.strides):
        raise ValueError("negative-stride device views are not supported")
    return type(a)(shape=d.shape, strides=d.strides, dtype=a.dtype,
                   gpu_data=a.gpu_data.view(*d.extent), stream=a.stream)


def row_tile(H, itemsize, rows, max_bt=8):
    """Rows (interval, sequence pairs) per block of the step kernels: as many as the shared memory
    of the VJP (4 BT H elements) allows, at most max_bt, at most the number of rows."""
    bt = max(1, min(max_bt, SHARED_BYTES // (4 * H * itemsize)))
    return max(1, min(bt, rows))


class CudaGRU:
    """A stacked GRU's time step Φ and its VJP, batched over intervals, on one GPU.

    Parameters
    ----------
    params : dict
        nn.GRU-named parameters (`mgrit_gru.gru.init_gru`).
    cell : {"classic", "implicit"}
        The fine-grid cell; coarse steps always use the implicit cell.
    dtype : float32 or float64, optional
        Device precision; the parameters' dtype by default.
    bt : int, optional
        Rows per block of the step kernels (default: `row_tile`).
    """

    def __init__(self, params, cell="classic", dtype=None, bt=None):
        require_gpu()                                        # every backend="cuda" path starts here
        L, I, H, pdtype = gru_dims(params)
        self.cell, _ = check_cell(cell, 1.0)
        self.dtype = float_dtype(pdtype if dtype is None else dtype)
        if H > MAX_H:
            raise ValueError(f"hidden_size {H} > {MAX_H}: the step kernels use one thread per unit")
        self.L, self.I, self.H = L, I, H
        if bt is not None:                                   # the VJP stages 4 BT H elements
            if isinstance(bt, bool) or not isinstance(bt, (int, np.integer)) or bt < 1 \
                    or 4 * bt * H * self.dtype.itemsize > SHARED_BYTES:
                raise ValueError(f"bt must be an int >= 1 with 4 bt H itemsize <= {SHARED_BYTES} "
                                 f"bytes of shared memory (H = {H}, {self.dtype}), got {bt!r}")
            bt = int(bt)
        self.bt = bt
        f = self.dtype
        W_hh = np.stack([params[f"weight_hh_l{k}"] for k in range(L)]).astype(f)
        W_ih = np.zeros((L, 3 * H, H), f)                    # layer 0's slot unused (gx is precomputed)
        for k in range(1, L):
            W_ih[k] = params[f"weight_ih_l{k}"]
        self.W_hh = cuda.to_device(W_hh)                             # (L, 3H, H) for the VJP
        self.W_hhT = cuda.to_device(np.ascontiguousarray(W_hh.transpose(0, 2, 1)))  # (L, H, 3H)
        self.W_ih = cuda.to_device(W_ih)
        self.W_ihT = cuda.to_device(np.ascontiguousarray(W_ih.transpose(0, 2, 1)))
        self.b_hh = cuda.to_device(np.stack([params[f"bias_hh_l{k}"] for k in range(L)]).astype(f))
        self.b_ih = cuda.to_device(np.stack([params[f"bias_ih_l{k}"] for k in range(L)]).astype(f))
        self.W_ih0T = cuda.to_device(np.ascontiguousarray(params["weight_ih_l0"].T, dtype=f))
        self.b_ih0 = cuda.to_device(np.asarray(params["bias_ih_l0"], dtype=f))
        self._d4 = cuda.to_device(np.zeros((1, 1, 1, 1), f))    # stand-in for an unused array
        self._i1 = cuda.to_device(np.zeros(1, np.int64))
        self._scratch = {}

    # ------------------------------------------------------------------------------------------
    # transfers and allocation
    # ------------------------------------------------------------------------------------------
    def to_device(self, a, dtype=None):
        """Host array -> device array (in the backend's dtype unless ``dtype`` is given); an
        array already on the GPU (`as_device`) is used as it is, never converted there."""
        dtype = np.dtype(dtype or self.dtype)
        d = as_device(a)
        if d is None:
            return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))
        if np.dtype(d.dtype) != dtype:
            raise ValueError(f"a {np.dtype(d.dtype)} device array where {dtype} is needed")
        return d

    def private_copy(self, d):
        """A device copy of the C-contiguous device array ``d`` (device to device, no host):
        what a cache keeps of a caller's x, which the caller may refill before the backward
        pass (the host path copies x for the same reason, `mgrit_gru.gru.check_sequence`)."""
        out = cuda.device_array(d.shape, dtype=d.dtype)
        out.copy_to_device(d)
        return out

    def to_host(self, d):
        """Device array (any view) -> host array."""
        return d.copy_to_host()

    def empty(self, shape, dtype=None):
        return cuda.device_array(shape, dtype=dtype or self.dtype)

    def _k(self, rows=1):
        bt = self.bt or row_tile(self.H, self.dtype.itemsize, rows)
        return kernels(self.dtype, bt, self.H)               # launched with H threads a block

    def _check(self, name, a, ndim):
        if a.dtype != self.dtype or a.ndim != ndim:
            raise ValueError(f"{name} must be a {ndim}-d {self.dtype} device array, "
                             f"got {a.ndim}-d {a.dtype}")

    # ------------------------------------------------------------------------------------------
    # input projection
    # ------------------------------------------------------------------------------------------
    def project(self, x, out=None):
        """gx0 = x @ W_ih_l0ᵀ + b_ih_l0: (T, B, I) -> (T, B, 3H), one launch."""
        self._check("x", x, 3)
        T, B, _ = x.shape
        out = self.empty((T, B, 3 * self.H)) if out is None else out
        grid = project_grid(T * B, 3 * self.H)
        self._k().project[grid, (TILE, TILE)](x, self.W_ih0T, self.b_ih0, out)
        return out

    # ------------------------------------------------------------------------------------------
    # the step Φ and its VJP
    # ------------------------------------------------------------------------------------------
    def _cell(self, fine):
        return self.cell == "implicit" if fine else True

    def step(self, u, t, gx, dt, out, fine=True, g=None, gates=None, tg=None):
        """out[i] = Φ(u[i]) (+ g[i]) with input projection gx[t[i]], one launch.

        u, out, g : (n, L, B, H) device arrays (views allowed; out may be u itself).
        t : (n,) int64 device array, 0 <= t[i] < T (not checked: it lives on the device); pass
            views of one device arange (``t_all[s:s + n]``) so that stepping makes no transfer.
        gx : (T, B, 3H) (the projection, or a coarse table: the interval average of the
            projections is the projection of the averaged inputs, one `project` launch).
        dt : step size (1 on the fine grid, cf**level on a coarse one).
        fine : the fine cell (``self.cell``) if True, else the implicit cell.
        gates : dict r, z, n, ghn of (T, L, B, H) device arrays: this step's gate values are
            stored at rows tg[i] (tg defaults to t).
        """
        return self.sweep(u, t, gx, dt, out, 1, 1, 0, fine=fine, g=g, gates=gates, tg=tg)

    def sweep(self, u, t, gx, dt, out, m, ostride, tstep, fine=True, g=None, gates=None,
              tg=None):
        """m steps from every u[i] in ONE launch: the k-th into out[i*ostride + k] (+ g there).

        The F-relaxation of a level: u = the C-points (n, L, B, H), out = the level's rows from
        the first F-point on (m = cf - 1, ostride = cf; the last interval may be short: rows
        past out's end are skipped); step k of interval i reads gx[t[i] + k*tstep] and stores
        its gates at tg[i] + k. `step` is the case m = ostride = 1.
        """
        self._check("u", u, 4)
        n, L, B, H = u.shape
        if n == 0 or m < 1:
            return out
        ks = self._k(n * B)
        store = gates is not None
        tabs = [gates[k] for k in GATES] if store else [self._d4] * 4
        tg = (t if tg is None else tg) if store else self._i1
        grid = (n * B + ks.BT - 1) // ks.BT
        shmem = 2 * ks.BT * H * self.dtype.itemsize
        ks.gru_step[grid, H, 0, shmem](
            u, t, gx, self.W_hhT, self.b_hh, self.W_ihT, self.b_ih, self.dtype.type(dt),
            self._cell(fine), self._d4 if g is None else g, g is not None, out, *tabs, tg, store,
            np.int64(m), np.int64(ostride), np.int64(tstep))
        return out

    def vjp(self, u, lam, t, dt, out, fine=True, gates=None, gx=None, g=None, dg=None, td=None,
            f=None, m=1, ostride=1):
        """out[i] = (∂Φ/∂u[i])ᵀ lam[i] (+ f[i] on the top layer) (+ g[i]): the adjoint step, one
        launch (fine) or two (coarse).

        With m > 1: m steps per interval in the same launch(es), the k-th from lam[i] (k = 0) or
        the previous output into out[o], o = i*ostride + k, every per-step array (u, t, g, f, td)
        indexed by o as out is; rows past out's end are skipped (a whole adjoint F-relaxation:
        m = cf - 1, ostride = cf, lam = the C-points, out = the rows from the first F-point on).

        Fine (``fine=True``): linearised at the stored gate values ``gates[·][t[i]]`` (as written
        by `step` with ``gates``) and the states u[i]. Coarse (``fine=False``): the implicit cell
        linearised at the states u[i] with inputs gx[t[i]]: gates are recomputed by one `step`
        launch into scratch tables, then the same VJP kernel runs on them.
        dg : optional pair (dgx, dgh) of (T, L, B, 3H) device arrays: the gate cotangents of step i
            are stored at rows td[i] (td defaults to t), for `param_grads`.
        f : optional (n, 1, B, H) forcing added to the top layer (the adjoint's dy), before g.
        out may be lam itself.
        """
        self._check("u", u, 4)
        n, L, B, H = lam.shape
        if n == 0 or m < 1:
            return out
        ks = self._k(n * B)
        if fine:
            if gates is None:
                raise ValueError("the fine VJP needs the gate tables stored by step(..., gates=)")
            tabs, tg = [gates[k] for k in GATES], t
        else:
            if gx is None:
                raise ValueError("the coarse VJP recomputes the gates: pass gx")
            scr, tg = self.coarse_gates(u, t, gx, dt)
            tabs = [scr[k] for k in GATES]
        store = dg is not None
        dgs = list(dg) if store else [self._d4] * 2
        td = (t if td is None else td) if store else self._i1
        grid = (n * B + ks.BT - 1) // ks.BT
        shmem = 4 * ks.BT * H * self.dtype.itemsize
        ks.gru_vjp[grid, H, 0, shmem](
            u, lam, *tabs, tg, self.W_hh, self.W_ih, self.dtype.type(dt), self._cell(fine),
            self._d4 if g is None else g, g is not None, self._d4 if f is None else f,
            f is not None, out, *dgs, td, store, np.int64(m), np.int64(ostride))
        return out

    # ------------------------------------------------------------------------------------------
    # whole recurrences in one launch (persistent kernels, `scan_kernels`)
    # ------------------------------------------------------------------------------------------
    def scan_blocks(self, B):
        """Blocks of the persistent kernels: enough for B*H items, at most one per multiprocessor
        (the grid barrier needs every block resident); one under the simulator."""
        return max(1, min(self.max_scan_blocks(), (B * self.H + NI - 1) // NI))

    def max_scan_blocks(self):
        """One block per multiprocessor (1 under the simulator, which runs blocks in turn)."""
        from numba.cuda import config
        if config.ENABLE_CUDASIM:
            return 1
        if not hasattr(self, "_sms"):
            self._sms = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
        return self._sms

    def _scan_grid(self, B, blocks):
        """`scan_blocks`, or a checked override: more blocks than can be resident at once
        would deadlock the grid barrier (the simulator runs one block at a time: 1 there)."""
        if blocks is None:
            return self.scan_blocks(B)
        most = self.max_scan_blocks()
        if not (isinstance(blocks, (int, np.integer)) and 1 <= blocks <= most):
            raise ValueError(f"blocks must be an int in 1..{most} (one block per multiprocessor "
                             f"at most: the grid barrier needs them all resident), got {blocks!r}")
        return int(blocks)

    def _barrier(self):
        """The zeroed int64 counter of a persistent scan's grid barrier. On a GPU: one per
        `CudaGRU`, zeroed by a device memset in stream order (launches on one stream run in
        turn, so the previous scan is done with it); a fresh ``cuda.to_device`` would copy from
        pageable host memory, which makes the host wait for every queued kernel first."""
        from numba.cuda import config
        if config.ENABLE_CUDASIM:
            return cuda.to_device(np.zeros(1, np.int64))
        from numba.cuda.cudadrv import driver
        if getattr(self, "_counter", None) is None:
            self._counter = cuda.device_array(1, np.int64)
        driver.device_memset(self._counter, 0, 8)            # cuMemsetD8: no host wait
        return self._counter

    def scan(self, us, t, gx, dt, fine=True, g=None, gates=None, tg=None, blocks=None):
        """us[i+1] = Φ(us[i]) (+ g[i+1]) for i = 0 .. n-1, ONE launch (us: (n+1, L, B, H)).

        t : (n,) int64 device rows of gx for each step; gates / tg as in `step` (the gates of
        step i stored at row tg[i]); g : (n+1, L, B, H) or None (g[0] unused). ``blocks``
        overrides `scan_blocks` (tests).
        """
        self._check("us", us, 4)
        n1, L, B, H = us.shape
        if n1 <= 1:
            return us
        ks = scan_kernels(self.dtype)
        store = gates is not None
        tabs = [gates[k] for k in GATES] if store else [self._d4] * 4
        tg = (t if tg is None else tg) if store else self._i1
        nblk = self._scan_grid(B, blocks)
        ks.gru_scan[nblk, NT](
            us, t, gx, self.W_hh, self.b_hh, self.W_ih, self.b_ih, self.dtype.type(dt),
            self._cell(fine), self._d4 if g is None else g, g is not None,
            self.empty((1, L, B, H)),
            *tabs, tg, store, self._barrier())
        return us

    def vjp_scan(self, U, tu, lam, gates, tg, dt, fine=True, g=None, f=None, dg=None, td=None,
                 blocks=None):
        """lam[i+1] = (∂Φ/∂u at U[tu[i]], gates at row tg[i])ᵀ lam[i] (+ g[i+1]) (+ f[i+1] on
        the top layer) for i = 0 .. n-1, ONE launch (lam: (n+1, L, B, H), f: (n+1, 1, B, H)).

        The adjoint recurrence (BPTT, or the coarsest level of the adjoint solve) with the gates
        stored by `step` / `scan`; dg = (dgx, dgh) stores step i's gate cotangents at td[i].
        """
        self._check("lam", lam, 4)
        n1, L, B, H = lam.shape
        if n1 <= 1:
            return lam
        ks = scan_kernels(self.dtype)
        store = dg is not None
        dgs = list(dg) if store else [self._d4] * 2
        td = (tg if td is None else td) if store else self._i1
        nblk = self._scan_grid(B, blocks)
        ks.gru_vjp_scan[nblk, NT](
            U, tu, lam, *[gates[k] for k in GATES], tg, self.W_hhT, self.W_ihT,
            self.dtype.type(dt), self._cell(fine), self._d4 if g is None else g, g is not None,
            self._d4 if f is None else f, f is not None, *dgs, td, store,
            self.empty((B, 3 * H)), self.empty((B, H)), self.empty((B, H)), self.empty((B, H)),
            self._barrier())
        return lam

    def coarse_gates(self, u, t, gx, dt):
        """Re-linearise the implicit coarse step at the states u[i] (inputs gx[t[i]]): one `step`
        launch storing the gates of state i at row i of scratch tables. Returns (tables, rows),
        rows being a device arange: what `vjp` / `vjp_scan` take as (gates, tg)."""
        n, L, B, H = u.shape
        scr = self._scratch_gates(n, L, B, H)
        self.step(u, t, gx, dt, scr["h_new"], fine=False, gates=scr, tg=scr["arange"])
        return scr, scr["arange"]

    def _scratch_gates(self, n, L, B, H):
        key = (n, L, B, H)
        if key not in self._scratch:
            scr = {k: self.empty((n, L, B, H)) for k in GATES + ("h_new",)}
            scr["arange"] = cuda.to_device(np.arange(n, dtype=np.int64))
            self._scratch[key] = scr
        return self._scratch[key]

    # ------------------------------------------------------------------------------------------
    # parameter gradients
    # ------------------------------------------------------------------------------------------
    def _chunks(self, M, chunks):
        if chunks is None:
            chunks = max(1, min(64, M // 1024))               # ~1024 rows of the sum per block
        return max(1, min(int(chunks), M))

    def outer_sum(self, A, V, out, accumulate=False, chunks=None):
        """out (+)= Σ_{t,b} A[t,b]ᵀ ⊗ V[t,b]: (T, B, P), (T, B, Q) -> (P, Q), deterministic."""
        T, B, P = A.shape
        Q = V.shape[2]
        S = self._chunks(T * B, chunks)
        part = self.empty((S, P, Q))
        grid = ((Q + TILE - 1) // TILE, (P + TILE - 1) // TILE, S)
        ks = self._k()
        ks.outer_partial[grid, (TILE, TILE)](A, V, part)
        nt = threads(P * Q)
        ks.reduce_chunks[(P * Q + nt - 1) // nt, nt](part.reshape(S, P * Q), out.reshape(P * Q),
                                                     accumulate)
        return out

    def col_sum(self, A, out, accumulate=False, chunks=None):
        """out (+)= Σ_{t,b} A[t,b]: (T, B, P) -> (P,), deterministic."""
        T, B, P = A.shape
        S = self._chunks(T * B, chunks)
        part = self.empty((S, P))
        ks = self._k()
        nt = threads(P)
        ks.colsum_partial[((P + nt - 1) // nt, S), nt](A, part)
        ks.reduce_chunks[(P + nt - 1) // nt, nt](part, out, accumulate)
        return out

    def param_grads(self, x, u, dgx, dgh, grads=None, chunks=None, u_next=None):
        """Parameter gradients Σ_t (∂Φ_t/∂θ)ᵀ λ_{t+1} from the stored gate cotangents.

        x (T, B, I) inputs, u (T+1, L, B, H) the fine states u_0..u_T, dgx, dgh (T, L, B, 3H) from
        `vjp(..., dg=)`. ``u_next`` (T, L, B, H), if given, is Φ(u_t) for every t, the input the
        upper layers really saw; by default u_{t+1} (the same once the states are a trajectory,
        not at the C-points of an unconverged MGRIT iterate). Returns a dict of device arrays with
        nn.GRU names; with ``grads`` given (such a dict) the sums are added to it (accumulation
        over batches).
        """
        T = x.shape[0]
        accumulate = grads is not None
        if grads is None:
            grads = {}
            for k in range(self.L):
                fan_in = self.I if k == 0 else self.H
                grads[f"weight_ih_l{k}"] = self.empty((3 * self.H, fan_in))
                grads[f"weight_hh_l{k}"] = self.empty((3 * self.H, self.H))
                grads[f"bias_ih_l{k}"] = self.empty(3 * self.H)
                grads[f"bias_hh_l{k}"] = self.empty(3 * self.H)
        for k in range(self.L):
            gx_k, gh_k = view(dgx, (slice(0, T), k)), view(dgh, (slice(0, T), k))
            nxt = view(u, slice(1, T + 1)) if u_next is None else u_next
            inp = x if k == 0 else view(nxt, (slice(0, T), k - 1))   # layer k's input: layer k-1's h⁺
            self.outer_sum(gx_k, inp, grads[f"weight_ih_l{k}"], accumulate, chunks)
            self.outer_sum(gh_k, view(u, (slice(0, T), k)), grads[f"weight_hh_l{k}"], accumulate,
                           chunks)
            self.col_sum(gx_k, grads[f"bias_ih_l{k}"], accumulate, chunks)
            self.col_sum(gh_k, grads[f"bias_hh_l{k}"], accumulate, chunks)
        return grads

    # ------------------------------------------------------------------------------------------
    # residual and norms
    # ------------------------------------------------------------------------------------------
    def residual(self, a, b, out, sq=None, mx=None):
        """out = a - b (e.g. a = Φ(u_{i-1}) + g, b = u_i at C-points) and per-point ‖out[i]‖², max|out[i]|."""
        n = a.shape[0]
        sq = self.empty(n) if sq is None else sq
        mx = self.empty(n) if mx is None else mx
        if n:
            self._k().diff_norms[n, RED](a, b, out, sq, mx)
        return out, sq, mx

    def sq_norms(self, v, sq=None, mx=None):
        """Per-point ‖v[i]‖² and max|v[i]| over (L, B, H): (n,), (n,) device arrays."""
        n = v.shape[0]
        sq = self.empty(n) if sq is None else sq
        mx = self.empty(n) if mx is None else mx
        if n:
            self._k().norms[n, RED](v, sq, mx)
        return sq, mx

    def axpby(self, alpha, a, beta, b, out):
        """out = alpha a + beta b, elementwise on (n, L, B, H) views (out may alias a or b)."""
        n, L, B, H = out.shape
        if n:
            self._k().axpby[n, threads(L * B * H)](self.dtype.type(alpha), a, self.dtype.type(beta),
                                                    b, out)
        return out

    def copy(self, src, out):
        """out = src on (n, L, B, H) views (e.g. u at C-points <- coarse v)."""
        return self.axpby(1.0, src, 0.0, src, out)

    def total(self, sq, mx, out=None):
        """(Σ sq, max mx) as a (2,) device array: the time 2-norm² and max-norm, one block."""
        out = self.empty(2) if out is None else out
        self._k().total[1, RED](sq, mx, out)
        return out
