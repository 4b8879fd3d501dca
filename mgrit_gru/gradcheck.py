"""Gradient checking: hand-written gradients against central finite differences.

The tool works on any scalar function of a dict of arrays, so the same check that validates the
serial GRU backward pass (`check_gru_gradients`) later validates the MGRIT gradients::

    result = gradcheck(loss_fn, grad_fn, {"W": W, "x": x})
    print(result.table())
    assert result.ok

Central differences::

    ∂f/∂θ_i ≈ (f(θ + ε e_i) - f(θ - ε e_i)) / (2ε)        truncation O(ε²), round-off O(u/ε)

so with ε = 1e-6 in float64 (unit round-off u ≈ 1e-16) both are ≈ 1e-10 relative: an error above
1e-6 is a bug, not noise. That is why everything is evaluated in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .checks import nonneg_float, positive_float, positive_int
from .gru import gru_backward, gru_forward, init_gru


@dataclass
class GradcheckResult:
    """Per-tensor outcome of `gradcheck`.

    Attributes
    ----------
    errors : dict of str -> float
        Largest relative error found in each checked tensor (see `gradcheck` for the definition).
    checks : dict of str -> int
        Number of entries or directions checked per tensor.
    tol : float
        Tolerance the errors were compared with.
    mode : str
        ``"entries"`` (every entry) or ``"directions"`` (random directions).
    """

    errors: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    tol: float = 1e-6
    mode: str = "entries"

    @property
    def ok(self):
        """True when every tensor's error is at most `tol` (and none is NaN)."""
        return all(e <= self.tol for e in self.errors.values())  # NaN <= tol is False

    @property
    def max_error(self):
        """The largest error over all tensors (NaN if any is NaN: max() would skip it when
        it is not first)."""
        errs = list(self.errors.values())
        if any(math.isnan(e) for e in errs):
            return math.nan
        return max(errs, default=0.0)

    def table(self):
        """A plain-text table: tensor, number of checks, max relative error, ok/FAIL."""
        width = max([len("tensor")] + [len(k) for k in self.errors])
        unit = "entries" if self.mode == "entries" else "dirs"
        lines = [f"{'tensor':<{width}}  {unit:>7}  {'max rel. error':>14}  status",
                 "-" * (width + 34)]
        for name, err in self.errors.items():
            status = "ok" if err <= self.tol else "FAIL"
            lines.append(f"{name:<{width}}  {self.checks[name]:>7d}  {err:>14.3e}  {status}")
        lines.append("-" * (width + 34))
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"{verdict}: max relative error {self.max_error:.3e} (tol {self.tol:.1e})")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def gradcheck(loss_fn, grad_fn, inputs, wrt=None, eps=1e-6, n_directions=None, seed=0,
              tol=1e-6):
    """Check a gradient function against central finite differences of a scalar function.

    Like `scipy.optimize.check_grad`, but for functions of a dict of arrays and with a
    per-tensor report.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(inputs) -> float``: the scalar function, called with a dict like `inputs`.
    grad_fn : callable
        ``grad_fn(inputs) -> dict``: its gradient, one array per name in `wrt`, each of the
        same shape as the input it differentiates.
    inputs : dict of str -> array_like
        The point to check at. Entries named in `wrt` are copied to float64; the others (e.g.
        integer labels) are passed through unchanged. `inputs` itself is not modified.
    wrt : sequence of str, optional
        Names of the inputs to check; by default every entry of `inputs`.
    eps : float, optional
        Finite-difference step (float64: 1e-6 balances truncation and round-off).
    n_directions : int, optional
        If given, check this many random directions per tensor instead of every entry:
        compares ``<grad, v>`` with ``(f(θ + ε v) - f(θ - ε v)) / (2ε)`` for Gaussian ``v``.
        Costs ``2 n_directions`` function calls per tensor instead of two per entry.
    seed : int, optional
        Seed for the random directions.
    tol : float, optional
        A tensor passes when its error is at most `tol`.

    Returns
    -------
    GradcheckResult
        ``errors`` per tensor, ``ok``, and ``table()`` for printing.

    Notes
    -----
    The relative error of a tensor is measured against the size of its gradient, which keeps
    entries that are (nearly) zero from producing meaningless ratios:

    - entries:    ``max_i |g_i - f_i| / max(max_i |g_i|, max_i |f_i|)``
    - directions: ``max_v |<g, v> - f_v| / max(|g|_2 |v|_2, |f_v|)``

    with g the analytic gradient and f the finite differences. If both are exactly zero the
    error is the absolute difference (zero).

    Raises
    ------
    ValueError
        If `inputs` is not a dict, nothing is to be checked (no inputs, an empty `wrt`), a name
        in `wrt` is missing from `inputs` or from the gradient,
        a gradient has the wrong shape, or `eps`, `n_directions` or `tol` are not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from mgrit_gru import gradcheck
    >>> res = gradcheck(lambda p: float(np.sum(p["w"] ** 3)),
    ...                 lambda p: {"w": 3 * p["w"] ** 2}, {"w": np.arange(3.0)})
    >>> res.ok
    True
    """
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs must be a dict of arrays, got {type(inputs).__name__}")
    eps, tol = positive_float(eps, "eps"), nonneg_float(tol, "tol")
    if n_directions is not None:                             # 2.5 refused, not run twice
        n_directions = positive_int(n_directions, "n_directions")
    wrt = list(inputs) if wrt is None else list(wrt)
    if not wrt:                                              # nothing checked must not PASS
        raise ValueError("nothing to check: inputs is empty or wrt names no input")
    for name in wrt:
        if name not in inputs:
            raise ValueError(f"wrt names {name!r}, which is not in inputs")
    point = {k: (np.array(v, dtype=np.float64) if k in wrt else v) for k, v in inputs.items()}
    grads = grad_fn(point)
    for name in wrt:
        if name not in grads:
            raise ValueError(f"grad_fn did not return a gradient for {name!r}")
        if np.shape(grads[name]) != point[name].shape:
            raise ValueError(f"gradient of {name!r} has shape {np.shape(grads[name])}, "
                             f"the input {point[name].shape}")
    rng = np.random.default_rng(seed)
    result = GradcheckResult(tol=tol, mode="entries" if n_directions is None else "directions")

    def central(theta, v):
        """(f(θ + ε v) - f(θ - ε v)) / 2ε, perturbing `theta` in place and restoring it."""
        orig = theta.copy()
        theta += eps * v
        f_plus = float(loss_fn(point))
        theta[...] = orig - eps * v
        f_minus = float(loss_fn(point))
        theta[...] = orig                                    # leave the point unchanged
        return (f_plus - f_minus) / (2 * eps)

    for name in wrt:
        theta = point[name]
        g = np.asarray(grads[name], dtype=np.float64)
        if n_directions is None:
            fd = np.empty_like(g)
            e_i = np.zeros_like(theta)
            for i in np.ndindex(theta.shape):                # one unit vector e_i at a time
                e_i[i] = 1.0
                fd[i] = central(theta, e_i)
                e_i[i] = 0.0
            scale = max(np.abs(g).max(initial=0.0), np.abs(fd).max(initial=0.0))
            diff = np.abs(g - fd).max(initial=0.0)
            result.errors[name] = float(diff / scale) if scale > 0 else float(diff)
            result.checks[name] = int(theta.size)
        else:
            worst = 0.0
            for _ in range(n_directions):
                v = rng.standard_normal(theta.shape)
                fd_v = central(theta, v)
                g_v = float(np.sum(g * v))                   # analytic directional derivative
                scale = max(np.linalg.norm(g) * np.linalg.norm(v), abs(fd_v))
                err = abs(g_v - fd_v) / scale if scale > 0 else abs(g_v - fd_v)
                worst = max(worst, err) if np.isfinite(err) else np.nan
            result.errors[name] = float(worst)
            result.checks[name] = n_directions
    return result


def check_gru_gradients(cell="classic", num_layers=1, dt=1.0, seq_len=5, batch=2, input_size=3,
                        hidden_size=4, seed=0, tol=1e-6, n_directions=None, eps=1e-6):
    """Gradient-check `gru_forward`/`gru_backward` for every parameter, ``x`` and ``h0``.

    The scalar checked is a random-weighted sum of all outputs,
    ``L = Σ c_y ⊙ y + Σ c_h ⊙ h_T``, so that both cotangents ``dy = c_y`` and ``dh_T = c_h``
    are exercised. Everything is in float64.

    Parameters
    ----------
    cell : {"classic", "implicit"}
    num_layers : int
    dt : float
        Step size (``dt != 1`` checks the ODE-view terms).
    seq_len, batch, input_size, hidden_size : int
        Sizes T, B, I, H; small ones keep the all-entries check fast.
    seed : int
        Seeds parameters, inputs, initial states and the loss weights.
    tol : float
        Tolerance on each tensor's relative error.
    n_directions : int, optional
        Check random directions instead of every entry (for larger sizes).
    eps : float
        Finite-difference step.

    Returns
    -------
    GradcheckResult

    Examples
    --------
    >>> from mgrit_gru import check_gru_gradients
    >>> check_gru_gradients(cell="implicit", num_layers=2, dt=4.0).ok
    True
    """
    params = init_gru(input_size, hidden_size, num_layers, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((seq_len, batch, input_size))
    h0 = 0.5 * rng.standard_normal((num_layers, batch, hidden_size))  # nonzero: dh0 matters
    c_y = rng.standard_normal((seq_len, batch, hidden_size))          # loss weights on y
    c_h = rng.standard_normal((num_layers, batch, hidden_size))       # ... and on h_T
    inputs = dict(params, x=x, h0=h0)

    def split(p):
        return {k: p[k] for k in params}, p["x"], p["h0"]

    def loss_fn(p):
        prm, x_, h0_ = split(p)
        y, h_T, _ = gru_forward(prm, x_, h0_, cell=cell, dt=dt)
        return np.sum(c_y * y) + np.sum(c_h * h_T)

    def grad_fn(p):
        prm, x_, h0_ = split(p)
        _, _, cache = gru_forward(prm, x_, h0_, cell=cell, dt=dt)
        grads, dx, dh0 = gru_backward(prm, cache, dy=c_y, dh_T=c_h)
        return dict(grads, x=dx, h0=dh0)

    return gradcheck(loss_fn, grad_fn, inputs, eps=eps, n_directions=n_directions, seed=seed,
                     tol=tol)
