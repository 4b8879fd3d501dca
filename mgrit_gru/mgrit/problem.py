"""The problem interface the MGRIT solver talks to, and linear test problems.

A problem is a one-step time stepper u_{i+1} = Φ_l(u_i) on every level l, *batched*: one call
advances a batch of states that start at a batch of fine time indices, so one F-relaxation sweep of
all intervals is one call. The solver knows nothing else about the problem: it only calls

    step(level, u, t, span, out, g=None, store=False)   out = Φ_level(u) (+ g)
    initial()                                            u_0, shape ``shape``
    initial_guess(level, t)                              states at fine indices t (n, *shape)

plus three hooks with defaults built on those, which a problem may do better (the CUDA problems
do each in one kernel launch): ``sweep`` (a whole F-relaxation, m steps per interval),
``march`` (the coarsest level's sequential solve) and ``initial_guess_into``;
and the vector operations of `NumpyVectors` (``zeros``, ``empty``, ``assign``, ``sub``, ``fas``,
``axpby``, ``sq_norm``, ``max_abs``, ``diff_norm``, ``rows``, ``to_host``, ``from_host``), which a
GPU problem replaces with device versions. Vector operations that only queue work may also set
``sync_timers = True`` and provide ``synchronize()``: the solver then waits at both ends of
each timed phase (`MGRITInfo.phase_times` becomes the work's time, for profiling).

Here too: `Dahlquist` (u' = λ u, diagonal λ, any coarse propagator) and `LinearRNN`
(u⁺ = A u + B x_t), used by the tests to check the theory (docs/theory/mgrit.md, "Properties").
"""
from __future__ import annotations

import numpy as np


def rows_of(vec, A, slot, count, step):
    """View of ``count`` rows of A from ``slot`` every ``step``: through ``vec.rows`` when the
    vector operations provide it (device arrays slice cheaply that way), else plain slicing."""
    rows = getattr(vec, "rows", None)
    if rows is not None:
        return rows(A, slot, count, step)
    return A[slot: slot + step * (count - 1) + 1: step]


class NumpyVectors:
    """Vector operations on host arrays of shape (n, *shape); a point is one row."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def zeros(self, n):
        return np.zeros((n,) + self.shape, self.dtype)

    def empty(self, n):
        """Scratch for n points that the solver writes in full before reading. Filled with NaN
        here, so that a read before the write shows up in every result (a device twin returns
        uninitialised memory: no launch)."""
        return np.full((n,) + self.shape, np.nan, self.dtype)

    def assign(self, dst, src):
        dst[...] = src

    def sub(self, out, a, b):
        np.subtract(a, b, out=out)

    def fas(self, out, a, b, c):
        """out = a + b - c (the tau correction; b may be None)."""
        np.subtract(a, c, out=out)
        if b is not None:
            out += b

    def axpby(self, out, alpha, a, beta, b):
        """out = alpha a + beta b (out may be a or b)."""
        np.add(alpha * a, beta * b, out=out)

    def sq_norm(self, a):
        """Σ |a|², accumulated in float64 (complex states: squared moduli)."""
        if np.iscomplexobj(a):
            a = np.abs(a)                                    # np.square(complex) can't go to float64
        return float(np.sum(np.square(a, dtype=np.float64)))

    def max_abs(self, a):
        return float(np.max(np.abs(a))) if a.size else 0.0

    def diff_norm(self, a, b, norm="2"):
        """``sq_norm(a - b)`` (norm "2") or ``max_abs(a - b)`` (norm "max"): the residual's
        local norm (a device twin does it in one pass, without storing a - b)."""
        d = np.subtract(a, b)
        return self.max_abs(d) if norm == "max" else self.sq_norm(d)

    def rows(self, A, slot, count, step):
        """``count`` points of A from ``slot``, every ``step`` (a view)."""
        return A[slot: slot + step * (count - 1) + 1: step]

    def to_host(self, a):
        """A host copy, independent of the solver's array (as a device's copy is): what
        the solver returns must not alias the states a backward pass linearises at."""
        return np.array(a, copy=True, order="C")

    def from_host(self, dst, a):
        dst[...] = a


class Problem:
    """Base class: override `step` (and `initial`; `initial_guess` defaults to u_0 everywhere)."""

    def __init__(self, shape, dtype, n_steps):
        self.shape, self.dtype, self.n_steps = tuple(shape), np.dtype(dtype), int(n_steps)
        self.vec = NumpyVectors(self.shape, self.dtype)

    def initial(self):
        raise NotImplementedError

    def initial_guess(self, level, t):
        """States at the fine indices ``t`` to start from (default: u_0 everywhere)."""
        u0 = self.initial()
        return np.broadcast_to(u0, (len(t),) + self.shape).copy()

    def initial_guess_into(self, dst, t):
        """Write ``initial_guess(0, t)`` into the solver's array ``dst`` (a device problem
        overrides this to build the guess on the device instead of copying it over)."""
        self.vec.from_host(dst, self.initial_guess(0, t))

    def step(self, level, u, t, span, out, g=None, store=False):
        """Write ``Φ_level(u) (+ g)`` into ``out``.

        Parameters
        ----------
        level : int
            0 = fine step; l > 0 = the coarse step over ``span`` fine steps.
        u : array (n, *shape)
            States at the fine time indices ``t``.
        t : range
            Fine index of each start point (length n).
        span : int
            Fine steps covered by one step on this level (1 on level 0).
        out : array (n, *shape)
            Written in full (may alias nothing in ``u``).
        g : array (n, *shape) or None
            FAS forcing added to the step.
        store : bool
            Fine level only: keep what a later linearisation needs (the GRU's gates).
        """
        raise NotImplementedError

    def sweep(self, level, u, t, span, out, m, ostride, g=None, store=False):
        """A whole F-relaxation: m steps from each start state u[i], in order.

        Step k of interval i (k = 0 .. m-1) goes from u[i] (k = 0) or out[i*ostride + k - 1]
        to ``out[i*ostride + k] = Φ_level(...) (+ g[i*ostride + k])`` and starts at fine index
        ``t[i] + k*span``; rows past the end of ``out`` (a short last interval) are skipped.
        The default makes m batched `step` calls, exactly the solver's stage-by-stage sweep; a
        problem can do it in one call (the CUDA problems: one launch).
        """
        vec = self.vec
        n = len(t)
        for k in range(m):
            nk = min(n, (len(out) - k - 1) // ostride + 1) if len(out) > k else 0
            if nk == 0:
                break
            src = rows_of(vec, u, 0, nk, 1) if k == 0 else rows_of(vec, out, k - 1, nk, ostride)
            tk = range(t.start + k * span, t.start + k * span + t.step * nk, t.step)
            self.step(level, src, tk, span, rows_of(vec, out, k, nk, ostride),
                      None if g is None else rows_of(vec, g, k, nk, ostride), store)

    def march(self, level, u, t, span, g=None, store=False):
        """Sequential stepping: ``u[i+1] = Φ_level(u[i]) (+ g[i+1])`` for i = 0 .. len(t)-1.

        The coarsest level's solve. ``u`` and ``g`` hold len(t) + 1 points (u[0] is the given
        start, g[0] is unused); ``t`` is the fine index of each step's start point. The default
        calls `step` once per point; a problem can do better (the CUDA problems run the whole
        recurrence in one persistent kernel launch).
        """
        for i in range(len(t)):
            self.step(level, u[i:i + 1], t[i:i + 1], span, u[i + 1:i + 2],
                      None if g is None else g[i + 1:i + 2], store)


# ----------------------------------------------------------------------------------------------
# linear test problems
# ----------------------------------------------------------------------------------------------
class Dahlquist(Problem):
    """Diagonal linear test problem u_{i+1} = λ ⊙ u_i (+ g), one eigenvalue per component.

    Parameters
    ----------
    lam : array (m,)
        Fine-step eigenvalues λ (complex allowed), e.g. exp(z dt) for u' = z u.
    n_steps : int
    u0 : array (m,), optional (ones)
    coarse : {"ideal", "euler", "power"} or callable
        The coarse eigenvalue μ(λ, span): "ideal" μ = λ^span (one-iteration convergence),
        "euler" μ = 1 / (1 - span (λ - 1)) (backward Euler with the fine step's rate, the
        usual non-ideal choice), or a callable ``mu(lam, span)``.
    """

    def __init__(self, lam, n_steps, u0=None, coarse="euler"):
        lam = np.atleast_1d(np.asarray(lam))
        dtype = np.complex128 if np.iscomplexobj(lam) else np.float64
        super().__init__(lam.shape, dtype, n_steps)
        self.lam = lam.astype(dtype)
        self.u0 = np.ones(lam.shape, dtype) if u0 is None else np.asarray(u0, dtype)
        self.coarse = coarse

    def mu(self, span):
        """The coarse-step eigenvalues for a step over ``span`` fine steps."""
        if callable(self.coarse):
            return np.asarray(self.coarse(self.lam, span), self.dtype)
        if self.coarse == "ideal":
            return self.lam ** span
        if self.coarse == "euler":
            return 1.0 / (1.0 - span * (self.lam - 1.0))
        if self.coarse == "power":
            return self.lam ** span
        raise ValueError(f"coarse must be 'ideal', 'euler', 'power' or a callable, got "
                         f"{self.coarse!r}")

    def initial(self):
        return self.u0.copy()

    def step(self, level, u, t, span, out, g=None, store=False):
        factor = self.lam if level == 0 else self.mu(span)
        np.multiply(u, factor, out=out)
        if g is not None:
            out += g

    def exact(self):
        """Sequential solution u_0..u_N, shape (N+1, m)."""
        return self.u0 * self.lam ** np.arange(self.n_steps + 1)[:, None]


class LinearRNN(Problem):
    """Linear RNN u_{i+1} = A u_i + b_i with a time-dependent input b_i (shape (N, m)).

    Coarse step over ``span`` fine steps: ``"ideal"`` = A^span u + Σ_k A^(span-1-k) b_{t+k}
    (exactly ``span`` fine steps: two-level MGRIT converges in one iteration) or ``"euler"``:
    backward Euler of u' = (A - I) u + b with step span and the injected input b_t.
    """

    def __init__(self, A, b, u0=None, coarse="euler"):
        A, b = np.asarray(A, float), np.asarray(b, float)
        m = A.shape[0]
        if A.shape != (m, m) or b.ndim != 2 or b.shape[1] != m:
            raise ValueError(f"A must be (m, m) and b (N, m); got {A.shape} and {b.shape}")
        super().__init__((m,), np.float64, b.shape[0])
        self.A, self.b, self.coarse = A, b, coarse
        self.u0 = np.zeros(m) if u0 is None else np.asarray(u0, float)
        self._inv = {}

    def initial(self):
        return self.u0.copy()

    def step(self, level, u, t, span, out, g=None, store=False):
        t = np.asarray(t)
        if level == 0:
            out[...] = u @ self.A.T + self.b[t]
        elif self.coarse == "ideal":
            v = u.copy()
            for k in range(span):                            # exactly span fine steps
                tk = np.minimum(t + k, self.n_steps - 1)
                v = v @ self.A.T + self.b[tk]
            out[...] = v
        elif self.coarse == "euler":
            if span not in self._inv:                        # (I - span (A - I))^-1, cached
                m = self.A.shape[0]
                self._inv[span] = np.linalg.inv(np.eye(m) - span * (self.A - np.eye(m)))
            out[...] = (u + span * self.b[t]) @ self._inv[span].T
        else:
            raise ValueError(f"coarse must be 'ideal' or 'euler', got {self.coarse!r}")
        if g is not None:
            out += g

    def exact(self):
        u = np.empty((self.n_steps + 1,) + self.shape)
        u[0] = self.u0
        for i in range(self.n_steps):
            u[i + 1] = self.A @ u[i] + self.b[i]
        return u
