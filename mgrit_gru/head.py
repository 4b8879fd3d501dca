"""Classifier head: a linear layer on the final top-layer state, softmax cross-entropy.

Forward and backward side by side, like the GRU step::

    logits = h_T[-1] W_outᵀ + b_out                (B, C)
    p      = softmax(logits)
    loss   = -mean_b log p[b, y_b]
    dlogits = (p - onehot(y)) / B                  (the classic softmax-CE gradient)
"""
from __future__ import annotations

import numpy as np

from .checks import float_dtype, positive_int, real_array


def init_head(hidden_size, num_classes, seed=0, dtype=np.float64):
    """Head parameters ``{"weight_out": (C, H), "bias_out": (C,)}``, U(-1/sqrt(H), 1/sqrt(H))."""
    positive_int(hidden_size, "hidden_size")
    positive_int(num_classes, "num_classes")
    dtype = float_dtype(dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden_size)
    return {"weight_out": rng.uniform(-bound, bound, (num_classes, hidden_size)).astype(dtype),
            "bias_out": rng.uniform(-bound, bound, (num_classes,)).astype(dtype)}


def _check_head(head):
    """``(W_out, b_out)`` of a head dict, checked.

    Raises
    ------
    ValueError
        Naming the entry unless ``head`` is a dict holding ``weight_out`` (C, H) and
        ``bias_out`` (C,), C, H >= 1: finite float32 or float64 ndarrays of one dtype (lists,
        integer and complex arrays are refused).
    """
    if not isinstance(head, dict):
        raise ValueError(f"head must be a dict with weight_out and bias_out, got "
                         f"{type(head).__name__}")
    for k in ("weight_out", "bias_out"):
        if k not in head:
            raise ValueError(f"head is missing {k!r}")
        v = head[k]
        if not isinstance(v, np.ndarray) or v.dtype not in (np.float32, np.float64):
            raise ValueError(f"head[{k!r}] must be a float32 or float64 ndarray, got "
                             f"{getattr(v, 'dtype', type(v).__name__)}")
    W, b = head["weight_out"], head["bias_out"]
    if W.ndim != 2 or W.size == 0 or b.shape != (W.shape[0],):
        raise ValueError(f"head must hold weight_out (C, H) and bias_out (C,) with C, H >= 1, "
                         f"got {W.shape} and {b.shape}")
    if W.dtype != b.dtype:
        raise ValueError(f"head's weight_out is {W.dtype} but bias_out {b.dtype}: they must "
                         "share one dtype")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
        raise ValueError("head's weight_out or bias_out contains NaN or Inf")
    return W, b


def head_forward(head, h_top, labels):
    """Mean softmax cross-entropy of the logits ``h_top W_outᵀ + b_out`` against ``labels``.

    Parameters
    ----------
    head : dict
        From `init_head`: ``weight_out`` (C, H) and ``bias_out`` (C,), finite float32 or
        float64 ndarrays of one dtype.
    h_top : array_like (B, H) of real numbers
        The top layer's final state, cast to the head's dtype (complex refused).
    labels : array_like of int (B,)
        Class indices in ``[0, C)``.

    Returns
    -------
    loss : float
    logits : ndarray (B, C)
        In the head's dtype.
    cache : dict for `head_backward`

    Raises
    ------
    ValueError
        Naming ``head`` (or its entry), ``h_top`` or ``labels`` if it has the wrong type,
        dtype or shape, holds NaN or Inf, or a label is out of range.
    """
    W, b = _check_head(head)
    h_top = real_array(h_top, "h_top")
    if h_top.ndim != 2 or h_top.shape[1] != W.shape[1] or h_top.shape[0] < 1:
        raise ValueError(f"h_top must have shape (B, {W.shape[1]}) with B >= 1, got {h_top.shape}")
    with np.errstate(over="ignore"):                         # too large: Inf, refused below
        h_top = np.array(h_top, dtype=W.dtype)               # a copy: the cache keeps it
    if not np.all(np.isfinite(h_top)):
        raise ValueError("h_top contains NaN or Inf")
    labels = real_array(labels, "labels")
    if labels.shape != (h_top.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({h_top.shape[0]},), "
                         f"got {labels.dtype} {labels.shape}")
    C = W.shape[0]
    if labels.size and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must lie in [0, {C}), got range [{labels.min()}, {labels.max()}]")
    logits = h_top @ W.T + b
    shifted = logits - logits.max(axis=1, keepdims=True)     # log-sum-exp without overflow
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    B = h_top.shape[0]
    loss = -logp[np.arange(B), labels].mean()
    return float(loss), logits, {"h_top": h_top, "p": np.exp(logp),   # copies: the caller
                                 "labels": labels.copy()}            # may reuse its buffers


def head_backward(head, cache):
    """Gradients of `head_forward`'s loss.

    Parameters
    ----------
    head : dict
        The head given to `head_forward`.
    cache : dict
        `head_forward`'s third result.

    Returns
    -------
    grads : dict
        ``weight_out`` (C, H) and ``bias_out`` (C,), in the head's dtype.
    dh_top : ndarray (B, H)

    Raises
    ------
    ValueError
        Naming ``head`` (as in `head_forward`) or ``cache`` if it is not a cache of
        `head_forward` for a head of this shape and dtype.
    """
    W, _ = _check_head(head)
    keys = ("p", "labels", "h_top")
    if not isinstance(cache, dict) or any(not isinstance(cache.get(k), np.ndarray) for k in keys):
        raise ValueError("cache must be the dict of arrays p, labels, h_top from head_forward")
    p, labels, h_top = (cache[k] for k in keys)
    B, (C, H) = p.shape[0] if p.ndim else -1, W.shape
    if (p.shape != (B, C) or h_top.shape != (B, H) or labels.shape != (B,)
            or p.dtype != W.dtype or h_top.dtype != W.dtype
            or not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"cache does not match head (weight_out {W.dtype} {W.shape}): p "
                         f"{p.dtype} {p.shape}, h_top {h_top.dtype} {h_top.shape}, labels "
                         f"{labels.dtype} {labels.shape}")
    dlogits = p.copy()
    dlogits[np.arange(B), labels] -= 1.0                     # softmax-CE: p - onehot(y)
    dlogits /= B                                             # mean over the batch
    grads = {"weight_out": dlogits.T @ h_top, "bias_out": dlogits.sum(axis=0)}
    return grads, dlogits @ head["weight_out"]
