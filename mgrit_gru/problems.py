"""The GRU forward pass as an MGRIT problem.

Fine level: the chosen cell (classic or implicit) with the user's dt (1 = nn.GRU). Level l: the
implicit cell with dt multiplied by the step's span (cf^l), which stays a contraction for large
steps. The layer-0 input of a coarse step is the fine input projection at the interval start
("inject", as in the paper) or its average over the interval ("average"); both are read from the
precomputed table gx0 = W_ih_l0 x_t + b_ih_l0, never recomputed.

States are stored point-first, (n, L, B, H); the GRU functions want the layer axis first, so the
problem hands them transposed views (no copies).

Under MPI a problem holds only the rows of x its rank needs: the steps into its own points plus a
short halo on the left (coarse steps that start left of its first point), ``t_offset`` rows in.
"""
from __future__ import annotations

import numpy as np

from .checks import choice, gru_dims
from .gru import (cell_update, input_gradient, param_grads, step_backward, step_forward,
                  step_workspace)
from .mgrit.options import COARSE_INPUTS
from .mgrit.problem import Problem

GATES = ("r", "z", "n", "ghn")


def _layer_first(a):
    """(n, L, B, H) -> (L, n, B, H) view."""
    return a.transpose(1, 0, 2, 3)


CHUNK_ELEMS = 1 << 16
"""Elements of one layer's states per chunk (256 KiB in float32): big enough for one efficient
GEMM, small enough that the gate arithmetic stays in cache (at B=32, H=256 a chunked batched
step costs about half of one in one piece)."""


def _chunks(n, row_elems):
    """Split n intervals into ranges [a, b) of about CHUNK_ELEMS elements per layer."""
    m = max(1, CHUNK_ELEMS // row_elems)
    return [(a, min(a + m, n)) for a in range(0, n, m)]


def _flat(a):
    """(m, L, B, X) (any strides) -> contiguous (L, m·B, X): every layer one 2-D GEMM operand."""
    m, L, B, X = a.shape
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(L, m * B, X)


def _unflat(a, m):
    """(L, m·B, X) -> (m, L, B, X) view, to write back into a level's rows."""
    L, mB, X = a.shape
    return a.reshape(L, m, mB // m, X).transpose(1, 0, 2, 3)


class GRUForwardBase(Problem):
    """What the NumPy and the CUDA forward problems share: state shape (L, B, H), the options,
    u_0 = h_0, and from which fine step on `store` keeps the gates (``store_from``)."""

    def __init__(self, params, x, h0, n_steps, cell, dt, coarse_input, t_offset, store_from):
        L, _, H, dtype = gru_dims(params)
        super().__init__((L, x.shape[1], H), dtype, n_steps)
        choice(coarse_input, "coarse_input", COARSE_INPUTS)
        self.params, self.cell, self.dt, self.coarse_input = params, cell, dt, coarse_input
        self.h0, self.t_offset = h0, int(t_offset)
        self.store_from = self.t_offset if store_from is None else int(store_from)
        self._avg = {}                                       # coarse input tables per span

    def initial(self):
        return self.h0.copy()


class GRUForwardProblem(GRUForwardBase):
    """u_{i+1} = Φ(u_i, x_i) for the stacked GRU; state shape (L, B, H).

    Parameters
    ----------
    params : dict
        GRU parameters (`init_gru` names).
    x : ndarray (T_local, B, I)
        Inputs for fine steps ``t_offset .. t_offset + T_local - 1``.
    h0 : ndarray (L, B, H)
    n_steps : int
        Total fine steps T of the whole sequence.
    cell : {"classic", "implicit"}
        Fine-level cell (coarse levels always use "implicit").
    dt : float
        Fine step size.
    coarse_input : {"inject", "average"}
    t_offset : int
        Fine step index of ``x[0]``.
    store_from : int
        First fine step whose gates `store` keeps (this rank's first own step).
    """

    def __init__(self, params, x, h0, n_steps, cell="classic", dt=1.0, coarse_input="inject",
                 t_offset=0, store_from=None):
        super().__init__(params, x, h0, n_steps, cell, dt, coarse_input, t_offset, store_from)
        L, B, H = self.shape
        W_ih0, b_ih0 = params["weight_ih_l0"], params["bias_ih_l0"]
        T_loc = x.shape[0]
        self.x = x
        self.gx0 = (x.reshape(T_loc * B, -1) @ W_ih0.T + b_ih0).reshape(T_loc, B, 3 * H)
        self._cumsum = None                                  # for interval averages, lazily
        n_store = self.t_offset + T_loc - self.store_from
        self.gates = {g: np.empty((n_store, L, B, H), self.dtype) for g in GATES}
        self._ws = {}

    def _rows(self, table, t, offset):
        """Rows of ``table`` for the fine indices in range ``t`` (a view)."""
        a = t.start - offset
        if a < 0 or (len(t) and t[-1] - offset >= table.shape[0]):
            raise IndexError(f"fine steps {t.start}..{t[-1] if len(t) else t.start} are outside "
                             f"this rank's input rows {offset}..{offset + table.shape[0] - 1}")
        return table[a: a + t.step * (len(t) - 1) + 1: t.step]

    def coarse_gx0(self, t, span):
        """Layer-0 input projection of coarse steps starting at fine indices t over ``span``."""
        if self.coarse_input == "inject":
            return self._rows(self.gx0, t, self.t_offset)
        if span not in self._avg:                            # average over [t, t + span)
            if self._cumsum is None:
                self._cumsum = np.concatenate([np.zeros_like(self.gx0[:1]),
                                               np.cumsum(self.gx0, axis=0, dtype=np.float64)])
            cs = self._cumsum
            avg = (cs[span:] - cs[:-span]) / span            # row a = mean of gx0[a : a + span]
            self._avg[span] = avg.astype(self.dtype)
        return self._rows(self._avg[span], t, self.t_offset)

    def _work(self, rows):
        """Scratch arrays for `step_forward` over ``rows`` batch rows (kept per size)."""
        if rows not in self._ws:
            L, _, H = self.shape
            self._ws[rows] = step_workspace(L, (rows,), H, self.dtype)
        return self._ws[rows]

    def step(self, level, u, t, span, out, g=None, store=False):
        if level == 0:
            gx, cell, dt = self._rows(self.gx0, t, self.t_offset), self.cell, self.dt
        else:
            gx, cell, dt = self.coarse_gx0(t, span), "implicit", self.dt * span
        L, B, H = self.shape
        store = store and level == 0
        if store:
            tables = {k: self._rows(v, t, self.store_from) for k, v in self.gates.items()}
        for a, b in _chunks(len(t), B * H):                  # intervals a..b-1: 2-D GEMMs
            m = b - a
            gx_c = np.ascontiguousarray(gx[a:b]).reshape(m * B, 3 * H)
            gates = {k: np.empty((L, m * B, H), self.dtype) for k in GATES} if store else None
            h_new = step_forward(self.params, gx_c, _flat(u[a:b]), cell, dt, gates=gates,
                                 work=self._work(m * B))[0]
            out[a:b] = _unflat(h_new, m)
            if store:
                for k in GATES:
                    tables[k][a:b] = _unflat(gates[k], m)
        if g is not None:
            out += g


def _rows_down(table, first, n, step):
    """Rows first, first - step, ... (n of them) of ``table``: a view with a negative stride."""
    if n == 0:
        return table[first:first]
    stop = first - step * (n - 1) - 1
    return table[first: (stop if stop >= 0 else None): -step]


class GRUAdjointProblem(Problem):
    """The backward pass as a linear time-stepping problem in reversed time.

    With λ_i = ∂L/∂u_i accumulated backward (docs/theory/backward.md)::

        λ_N = ∂L/∂u_N,    λ_i = (∂Φ_i/∂u_i)ᵀ λ_{i+1} + f_i,    f_i = dy_{i-1} on the top layer

    and solver time s = N - i, the step into point s is the VJP of forward step i = N - s. Fine
    level: the VJP at the stored forward states and gates (nothing recomputed). Level l: the VJP
    of the coarse implicit step (dt · span), linearised at the forward state at the interval's
    start u_{N-s}, with the injected input. ``store=True`` keeps each fine step's cotangents on its
    input and hidden projections, from which the parameter gradients are one matmul.

    Parameters
    ----------
    fwd : GRUForwardProblem
        The forward problem (parameters, input projections, stored gates).
    states : ndarray (n, L, B, H)
        Forward solution at points ``states_first .. states_first + n - 1``.
    states_first : int
    dy : ndarray (rows, B, H) or None
        Output cotangents for outputs ``dy_first ..``.
    dy_first : int
    dh_T : ndarray (L, B, H) or None
    """

    def __init__(self, fwd, states, states_first, dy, dy_first, dh_T):
        super().__init__(fwd.shape, fwd.dtype, fwd.n_steps)
        self.fwd, self.states, self.states_first = fwd, states, int(states_first)
        self.dy, self.dy_first, self.dh_T = dy, int(dy_first), dh_T
        self.L = fwd.shape[0]
        n_store = fwd.gates["r"].shape[0]
        H3 = 3 * fwd.shape[2]
        self.dgx = [np.empty((n_store,) + fwd.shape[1:2] + (H3,), fwd.dtype) for _ in range(self.L)]
        self.dgh = [np.empty_like(a) for a in self.dgx]

    def initial(self):
        lam = np.zeros(self.shape, self.dtype) if self.dh_T is None else self.dh_T.copy()
        self._add_forcing(lam[None], range(self.n_steps, self.n_steps + 1))
        return lam

    def initial_guess(self, level, t):
        return np.zeros((len(t),) + self.shape, self.dtype)

    def _add_forcing(self, out, i):
        """out[k] += f_{i_k}: dy_{i-1} on the top layer, for the forward points i (a range)."""
        if self.dy is None or len(i) == 0:
            return
        i = range(i.start, i.stop, i.step) if i[-1] >= 1 else range(i.start, 0, i.step)
        if len(i) == 0:
            return
        rows = i.start - 1 - self.dy_first
        out[:len(i), self.L - 1] += _rows_down(self.dy, rows, len(i), -i.step) \
            if i.step < 0 else self.dy[rows: rows + i.step * (len(i) - 1) + 1: i.step]

    def step(self, level, u, t, span, out, g=None, store=False):
        N, fwd = self.n_steps, self.fwd
        n = len(t)
        L, B, H = self.shape
        i0 = N - (t.start + span)                            # forward step of the first target
        states = _rows_down(self.states, i0 - self.states_first, n, t.step)   # u_i of each step
        if level == 0:
            tables = {k: _rows_down(v, i0 - fwd.store_from, n, t.step) for k, v in fwd.gates.items()}
            cell, dt = fwd.cell, fwd.dt
        else:
            gx = _rows_down(fwd.gx0, i0 - fwd.t_offset, n, t.step)   # injected input
            cell, dt = "implicit", fwd.dt * span
        store = store and level == 0
        if store:
            d_tables = ([_rows_down(d, i0 - fwd.store_from, n, t.step) for d in self.dgx],
                        [_rows_down(d, i0 - fwd.store_from, n, t.step) for d in self.dgh])
        for a, b in _chunks(n, B * H):                       # intervals a..b-1: 2-D GEMMs
            m = b - a
            h = _flat(states[a:b])
            if level == 0:
                # stored gates of forward steps i0, i0 - step, ...; h⁺ = Φ(u_i) as they give it,
                # not the iterate u_{i+1}: the two differ at C-points until MGRIT has converged,
                # and the VJP of Φ at u_i needs Φ(u_i) (the implicit cell's ∂h⁺/∂z uses h⁺)
                gates = {k: _flat(v[a:b]) for k, v in tables.items()}
                h_new = cell_update(h, gates["z"], gates["n"], cell, dt)
                caches = [{"r": gates["r"][k], "z": gates["z"][k], "n": gates["n"][k],
                           "ghn": gates["ghn"][k], "h": h[k], "h_new": h_new[k]}
                          for k in range(L)]
            else:                                            # re-linearise at u_{i0}
                gx_c = np.ascontiguousarray(gx[a:b]).reshape(m * B, 3 * H)
                caches = step_forward(fwd.params, gx_c, h, cell, dt)[1]
            dh, dgx, dgh = step_backward(fwd.params, caches, _flat(u[a:b]), cell, dt)
            out[a:b] = _unflat(dh, m)
            if store:
                for k in range(L):
                    d_tables[0][k][a:b] = dgx[k].reshape(m, B, 3 * H)
                    d_tables[1][k][a:b] = dgh[k].reshape(m, B, 3 * H)
        self._add_forcing(out, range(i0, i0 - t.step * n, -t.step))
        if g is not None:
            out += g

    def gradients(self, lo, hi, dx_on_device=False, input_grad=True):
        """Parameter gradients and dx of the steps this problem stored (``store=True``): the
        forward steps ``store_from .. hi - 1`` of a forward solve owning points ``lo .. hi``.

        One matmul per tensor over all those steps (`param_grads`); layer k >= 1 took Φ(u_i)'s
        layer k-1 as its input, rebuilt from the gates (the iterate's u_{i+1} differs from it
        at C-points until the forward solve has converged).
        """
        fwd, states = self.fwd, self.states
        first = fwd.store_from
        steps = slice(first - self.states_first, hi - self.states_first)   # rows of u_i
        x_rows = fwd.x[first - fwd.t_offset: hi - fwd.t_offset]
        g = fwd.gates
        inputs = [x_rows] + [cell_update(states[steps, k - 1], g["z"][:, k - 1],
                                         g["n"][:, k - 1], fwd.cell, fwd.dt)
                             for k in range(1, self.L)]
        grads = param_grads(fwd.params, inputs, [states[steps, k] for k in range(self.L)],
                            self.dgx, self.dgh)
        dx = input_gradient(fwd.params, self.dgx[0]) if input_grad else None
        return grads, dx
