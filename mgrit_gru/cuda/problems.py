"""The GRU forward pass and its adjoint as MGRIT problems whose states live on one GPU.

Device twins of `mgrit_gru.problems.GRUForwardProblem` / `GRUAdjointProblem` (read those first:
they are the reference, and these compute the same numbers). The generic solver
(`mgrit_gru.mgrit.cycle`) is unchanged: it slices the level arrays with positive strides
(``A[a:b:cf]``, ``A[0]``, ``A[1:]``), which numba device arrays support as views, and does every
arithmetic through ``problem.vec`` — here `CudaVectors`, one kernel launch per operation.

What stays on the device for the whole solve: the inputs x, the input projection gx0 = W_ih x + b
(one `project` launch), the weights (`CudaGRU`), every level's states and FAS forcing, the gate
tables for the backward pass, the adjoint's cotangent tables, the gradients until the end. What
crosses to the host: u_0 once (``from_host``; the initial guess is built on the device,
`initial_guess_into`), the two scalars of the residual norm once per iteration, and the solution
(``to_host``) once at the end.

Time indices: the kernels take the row of every table (gx0, gates, cotangents) as an int64 device
array ``t``. A solver ``range(start, stop, step)`` becomes a positive-stride view of one device
``arange`` (no transfer per step). Reversed time (the adjoint) needs decreasing rows: numba device
arrays have no negative-stride views (their extent is computed wrongly and D->H copies refuse
them), so the adjoint keeps a *reversed* index table (``N - s - offset``) and a reversed copy of
the forward states (one `take_rows` gather at the start), both read with positive strides.
"""
from __future__ import annotations

import os

import numpy as np
from numba import cuda
from numba.cuda import config

from ..mgrit.problem import Problem
from ..problems import GRUForwardBase
from .backend import GATES, CudaGRU, as_device, view
from .vector_kernels import fill, take_rows, window_mean


POISON = os.environ.get("MGRIT_GRU_POISON") == "1"           # NaN-fill scratch on a real GPU too


class CudaVectors:
    """The solver's vector operations (`mgrit_gru.mgrit.problem.NumpyVectors`) on device arrays
    of shape (n, L, B, H), views included; each one is one or two kernel launches.

    ``sq_norm`` / ``max_abs`` return host floats: that scalar (two numbers) is the only transfer
    per MGRIT iteration. Their sums run in the device dtype (NumpyVectors accumulates in float64:
    the norms agree to the dtype's precision).
    """

    def __init__(self, gru, shape):
        self.gru = gru
        self.shape, self.dtype = tuple(shape), gru.dtype
        self._tot = gru.empty(2)
        # MGRIT_GRU_SYNC_TIMERS=1: the solver waits for the GPU at each phase's ends, so its
        # phase_times are device time per phase (launches are asynchronous: without the wait
        # they measure queueing, and the work shows up in whichever phase next reads a norm)
        self.sync_timers = os.environ.get("MGRIT_GRU_SYNC_TIMERS") == "1"

    def synchronize(self):
        cuda.synchronize()

    def zeros(self, n):
        return fill(self.gru.empty((n,) + self.shape), 0.0)

    def empty(self, n):
        """Uninitialised scratch (no launch); under the simulator, or on a GPU with
        MGRIT_GRU_POISON=1 (the real-GPU tests), poisoned with NaN, so that the tests see any
        element the solver would read before writing it."""
        a = self.gru.empty((n,) + self.shape)
        return fill(a, np.nan) if config.ENABLE_CUDASIM or POISON else a

    def assign(self, dst, src):
        self.gru.copy(src, dst)

    def sub(self, out, a, b):
        self.gru.axpby(1.0, a, -1.0, b, out)

    def fas(self, out, a, b, c):
        """out = a + b - c (b may be None), in NumpyVectors' order: (a - c) + b."""
        self.gru.axpby(1.0, a, -1.0, c, out)
        if b is not None:
            self.gru.axpby(1.0, out, 1.0, b, out)

    def axpby(self, out, alpha, a, beta, b):
        """out = alpha a + beta b (weighted C-relaxation)."""
        self.gru.axpby(alpha, a, beta, b, out)

    def _norms(self, a):
        if a.shape[0] == 0:
            return 0.0, 0.0
        return self._total(*self.gru.sq_norms(a))

    def _total(self, sq, mx):
        """(Σ sq, max mx) of per-point norms: one `total` launch, two numbers to the host."""
        tot = self.gru.to_host(self.gru.total(sq, mx, self._tot))
        return float(tot[0]), float(tot[1])

    def sq_norm(self, a):
        return self._norms(a)[0]

    def max_abs(self, a):
        return self._norms(a)[1]

    def diff_norm(self, a, b, norm="2"):
        """Σ|a - b|² (norm "2") or max|a - b|: one `diff_norms` launch (per-point norms, a - b
        into scratch) and one `total`; the two numbers come back to the host."""
        if a.shape[0] == 0:
            return 0.0
        sq, mx = self._total(*self.gru.residual(a, b, self.gru.empty(a.shape))[1:])
        return mx if norm == "max" else sq

    def rows(self, A, slot, count, step):
        """``A[slot : slot + step (count - 1) + 1 : step]`` as a cheap device view (`view`)."""
        return view(A, slice(slot, slot + step * (count - 1) + 1, step))

    def to_host(self, a):
        return to_host(self.gru, a)

    def from_host(self, dst, a):
        buf = np.empty(dst.shape, self.dtype)               # fresh strides (no stride-0 axes)
        buf[...] = a
        a = buf
        if dst.is_c_contiguous():
            dst.copy_to_device(a)
        else:                                                # stage, then one copy kernel
            self.gru.copy(self.gru.to_device(a), dst)


def to_host(gru, a):
    """Device (n, L, B, H) view -> host array; a strided view is first packed by one copy kernel
    (D->H copies of strided device views are not something to rely on)."""
    if not a.is_c_contiguous():
        packed = gru.empty(a.shape)
        gru.copy(a, packed)
        a = packed
    return a.copy_to_host()


def _arange_view(table, t, offset, n_rows, what):
    """Rows ``t - offset`` of an index table (table[r] = its row r's index) as a device view."""
    n = len(t)
    a = t.start - offset
    last = a + t.step * (n - 1)
    if a < 0 or last >= n_rows:
        raise IndexError(f"fine steps {t.start}..{t.start + t.step * (n - 1)} are outside the "
                         f"{what} rows {offset}..{offset + n_rows - 1}")
    return view(table, slice(a, last + 1, t.step))


class CudaForwardProblem(GRUForwardBase):
    """`GRUForwardProblem` on the device: u_{i+1} = Φ(u_i, x_i), state shape (L, B, H).

    Same parameters as `mgrit_gru.problems.GRUForwardProblem`. One `step` call is one
    `CudaGRU.step` launch over all its intervals, the gates stored in device tables when asked.
    """

    def __init__(self, params, x, h0, n_steps, cell="classic", dt=1.0, coarse_input="inject",
                 t_offset=0, store_from=None):
        super().__init__(params, x, h0, n_steps, cell, dt, coarse_input, t_offset, store_from)
        L, B, H = self.shape
        self.gru = gru = CudaGRU(params, cell, dtype=self.dtype)
        self.vec = CudaVectors(gru, self.shape)
        self.T_loc = T_loc = x.shape[0]
        self.device_io = as_device(x) is not None           # given on the GPU: the outputs
        # stay there too; x is copied there (the caller may refill it before the backward)
        self.x = gru.private_copy(x) if self.device_io else gru.to_device(x)
        self.gx0 = gru.project(self.x)                       # (T_loc, B, 3H), one launch
        self.n_store = self.t_offset + T_loc - self.store_from
        self.gates = {g: gru.empty((self.n_store, L, B, H)) for g in GATES}
        # row r of this table is r: views of it are the kernels' time-index arrays
        self.arange = gru.to_device(np.arange(max(T_loc, self.n_store) + 1), np.int64)

    def initial_guess_into(self, dst, t):
        """h_0 at every point, broadcast on the device (one `take_rows` with a zero index
        table) instead of building T copies on the host and uploading them."""
        n = dst.shape[0]
        if n:
            h0 = self.gru.to_device(self.h0[None])
            take_rows(h0, self.gru.to_device(np.zeros(n), np.int64), dst)

    def coarse_gx0(self, span):
        """The layer-0 input table of coarse steps over ``span`` (row a: step starting at a)."""
        if self.coarse_input == "inject":
            return self.gx0
        if span not in self._avg:                            # mean of gx0[a : a + span], once
            rows = max(self.T_loc - span + 1, 0)
            self._avg[span] = window_mean(self.gx0, span,
                                          self.gru.empty((rows,) + self.gx0.shape[1:]))
        return self._avg[span]

    def _inputs(self, level, t, span, store):
        """What a launch stepping from fine indices ``t`` on ``level`` needs: the input rows
        (a view of the device arange), the input table, dt, fine?, and the gate tables to store
        into (fine level, ``store``)."""
        if level == 0:
            kw = {}
            if store:
                kw = {"gates": self.gates,
                      "tg": _arange_view(self.arange, t, self.store_from, self.n_store, "gate")}
            tx = _arange_view(self.arange, t, self.t_offset, self.T_loc, "input")
            return tx, self.gx0, self.dt, True, kw
        gx = self.coarse_gx0(span)
        tx = _arange_view(self.arange, t, self.t_offset, gx.shape[0], "coarse input")
        return tx, gx, self.dt * span, False, {}

    def step(self, level, u, t, span, out, g=None, store=False):
        """One batched step: `sweep` with one step per interval."""
        self.sweep(level, u, t, span, out, 1, 1, g, store)

    def sweep(self, level, u, t, span, out, m, ostride, g=None, store=False):
        """A whole F-relaxation as ONE launch (`CudaGRU.sweep`; `Problem.sweep` says what)."""
        if len(t) == 0:
            return
        tx, gx, dt, fine, kw = self._inputs(level, t, span, store)
        tstep = 1 if level == 0 else span                    # input rows of consecutive steps
        self.gru.sweep(u, tx, gx, dt, out, m, ostride, tstep, fine=fine, g=g, **kw)

    def march(self, level, u, t, span, g=None, store=False):
        """The coarsest level's sequential solve as ONE persistent launch (`CudaGRU.scan`)."""
        if len(t) == 0:
            return
        tx, gx, dt, fine, kw = self._inputs(level, t, span, store)
        self.gru.scan(u, tx, gx, dt, fine=fine, g=g, **kw)


class CudaAdjointProblem(Problem):
    """`GRUAdjointProblem` on the device: λ_i = (∂Φ_i/∂u_i)ᵀ λ_{i+1} + f_i in reversed time s = N - i.

    Fine steps: one `CudaGRU.vjp` launch at the stored gates (nothing recomputed); coarse steps:
    the VJP of the implicit coarse step re-linearised at the forward state u_{N-s} with the
    injected input (two launches), exactly as the NumPy problem. The output forcing f_i (dy_{i-1}
    on the top layer) is added by the same `gru_vjp` launch.

    Device tables in reversed time, read with positive strides (module docstring): ``R[s]`` =
    u_{N-s} (one gather), ``rev(offset)[s]`` = N - s - offset (rows of gx0 / gates / cotangents),
    ``dyr[s]`` = dy_{N-1-s} (zero at s = N).
    """

    def __init__(self, fwd, states, states_first, dy, dy_first, dh_T):
        super().__init__(fwd.shape, fwd.dtype, fwd.n_steps)
        self.fwd, self.dy_first, self.dh_T = fwd, int(dy_first), dh_T
        N = self.n_steps
        r = N - 1 - self.dy_first                            # dy_{N-1}, λ_N's forcing, on the host
        self.dy_last = None
        if dy is not None and N >= 1 and 0 <= r < dy.shape[0]:
            self.dy_last = dy[r:r + 1].copy_to_host()[0] if as_device(dy) is not None else dy[r]
        self.states, self.states_first = states, int(states_first)
        gru = self.gru = fwd.gru
        self.vec = fwd.vec
        L, B, H = self.shape
        self.L = L
        N = self.n_steps
        self._rev = {}
        self.R = gru.empty((N + 1, L, B, H))
        take_rows(states, self.rev(self.states_first), self.R)
        self.dyr = None
        if dy is not None:
            self.dyr = self._reversed_dy(dy)
        self.dgx = gru.empty((fwd.n_store, L, B, 3 * H))
        self.dgh = gru.empty((fwd.n_store, L, B, 3 * H))

    def _reversed_dy(self, dy):
        """``dyr[s]`` = dy_{N-1-s} (zero where dy has no row, and at s = N) as (N+1, 1, B, H).

        dy covering every step (one GPU, the whole sequence; on the host or the device):
        reversed by one `take_rows` gather; otherwise (a host slice of the steps) assembled on
        the host."""
        N, gru = self.n_steps, self.gru
        B, H = self.shape[1:]
        if self.dy_first == 0 and dy.shape[0] == N and N > 0:
            return reversed_dy(gru, dy, self.rev(1)[:N])
        dyr = np.zeros((N + 1, 1, B, H), self.dtype)
        rows = np.arange(N - 1, -1, -1) - self.dy_first        # dy_{N-1-s} for s = 0..N-1
        ok = (rows >= 0) & (rows < dy.shape[0])
        dyr[:N][ok, 0] = dy[rows[ok]]
        return gru.to_device(dyr)

    def rev(self, offset):
        """Device int64 table ``N - s - offset`` for s = 0..N (cached per offset)."""
        if offset not in self._rev:
            self._rev[offset] = self.gru.to_device(
                self.n_steps - np.arange(self.n_steps + 1) - offset, np.int64)
        return self._rev[offset]

    def initial(self):
        lam = np.zeros(self.shape, self.dtype) if self.dh_T is None else self.dh_T.copy()
        if self.dy_last is not None:
            lam[self.L - 1] += self.dy_last
        return lam

    def initial_guess(self, level, t):
        return np.zeros((len(t),) + self.shape, self.dtype)

    def initial_guess_into(self, dst, t):
        """λ = 0 everywhere: one `fill` on the device (nothing built on the host)."""
        fill(dst, 0.0)

    def step(self, level, u, t, span, out, g=None, store=False):
        """One batched adjoint step: `sweep` with one step per interval."""
        self.sweep(level, u, t, span, out, 1, 1, g, store)

    def sweep(self, level, u, t, span, out, m, ostride, g=None, store=False):
        """m adjoint steps per interval in one `gru_vjp` launch (`Problem.sweep` says what).

        out's rows are adjoint points s0, s0 + d, ... (s0 = t[0] + span, d = t.step / ostride:
        consecutive level points in a sweep, the targets themselves for one step): the forward
        states, gate rows and forcing of each step are views of R, rev(·) and dyr on those
        points. Fine: the stored gates; coarse: the gates of all those steps recomputed first
        by one batched `step` launch (the forward states are known), then the VJPs.
        """
        n = len(t)
        if n == 0:
            return
        fwd, gru = self.fwd, self.gru
        s0 = t.start + span                                  # first target point (solver time)
        d = t.step // ostride if n > 1 else span
        last = s0 + d * (out.shape[0] - 1)
        if last > self.n_steps:
            raise IndexError(f"adjoint points {s0}..{last} beyond N = {self.n_steps}")
        sl = slice(s0, last + 1, d)
        h = view(self.R, sl)                                 # u_i at forward steps i = N - s
        f = None if self.dyr is None else view(self.dyr, sl)   # + f_i on the top layer (in the kernel)
        if level == 0:
            tg = view(self.rev(fwd.store_from), sl)
            kw = {"dg": (self.dgx, self.dgh), "td": tg} if store else {}
            gru.vjp(h, u, tg, fwd.dt, out, fine=True, gates=fwd.gates, g=g, f=f, m=m,
                    ostride=ostride, **kw)
        else:
            gru.vjp(h, u, view(self.rev(fwd.t_offset), sl), fwd.dt * span, out, fine=False,
                    gx=fwd.gx0, g=g, f=f, m=m, ostride=ostride)

    def march(self, level, u, t, span, g=None, store=False):
        """The coarsest level's adjoint solve as ONE persistent launch (`CudaGRU.vjp_scan`).

        Fine level: the stored gates. Coarse: the gates of every coarse step are recomputed by
        one batched `step` launch first (the forward states are known), then the scan.
        """
        n = len(t)
        if n == 0:
            return
        fwd, gru = self.fwd, self.gru
        s0 = t.start + span
        last = s0 + t.step * (n - 1)
        if last > self.n_steps:
            raise IndexError(f"adjoint points {s0}.. beyond N = {self.n_steps}")
        sl = slice(s0, last + 1, t.step)                     # the targets: u_i at i = N - s
        h = view(self.R, sl)
        idx = fwd.arange[:n]                                 # h[idx[i]] is step i's state
        f = None if self.dyr is None else view(self.dyr, slice(t.start, last + 1, t.step))   # f[i+1] at target i
        if level == 0:
            tg = view(self.rev(fwd.store_from), sl)
            kw = {"dg": (self.dgx, self.dgh), "td": tg} if store else {}
            gru.vjp_scan(h, idx, u, fwd.gates, tg, fwd.dt, fine=True, g=g, f=f, **kw)
        else:
            gates, tg = gru.coarse_gates(h, view(self.rev(fwd.t_offset), sl), fwd.gx0,
                                         fwd.dt * span)
            gru.vjp_scan(h, idx, u, gates, tg, fwd.dt * span, fine=False, g=g, f=f)

    def gradients(self, lo, hi, dx_on_device=False, input_grad=True):
        """Parameter gradients (host arrays) and dx of the steps this problem stored.

        ``lo, hi``: the forward solve's own points. Deterministic device sums
        (`CudaGRU.param_grads`), dx = dgx_l0 W_ih_l0 by one `project` launch; then one copy
        of each result to the host (dx stays on the device with ``dx_on_device``; it is None,
        and neither launched nor copied, without ``input_grad``).
        """
        fwd, gru = self.fwd, self.gru
        first = fwd.store_from
        u = self.states[first - self.states_first: hi + 1 - self.states_first]   # u_first..u_hi
        x = fwd.x[first - fwd.t_offset: hi - fwd.t_offset]
        dgx, dgh = self.dgx[: hi - first], self.dgh[: hi - first]
        u_next = None
        if fwd.shape[0] > 1:                                 # upper layers saw Φ(u_i), not u_{i+1}:
            n = hi - first                                   # recompute it, one launch, all steps
            u_next = gru.empty((n,) + tuple(fwd.shape))
            tx = fwd.arange[first - fwd.t_offset: first - fwd.t_offset + n]
            gru.step(u[:n], tx, fwd.gx0, fwd.dt, u_next, fine=True)
        grads = gru.param_grads(x, u, dgx, dgh, u_next=u_next)
        dx = input_gradient(gru, fwd.params, dgx[:, 0]) if input_grad else None
        grads = {k: gru.to_host(v) for k, v in grads.items()}
        return grads, (dx if dx is None or dx_on_device else gru.to_host(dx))


def reversed_dy(gru, dy, rev):
    """dy (T, B, H) on the host or the device -> ``dyr`` (T+1, 1, B, H) on the device,
    dyr[s] = dy_{T-1-s} and dyr[T] = 0: uploaded as it is (if on the host), reversed by one
    `take_rows` gather (``rev[s]`` = T-1-s, a device int64 table). The output forcing of the
    adjoint in reversed time."""
    T, B, H = dy.shape
    dyr = gru.empty((T + 1, 1, B, H))
    take_rows(gru.to_device(dy).reshape(T, 1, B, H), rev, dyr[:T])   # (C-contiguous: checked)
    fill(dyr[T:], 0.0)
    return dyr


def outputs_on_device(gru, u):
    """(y, h_T) as fresh device arrays (T, B, H) and (L, B, H) from the states u_0..u_T
    (T+1, L, B, H), for callers that gave x on the GPU: copies, so that changing them cannot
    change the states a backward pass linearises at. One copy launch each."""
    T1, L, B, H = u.shape
    y, h_T = gru.empty((T1 - 1, 1, B, H)), gru.empty((1, L, B, H))
    gru.copy(view(u, (slice(1, None), slice(L - 1, L))), y)          # y_t = u_{t+1}, top layer
    gru.copy(u[T1 - 1:], h_T)
    # the copies are queued on the legacy default stream, and numba exports these arrays with
    # stream None ("no sync needed"): a consumer on another stream (PyTorch's side streams are
    # non-blocking) could read them unwritten. Finish them before handing them over.
    cuda.synchronize()
    return y.reshape(T1 - 1, B, H), h_T.reshape(L, B, H)


def input_gradient(gru, params, dgx0):
    """dx = dgx0 @ W_ih_l0 on the device: (T, B, 3H) -> (T, B, I), one `project` launch (the
    projection kernel with the untransposed weight and a zero bias)."""
    W = getattr(gru, "_W_ih0", None)
    if W is None:
        W = gru._W_ih0 = gru.to_device(params["weight_ih_l0"])          # (3H, I)
        gru._zero_I = gru.to_device(np.zeros(gru.I))
    T, B, _ = dgx0.shape
    out = gru.empty((T, B, gru.I))
    from .kernels import TILE, project_grid
    gru._k().project[project_grid(T * B, gru.I), (TILE, TILE)](dgx0, W, gru._zero_I, out)
    return out
