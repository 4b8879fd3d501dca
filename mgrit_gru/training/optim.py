"""Optimisers in NumPy with PyTorch semantics: SGD (momentum, Nesterov), Adam, gradient clipping.

Parameters and gradients are ``dict[str, np.ndarray]`` with the same keys (the names of
`init_gru` and `init_head`). Updates are in place, in the parameters' own dtype (float32 stays
float32), and follow ``torch.optim.SGD`` / ``torch.optim.Adam`` line by line, so a NumPy run and
a PyTorch run from the same start agree to round-off.

A step checks every gradient before it updates any parameter: the keys of the parameters, each a
real float array of its parameter's shape with no NaN or Inf. A gradient in another float dtype
is cast to its parameter's (float64 to float32 rounds, as the update is float32 anyway); integer
and complex gradients are refused rather than cast.

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
import numbers
from collections.abc import Mapping

import numpy as np

from ..checks import check_flag, int_at_least, nonneg_float, positive_float, real_array

PREFIX = "optim."


def _check_params(params):
    """Validate the parameter dict: non-empty, every value a writeable float ndarray (a
    read-only one would fail half-way through a step, after others were updated)."""
    if not isinstance(params, dict) or not params:
        raise ValueError("params must be a non-empty dict of name -> float ndarray")
    for name, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise ValueError(f"params[{name!r}] must be a float32 or float64 ndarray, "
                             f"got {getattr(p, 'dtype', type(p).__name__)}")
        if not p.flags.writeable:
            raise ValueError(f"params[{name!r}] is read-only, but is updated in place")
    return params


def _float_array(v, name):
    """``v`` as an ndarray of a real float dtype; ValueError naming ``name`` otherwise
    (integers, bools, complex numbers, objects, ragged lists)."""
    a = real_array(v, name)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a real float array, got dtype {a.dtype}")
    return a


def _check_grads(params, grads):
    """Validate all of ``grads`` against ``params`` before any update; return them as arrays in
    the parameters' dtypes.

    Each gradient must be a real float array of its parameter's shape. Another float dtype is
    cast to the parameter's (a float64 gradient of a float32 parameter is rounded, as the
    update is in float32 anyway); integer and complex gradients are refused, not cast. After
    the cast every entry must be finite (a float64 value beyond float32's range becomes Inf).
    """
    if not isinstance(grads, dict):
        raise ValueError(f"grads must be a dict with the keys of params, got {type(grads).__name__}")
    if set(grads) != set(params):
        missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the keys of params: missing {missing}, extra {extra}")
    out = {}
    for name, p in params.items():
        g = _float_array(grads[name], f"grads[{name!r}]")
        if g.shape != p.shape:
            raise ValueError(f"grads[{name!r}] has shape {g.shape}, params[{name!r}] {p.shape}")
        with np.errstate(over="ignore"):                     # too large: Inf, refused below
            g = g.astype(p.dtype, copy=False)
        if not np.isfinite(g).all():                         # one NaN would spread to p, m, v
            raise ValueError(f"grads[{name!r}] contains NaN or Inf")
        out[name] = g
    return out


def _betas(betas, name):
    """``betas`` as a pair of floats in [0, 1); ValueError naming ``name`` otherwise."""
    try:
        if isinstance(betas, str):                           # "09" would unpack to two digits
            raise TypeError
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):                          # a scalar, 3 values, "x"
        raise ValueError(f"{name} must be two numbers in [0, 1), got {betas!r}") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):                    # NaN fails too
        raise ValueError(f"{name} must lie in [0, 1), got {betas!r}")
    return b1, b2


class Optimizer:
    """Common part: the parameter dict, a step counter, and the flat state_dict format.

    Subclasses map each hyperparameter to its check in ``_hyper`` (``check(value, name)``
    returns the Python value or raises ValueError naming ``name``; the constructor and
    `load_state_dict` both go through it) and list their per-parameter buffers in
    ``_buffers``; a buffer that has not been created yet is simply absent from ``self.state``.
    """

    _hyper: dict = {}
    _buffers: tuple = ()
    _nonneg_buffers: tuple = ()                              # buffers that can never be < 0

    def __init__(self, params):
        self.params = _check_params(params)
        self.state = {b: {} for b in self._buffers}          # buffer -> param name -> array
        self.step_count = 0                                  # completed steps (Adam's t)

    def step(self, grads):                                   # pragma: no cover - abstract
        raise NotImplementedError

    def _check_hyper(self, values, prefix=""):
        """Every hyperparameter in ``values`` through its check (errors name ``prefix + name``),
        then `_check_together`; returns the checked values without setting them."""
        hyper = {h: check(values[h], prefix + h) for h, check in self._hyper.items()}
        self._check_together(hyper, prefix)
        return hyper

    def _set_hyper(self, hyper):
        for h, v in hyper.items():
            setattr(self, h, v)

    def _check_together(self, hyper, prefix):
        """Rules between hyperparameters (none by default)."""

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

        Everything is checked before anything is set, the hyperparameters by the constructor's
        own checks, so a bad state leaves the optimiser as it was.

        Raises
        ------
        ValueError
            Naming the key if the optimiser type differs, a key is missing, the step is not an
            integer >= 0, a hyperparameter fails the constructor's check, or a buffer does not
            match its parameter's shape or dtype, holds NaN or Inf, or (Adam's ``exp_avg_sq``)
            is negative.
        """
        if not isinstance(sd, Mapping):                      # a dict, or np.load's NpzFile
            raise ValueError(f"sd must be a dict of arrays, got {type(sd).__name__}")

        def get(key):
            if key not in sd:
                raise ValueError(f"optimizer state is missing {key!r}")
            v = np.asarray(sd[key])
            return v[()] if v.ndim == 0 else v               # 0-d: its scalar (np.bool_, ...)

        kind = str(get(f"{prefix}type"))
        if kind != type(self).__name__:
            raise ValueError(f"optimizer state is for {kind}, not {type(self).__name__}")
        step = int_at_least(get(f"{prefix}step"), f"{prefix}step", 0)
        hyper = self._check_hyper({h: get(f"{prefix}{h}") for h in self._hyper}, prefix)
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
            if not np.isfinite(v).all():
                raise ValueError(f"optimizer state {key!r} contains NaN or Inf")
            if b in self._nonneg_buffers and (v < 0).any():  # √v would be NaN
                raise ValueError(f"optimizer state {key!r} has negative entries")
            state[b][name] = v.copy()
        self.step_count = step
        self._set_hyper(hyper)
        self.state = state


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
        Nesterov momentum (needs ``momentum > 0``); a real bool, not a string such as "False".

    Raises
    ------
    ValueError
        Naming the argument that is out of range or of the wrong type.
    """

    _hyper = {"lr": positive_float, "momentum": nonneg_float, "weight_decay": nonneg_float,
              "nesterov": check_flag}
    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self._set_hyper(self._check_hyper(dict(lr=lr, momentum=momentum,
                                               weight_decay=weight_decay, nesterov=nesterov)))

    def _check_together(self, hyper, prefix):
        if hyper["nesterov"] and hyper["momentum"] == 0:
            raise ValueError(f"{prefix}nesterov=True needs {prefix}momentum > 0")

    def step(self, grads):
        """One update of every parameter from ``grads``; ``grads`` is not modified.

        Parameters
        ----------
        grads : dict of str -> ndarray
            The keys of ``params``, each a finite real float array of its parameter's shape
            (another float dtype is cast to the parameter's; see the module docstring).

        Raises
        ------
        ValueError
            Naming the gradient that is missing, extra, of the wrong shape or dtype, or holds
            NaN or Inf; all are checked first, so the parameters are then left untouched.
        """
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

    Raises
    ------
    ValueError
        Naming the argument that is out of range or of the wrong type.
    """

    _hyper = {"lr": positive_float, "betas": _betas,
              "eps": positive_float,                         # 0: 0/0 = NaN where g stays 0
              "weight_decay": nonneg_float}
    _buffers = ("exp_avg", "exp_avg_sq")
    _nonneg_buffers = ("exp_avg_sq",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self._set_hyper(self._check_hyper(dict(lr=lr, betas=betas, eps=eps,
                                               weight_decay=weight_decay)))

    def step(self, grads):
        """One update of every parameter from ``grads``; ``grads`` is not modified.

        Parameters
        ----------
        grads : dict of str -> ndarray
            As for `SGD.step`.

        Raises
        ------
        ValueError
            As for `SGD.step`; the parameters and the step count are then left untouched.
        """
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


def _check_norm_type(norm_type):
    """``norm_type`` as a float, 2.0 or inf; ValueError naming it otherwise."""
    if not isinstance(norm_type, numbers.Real) or norm_type not in (2, math.inf):  # no arrays
        raise ValueError(f"norm_type must be 2 or inf, got {norm_type!r}")
    return float(norm_type)


def _grad_arrays(grads, in_place=False):
    """The values of ``grads`` as real float arrays, ValueError naming the key otherwise; with
    ``in_place`` each must be a writeable ndarray (all checked before any is scaled)."""
    if not isinstance(grads, dict):
        raise ValueError(f"grads must be a dict of arrays, got {type(grads).__name__}")
    for name, g in grads.items():
        if in_place and not (isinstance(g, np.ndarray) and g.flags.writeable):
            got = "a read-only array" if isinstance(g, np.ndarray) else type(g).__name__
            raise ValueError(f"grads[{name!r}] must be a writeable ndarray (clipping is in "
                             f"place), got {got}")
    return [_float_array(g, f"grads[{name!r}]") for name, g in grads.items()]


def _norm(gs, norm_type):
    if norm_type == math.inf:                                # np.max keeps a NaN, max() may not
        return float(np.max([np.max(np.abs(g)) for g in gs if g.size] or [0.0]))
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in gs))


def grad_norm(grads, norm_type=2.0):
    """The joint norm of all gradients, accumulated in float64.

    Parameters
    ----------
    grads : dict of str -> array_like
        Real float arrays (integer and complex ones are refused, naming the key).
    norm_type : 2.0 or inf, optional

    Returns
    -------
    float
        NaN/Inf if a gradient has them.
    """
    norm_type = _check_norm_type(norm_type)
    return _norm(_grad_arrays(grads), norm_type)


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """Scale all gradients together so their joint norm is at most ``max_norm`` (in place).

    Like ``torch.nn.utils.clip_grad_norm_``: the total norm is the norm of the vector of all
    entries of all arrays; if it exceeds ``max_norm`` every array is multiplied by
    ``max_norm / (total_norm + 1e-6)``.

    Parameters
    ----------
    grads : dict of str -> ndarray
        Writeable float32/float64 arrays, modified in place (so integer arrays, which could
        not hold the result, are refused).
    max_norm : float > 0
    norm_type : 2.0 or inf, optional

    Returns
    -------
    float
        The total norm *before* clipping (NaN/Inf if a gradient has them; nothing is scaled then).

    Raises
    ------
    ValueError
        Naming ``max_norm``, ``norm_type`` or the gradient that is not a writeable real float
        ndarray; nothing is scaled then.
    """
    max_norm = positive_float(max_norm, "max_norm")
    total = _norm(_grad_arrays(grads, in_place=True), _check_norm_type(norm_type))
    if not math.isfinite(total):                             # inf * 0 would turn Inf into NaN:
        return total                                         # leave them as they are, say so
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef                                        # Python float: keeps g's dtype
    return total
