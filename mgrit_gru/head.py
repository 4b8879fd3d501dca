"""Classifier head: a linear layer on the final top-layer state, softmax cross-entropy.

Forward and backward side by side, like the GRU step::

    logits = h_T[-1] W_outᵀ + b_out                (B, C)
    p      = softmax(logits)
    loss   = -mean_b log p[b, y_b]
    dlogits = (p - onehot(y)) / B                  (the classic softmax-CE gradient)
"""
from __future__ import annotations

import numpy as np

from .checks import float_dtype, positive_int


def init_head(hidden_size, num_classes, seed=0, dtype=np.float64):
    """Head parameters ``{"weight_out": (C, H), "bias_out": (C,)}``, U(-1/sqrt(H), 1/sqrt(H))."""
    positive_int(hidden_size, "hidden_size")
    positive_int(num_classes, "num_classes")
    dtype = float_dtype(dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden_size)
    return {"weight_out": rng.uniform(-bound, bound, (num_classes, hidden_size)).astype(dtype),
            "bias_out": rng.uniform(-bound, bound, (num_classes,)).astype(dtype)}


def head_forward(head, h_top, labels):
    """Mean softmax cross-entropy of the logits ``h_top W_outᵀ + b_out`` against ``labels``.

    Parameters
    ----------
    head : dict
        From `init_head`.
    h_top : ndarray (B, H)
        The top layer's final state.
    labels : ndarray of int (B,)
        Class indices in ``[0, C)``.

    Returns
    -------
    loss : float
    logits : ndarray (B, C)
    cache : dict for `head_backward`
    """
    W, b = head["weight_out"], head["bias_out"]
    h_top = np.asarray(h_top)
    if W.ndim != 2 or b.shape != (W.shape[0],):
        raise ValueError(f"head must hold weight_out (C, H) and bias_out (C,), got "
                         f"{W.shape} and {b.shape}")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
        raise ValueError("head's weight_out or bias_out contains NaN or Inf")
    if h_top.ndim != 2 or h_top.shape[1] != W.shape[1] or h_top.shape[0] < 1:
        raise ValueError(f"h_top must have shape (B, {W.shape[1]}) with B >= 1, got {h_top.shape}")
    if not np.all(np.isfinite(h_top)):
        raise ValueError("h_top contains NaN or Inf")
    labels = np.asarray(labels)
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
    return float(loss), logits, {"h_top": h_top.copy(), "p": np.exp(logp),  # copies: the caller
                                 "labels": labels.copy()}                 # may reuse its buffers


def head_backward(head, cache):
    """Gradients of `head_forward`'s loss: ``(grads, dh_top)``."""
    p, labels, h_top = cache["p"], cache["labels"], cache["h_top"]
    B = p.shape[0]
    dlogits = p.copy()
    dlogits[np.arange(B), labels] -= 1.0                     # softmax-CE: p - onehot(y)
    dlogits /= B                                             # mean over the batch
    grads = {"weight_out": dlogits.T @ h_top, "bias_out": dlogits.sum(axis=0)}
    return grads, dlogits @ head["weight_out"]
