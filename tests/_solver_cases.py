"""Small problems the solver tests share.

Forward solves: a contractive linear RNN (`LinearRNN`), and a random GRU with its serial states
and its MGRIT problem. Backward solves: a random GRU with inputs and cotangents, and its BPTT
gradients.
"""
import numpy as np

from mgrit_gru import gru_backward, gru_forward, init_gru
from mgrit_gru.mgrit import MGRIT, LinearRNN
from mgrit_gru.problems import GRUForwardProblem

I, H, B = 3, 5, 2                                            # the sizes of gradient_case
TIGHT = dict(tol=1e-13, max_iter=60)                         # solves to round-off


def linear_rnn(n_steps=64, m=3, seed=0, coarse="euler"):
    """A contractive linear RNN u+ = A u + b_t with random inputs and a random u_0."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    A = Q @ np.diag(np.linspace(0.5, 0.95, m)) @ Q.T        # symmetric, eigenvalues in (0, 1)
    return LinearRNN(A, rng.standard_normal((n_steps, m)), u0=rng.standard_normal(m),
                     coarse=coarse)


def gru_case(T, cell="classic", L=1, B=2, I=3, H=4, seed=0, dtype=np.float64):
    """Random GRU, inputs, h_0; the serial states hs (T+1, L, B, H) and the MGRIT problem."""
    params = init_gru(I, H, L, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((L, B, H))).astype(dtype)
    y, h_T, cache = gru_forward(params, x, h0, cell=cell)
    problem = GRUForwardProblem(params, x, h0, T, cell=cell)
    return params, x, h0, cache["hs"], problem


def solve(problem, u_init=None, **options):
    return MGRIT(problem, **options).solve(u_init)


def c_point_residuals(problem, u, cf):
    """r_i = Φ(u_{i-1}) - u_i at the fine C-points i = cf, 2 cf, ... of a returned solution."""
    idx = np.arange(cf, problem.n_steps + 1, cf)
    phi = problem.vec.zeros(len(idx))
    problem.step(0, u[idx - 1], range(cf - 1, idx[-1], cf), 1, phi)
    return phi - u[idx]


def gradient_case(T, layers, seed=0, dtype=np.float64, dt_scale=1.0):
    """Random GRU (I inputs, H hidden, batch B), x, h_0 and the cotangents dy, dh_T."""
    params = init_gru(I, H, layers, seed=seed + 1, dtype=dtype)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, B, I)).astype(dtype)
    h0 = (0.5 * rng.normal(size=(layers, B, H))).astype(dtype)
    dy = rng.normal(size=(T, B, H)).astype(dtype)
    dh_T = rng.normal(size=(layers, B, H)).astype(dtype)
    return params, x, h0, dy, dh_T


def bptt(params, x, h0, dy, dh_T, cell="classic", dt=1.0):
    """The serial gradients (grads, dx, dh0) by backpropagation through time."""
    cache = gru_forward(params, x, h0, cell=cell, dt=dt)[2]
    return gru_backward(params, cache, dy=dy, dh_T=dh_T)
