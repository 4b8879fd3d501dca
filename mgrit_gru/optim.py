"""Optimisers in NumPy with PyTorch semantics: SGD (momentum, Nesterov), Adam, gradient clipping.

Parameters and gradients are ``dict[str, np.ndarray]`` with the same keys (the names of
`init_gru` and `init_head`). Updates are in place, in the parameters' own dtype (float32 stays
float32), and follow ``torch.optim.SGD`` / ``torch.optim.Adam`` line by line, so a NumPy run and
a PyTorch run from the same start agree to round-off.

Weight decay is the *L2* kind of ``torch.optim.SGD`` and ``torch.optim.Adam``: ``wd * p`` is added
to the gradient before the update (for Adam it is then rescaled by the adaptive denominator; this
is not AdamW's decoupled decay).

Checkpoints: ``state_dict()`` returns a flat dict of NumPy arrays (hyperparameters as 0-d arrays,
buffers as ``optim.<buffer>.<param name>``) that can be stored in the same ``.npz`` as the
parameters; ``load_state_dict()`` restores it exactly, so a resumed run is bit-identical to an
uninterrupted one.
"""
from __future__ import annotations

import math

import numpy as np

from .checks import nonneg_float, positive_float

PREFIX = "optim."


def _check_params(params):
    """Validate the parameter dict: non-empty, every value a float ndarray."""
    if not isinstance(params, dict) or not params:
        raise ValueError("params must be a non-empty dict of name -> float ndarray")
    for name, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise ValueError(f"params[{name!r}] must be a float32 or float64 ndarray, "
                             f"got {getattr(p, 'dtype', type(p).__name__)}")
    return params


def _check_grads(params, grads):
    """Validate ``grads`` against ``params`` (same keys and shapes); return arrays in the
    parameters' dtypes (a float64 gradient for a float32 parameter is cast, like ``.to()``)."""
    if not isinstance(grads, dict):
        raise ValueError(f"grads must be a dict with the keys of params, got {type(grads).__name__}")
    if set(grads) != set(params):
        missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the keys of params: missing {missing}, extra {extra}")
    out = {}
    for name, p in params.items():
        g = np.asarray(grads[name])
        if g.shape != p.shape:
            raise ValueError(f"grads[{name!r}] has shape {g.shape}, params[{name!r}] {p.shape}")
        out[name] = g.astype(p.dtype, copy=False)
    return out


class Optimizer:
    """Common part: the parameter dict, a step counter, and the flat state_dict format.

    Subclasses list their hyperparameters in ``_hyper`` and their per-parameter buffers in
    ``_buffers``; a buffer that has not been created yet is simply absent from ``self.state``.
    """

    _hyper: tuple = ()
    _buffers: tuple = ()

    def __init__(self, params):
        self.params = _check_params(params)
        self.state = {b: {} for b in self._buffers}          # buffer -> param name -> array
        self.step_count = 0                                  # completed steps (Adam's t)

    def step(self, grads):                                   # pragma: no cover - abstract
        raise NotImplementedError

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self, prefix=PREFIX):
        """Flat dict of arrays: ``{prefix}type``, ``{prefix}step``, each hyperparameter, and
        ``{prefix}{buffer}.{param name}`` for each buffer (copies, safe to keep).

        All values are NumPy arrays (scalars 0-d), so ``np.savez(path, **params, **sd)`` stores
        them without pickling.
        """
        sd = {f"{prefix}type": np.array(type(self).__name__),
              f"{prefix}step": np.array(self.step_count, dtype=np.int64)}
        for h in self._hyper:
            sd[f"{prefix}{h}"] = np.array(getattr(self, h))  # floats, bools, tuples -> arrays
        for b, bufs in self.state.items():
            for name, v in bufs.items():
                sd[f"{prefix}{b}.{name}"] = v.copy()
        return sd

    def load_state_dict(self, sd, prefix=PREFIX):
        """Restore a `state_dict` (other keys in ``sd``, e.g. the parameters, are ignored).

        Raises ValueError naming the key if the optimiser type differs, a key is missing, or a
        buffer does not match its parameter's shape or dtype.
        """
        def get(key):
            if key not in sd:
                raise ValueError(f"optimizer state is missing {key!r}")
            return np.asarray(sd[key])

        kind = str(get(f"{prefix}type"))
        if kind != type(self).__name__:
            raise ValueError(f"optimizer state is for {kind}, not {type(self).__name__}")
        step = int(get(f"{prefix}step"))
        hyper = {h: get(f"{prefix}{h}") for h in self._hyper}
        state = {b: {} for b in self._buffers}
        for key in sd:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            b, dot, name = rest.partition(".")
            if not dot:                                      # a scalar entry, handled above
                continue
            if b not in state:
                raise ValueError(f"optimizer state has unknown buffer key {key!r}")
            if name not in self.params:
                raise ValueError(f"optimizer state key {key!r} names no parameter")
            v, p = np.asarray(sd[key]), self.params[name]
            if v.shape != p.shape or v.dtype != p.dtype:
                raise ValueError(f"optimizer state {key!r} is {v.dtype} {v.shape}, but the "
                                 f"parameter is {p.dtype} {p.shape}")
            state[b][name] = v.copy()
        self.step_count = step
        for h, v in hyper.items():
            self._set_hyper(h, v)
        self.state = state

    def _set_hyper(self, name, value):
        """Set a hyperparameter from its stored array, restoring its Python type exactly."""
        cur = getattr(self, name)
        if isinstance(cur, bool):
            setattr(self, name, bool(value))
        elif isinstance(cur, tuple):
            setattr(self, name, tuple(float(v) for v in value))
        else:
            setattr(self, name, float(value))


class SGD(Optimizer):
    """Stochastic gradient descent as ``torch.optim.SGD`` (dampening 0).

    Per parameter p with gradient g::

        g ← g + weight_decay · p                     (L2 weight decay)
        b ← g on the first step, else momentum · b + g
        g ← g + momentum · b  if nesterov, else b    (only when momentum > 0)
        p ← p − lr · g

    Parameters
    ----------
    params : dict of str -> ndarray
        Updated in place.
    lr : float > 0
    momentum : float >= 0, optional
    weight_decay : float >= 0, optional
    nesterov : bool, optional
        Nesterov momentum (needs ``momentum > 0``).
    """

    _hyper = ("lr", "momentum", "weight_decay", "nesterov")
    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.lr = positive_float(lr, "lr")
        self.momentum = nonneg_float(momentum, "momentum")
        self.weight_decay = nonneg_float(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def step(self, grads):
        """One update of every parameter from ``grads`` (same keys; not modified)."""
        grads = _check_grads(self.params, grads)
        bufs = self.state["momentum_buffer"]
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p                # new array: grads stay untouched
            if self.momentum:
                b = bufs.get(name)
                if b is None:
                    b = bufs[name] = g.copy()                # torch: buffer = clone(g) at first
                else:
                    b *= self.momentum
                    b += g
                g = g + self.momentum * b if self.nesterov else b
            p -= self.lr * g
        self.step_count += 1


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (amsgrad off, L2 weight decay).

    Per parameter p with gradient g, at step t = 1, 2, ...::

        g ← g + weight_decay · p
        m ← β1 m + (1 − β1) g                 v ← β2 v + (1 − β2) g²
        p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)

    m and v start at zero and are kept in the parameter's dtype.

    Parameters
    ----------
    params : dict of str -> ndarray
        Updated in place.
    lr : float > 0, optional
    betas : (float, float) in [0, 1), optional
    eps : float > 0, optional
    weight_decay : float >= 0, optional
    """

    _hyper = ("lr", "betas", "eps", "weight_decay")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = positive_float(lr, "lr")
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}") from None
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        self.betas = (b1, b2)
        self.eps = positive_float(eps, "eps")   # 0: 0/0 = NaN where g stays 0
        self.weight_decay = nonneg_float(weight_decay, "weight_decay")

    def step(self, grads):
        """One update of every parameter from ``grads`` (same keys; not modified)."""
        grads = _check_grads(self.params, grads)
        b1, b2 = self.betas
        self.step_count += 1
        t = self.step_count
        bias1 = 1.0 - b1 ** t                                # Python floats, as torch does
        bias2_sqrt = math.sqrt(1.0 - b2 ** t)
        step_size = self.lr / bias1
        m_all, v_all = self.state["exp_avg"], self.state["exp_avg_sq"]
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            m = m_all.setdefault(name, np.zeros_like(p))
            v = v_all.setdefault(name, np.zeros_like(p))
            m *= b1                                          # m ← β1 m + (1 − β1) g
            m += (1.0 - b1) * g
            v *= b2                                          # v ← β2 v + (1 − β2) g²
            v += (1.0 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= bias2_sqrt
            denom += self.eps
            p -= step_size * (m / denom)


def grad_norm(grads, norm_type=2.0):
    """The joint norm of all gradients (2 or inf), accumulated in float64; NaN/Inf if a
    gradient has them."""
    if norm_type not in (2, 2.0, math.inf):
        raise ValueError(f"norm_type must be 2 or inf, got {norm_type!r}")
    if not isinstance(grads, dict):
        raise ValueError(f"grads must be a dict of arrays, got {type(grads).__name__}")
    if norm_type == math.inf:                                # np.max keeps a NaN, max() may not
        return float(np.max([np.max(np.abs(g)) for g in grads.values() if np.size(g)] or [0.0]))
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """Scale all gradients together so their joint norm is at most ``max_norm`` (in place).

    Like ``torch.nn.utils.clip_grad_norm_``: the total norm is the norm of the vector of all
    entries of all arrays; if it exceeds ``max_norm`` every array is multiplied by
    ``max_norm / (total_norm + 1e-6)``.

    Parameters
    ----------
    grads : dict of str -> ndarray
        Modified in place.
    max_norm : float > 0
    norm_type : 2.0 or inf, optional

    Returns
    -------
    float
        The total norm *before* clipping (NaN/Inf if a gradient has them; nothing is scaled then).
    """
    max_norm = positive_float(max_norm, "max_norm")
    total = grad_norm(grads, norm_type)
    if not math.isfinite(total):                             # inf * 0 would turn Inf into NaN:
        return total                                         # leave them as they are, say so
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef                                        # Python float: keeps g's dtype
    return total
