"""The GRU as time stepping: cells, one step and its VJP side by side, serial forward and BPTT.

Conventions follow PyTorch ``nn.GRU`` (gate order r, z, n)::

    r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))

and the update is a step of size ``dt`` of the ODE  dh/dt = (1 - z) ⊙ (n - h):

    classic  (explicit Euler)   h⁺ = h + dt (1 - z) ⊙ (n - h)          (dt = 1: exactly nn.GRU)
    implicit (Moon & Cyr)       h⁺ = (h + dt (1 - z) ⊙ n) / (1 + dt (1 - z))

Stacked layers: the time-stepping state is every layer's hidden state, shape (L, B, H). One step
advances layer 0 with the input x_t, then layer k with layer k-1's *new* state.

Everything here is plain NumPy and works on arrays with any leading batch dimensions
(``(..., H)``), which is what lets the MGRIT solver advance all intervals in one call.
"""
from __future__ import annotations

import warnings

import numpy as np

from .checks import (CELLS, check_cell, check_cotangent, check_flag, check_sequence,
                     check_unchanged, float_dtype, gru_dims, int_at_least, positive_int,
                     require_cotangent)


# ----------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------
def init_gru(input_size, hidden_size, num_layers=1, seed=0, dtype=np.float64):
    """Random GRU parameters with PyTorch ``nn.GRU`` names, shapes and initialisation.

    Parameters
    ----------
    input_size : int
        Features per time step, I.
    hidden_size : int
        Hidden units per layer, H.
    num_layers : int, optional
        Stacked layers, L >= 1.
    seed : int, optional
        Seed of the NumPy generator; the same seed gives the same parameters.
    dtype : numpy dtype, optional
        ``np.float64`` (checks) or ``np.float32`` (speed).

    Returns
    -------
    dict of str -> ndarray
        ``weight_ih_l{k}`` (3H, I_k), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and
        ``bias_hh_l{k}`` (3H,), with I_0 = I and I_k = H for k > 0, drawn from
        U(-1/sqrt(H), 1/sqrt(H)) like PyTorch. ``torch_gru.load_state_dict({k: torch.from_numpy(v)})``
        accepts it unchanged.
    """
    input_size = positive_int(input_size, "input_size")
    hidden_size = positive_int(hidden_size, "hidden_size")
    num_layers = positive_int(num_layers, "num_layers")
    dtype = float_dtype(dtype)
    rng = np.random.default_rng(int_at_least(seed, "seed", 0))
    bound = 1.0 / np.sqrt(hidden_size)
    params = {}
    for k in range(num_layers):
        fan_in = input_size if k == 0 else hidden_size
        shapes = {f"weight_ih_l{k}": (3 * hidden_size, fan_in),
                  f"weight_hh_l{k}": (3 * hidden_size, hidden_size),
                  f"bias_ih_l{k}": (3 * hidden_size,),
                  f"bias_hh_l{k}": (3 * hidden_size,)}
        for name, shape in shapes.items():
            params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


def layer_params(params, k):
    """The four arrays of layer k: ``(W_ih, b_ih, W_hh, b_hh)``."""
    return (params[f"weight_ih_l{k}"], params[f"bias_ih_l{k}"],
            params[f"weight_hh_l{k}"], params[f"bias_hh_l{k}"])


# ----------------------------------------------------------------------------------------------
# one layer, one step: forward and its vector-Jacobian product side by side
# ----------------------------------------------------------------------------------------------
def sigmoid(a, out=None):
    """σ(a) = (1 + tanh(a/2)) / 2: no overflow for large |a|, one transcendental call."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def cell_forward(gx, h, W_hh, b_hh, cell="classic", dt=1.0, out=None):
    """One step of one GRU layer.

    Parameters
    ----------
    gx : ndarray (..., 3H)
        Input projection ``W_ih x + b_ih`` (precomputed for all t at once by the caller).
    h : ndarray (..., H)
        Old hidden state.
    W_hh, b_hh : ndarray (3H, H), (3H,)
    cell : {"classic", "implicit"}
    dt : float or ndarray broadcastable to (..., 1)
    out : dict, optional
        Arrays ``r, z, n, ghn, h_new`` of shape (..., H) to write into, and workspace ``gh``
        (..., 3H) and ``s`` (..., H): with all of them a step allocates nothing.

    Returns
    -------
    h_new : ndarray (..., H)
    cache : dict
        ``r, z, n, ghn`` (ghn = W_hn h + b_hn) and ``h``, ``h_new``: what `cell_backward` needs.
    """
    H = h.shape[-1]
    o = out if out is not None else {}
    gh = np.matmul(h, W_hh.T, out=o.get("gh"))               # (..., 3H): all three hidden gates
    gh += b_hh
    r = sigmoid(np.add(gx[..., :H], gh[..., :H], out=o.get("r")), out=o.get("r"))
    z = sigmoid(np.add(gx[..., H:2 * H], gh[..., H:2 * H], out=o.get("z")), out=o.get("z"))
    ghn = o.get("ghn")
    if ghn is None:
        ghn = gh[..., 2 * H:].copy()
    else:
        ghn[...] = gh[..., 2 * H:]
    n = np.multiply(r, ghn, out=o.get("n"))                  # r ⊙ (W_hn h + b_hn) ...
    n += gx[..., 2 * H:]                                     # ... + W_in x + b_in
    np.tanh(n, out=n)
    s = np.subtract(1.0, z, out=o.get("s"))                  # s = dt (1 - z): the step's weight
    s *= dt
    if cell == "classic":
        h_new = np.subtract(n, h, out=o.get("h_new"))        # h⁺ = h + s (n - h)
        h_new *= s
        h_new += h
    elif cell == "implicit":
        h_new = np.multiply(s, n, out=o.get("h_new"))        # h⁺ = (h + s n) / (1 + s)
        h_new += h
        s += 1.0
        h_new /= s
    else:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    return h_new, {"r": r, "z": z, "n": n, "ghn": ghn, "h": h, "h_new": h_new}


def cell_update(h, z, n, cell="classic", dt=1.0):
    """h⁺ from the old state and the gates z, n: the last line of `cell_forward` on its own.

    Lets a backward pass rebuild Φ(h) from stored gates instead of trusting a stored h⁺ (in an
    unconverged MGRIT iterate the stored next state is not Φ of the previous one at C-points).
    """
    s = dt * (1.0 - z)
    if cell == "classic":
        return h + s * (n - h)
    if cell == "implicit":
        return (h + s * n) / (1.0 + s)
    raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")


def cell_backward(dh_new, cache, W_hh, cell="classic", dt=1.0, out_dgx=None, out_dgh=None):
    """Vector-Jacobian product of `cell_forward`.

    Given the cotangent ``dh_new`` on h⁺, return the cotangents on the old state ``h``, on the
    input projection ``gx`` and on the hidden projection ``gh = W_hh h + b_hh``. Parameter
    gradients follow from the last two by one matmul over all steps:
    ``dW_ih += dgxᵀ x``, ``db_ih += Σ dgx``, ``dW_hh += dghᵀ h``, ``db_hh += Σ dgh``.

    Derivation (s = dt (1 - z), ∂s/∂z = -dt):

    - classic  h⁺ = h + s (n - h):   ∂h⁺/∂n = s,   ∂h⁺/∂z = -dt (n - h),   ∂h⁺/∂h|direct = 1 - s
    - implicit h⁺ = (h + s n)/(1+s): ∂h⁺/∂n = s/(1+s),   ∂h⁺/∂h|direct = 1/(1+s),
      ∂h⁺/∂s = (n - h⁺)/(1+s)  so  ∂h⁺/∂z = -dt (n - h⁺)/(1+s)
    - n = tanh(a_n), a_n = gx_n + r ⊙ ghn:  da_n = dn (1 - n²), dr = da_n ⊙ ghn, dghn = da_n ⊙ r
    - r = σ(a_r), z = σ(a_z):  da_r = dr r (1 - r),  da_z = dz z (1 - z)
    - a_r, a_z, a_n are linear in gx and in gh, so dgx = (da_r, da_z, da_n),
      dgh = (da_r, da_z, dghn) and dh = dh|direct + dgh W_hh.

    ``out_dgx``/``out_dgh`` (..., 3H), if given, receive dgx and dgh (e.g. rows of the whole
    sequence's arrays, so nothing is copied afterwards).
    """
    r, z, n, ghn, h, h_new = (cache[k] for k in ("r", "z", "n", "ghn", "h", "h_new"))
    s = dt * (1.0 - z)
    if cell == "classic":
        dn = dh_new * s
        dz = dh_new * (-dt) * (n - h)
        dh = dh_new * (1.0 - s)
    elif cell == "implicit":
        inv = 1.0 / (1.0 + s)
        dn = dh_new * s * inv
        dz = dh_new * (-dt) * (n - h_new) * inv
        dh = dh_new * inv
    else:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    da_n = dn * (1.0 - n * n)
    da_r = da_n * ghn * r * (1.0 - r)
    da_z = dz * z * (1.0 - z)
    H = r.shape[-1]
    dgx = np.empty(da_n.shape[:-1] + (3 * H,), da_n.dtype) if out_dgx is None else out_dgx
    dgh = np.empty_like(dgx) if out_dgh is None else out_dgh
    dgx[..., :H], dgx[..., H:2 * H], dgx[..., 2 * H:] = da_r, da_z, da_n
    dgh[..., :2 * H] = dgx[..., :2 * H]
    np.multiply(da_n, r, out=dgh[..., 2 * H:])               # ∂a_n/∂ghn = r
    dh += dgh @ W_hh                                         # through W_hr h, W_hz h, W_hn h
    return dh, dgx, dgh


# ----------------------------------------------------------------------------------------------
# all layers, one step (the time stepper Φ) and its VJP
# ----------------------------------------------------------------------------------------------
def step_forward(params, gx0, h, cell="classic", dt=1.0, h_new=None, gates=None, work=None):
    """One time step Φ of the stacked GRU.

    Parameters
    ----------
    gx0 : ndarray (..., 3H)
        Layer 0's input projection ``W_ih_l0 x_t + b_ih_l0``.
    h : ndarray (L, ..., H)
        All layers' old states (layer axis first).
    h_new : ndarray (L, ..., H), optional
        Where to write the new states (allocated if not given).
    gates : dict of ndarray (L, ..., H), optional
        Where to write ``r, z, n, ghn`` of every layer (for a later backward pass).
    work : list of dict, optional
        Per-layer workspace from `step_workspace` (no allocation per step).

    Returns
    -------
    h_new : ndarray (L, ..., H)
    caches : list of dict, one per layer, for `step_backward`
    """
    L = h.shape[0]
    h_new = np.empty_like(h) if h_new is None else h_new
    caches = []
    gx = gx0
    for k in range(L):
        W_ih, b_ih, W_hh, b_hh = layer_params(params, k)
        w = work[k] if work is not None else {}
        if k > 0:
            gx = np.matmul(h_new[k - 1], W_ih.T, out=w.get("gx"))  # layer k's input: k-1's h⁺
            gx += b_ih
        out = {"h_new": h_new[k], **{b: w[b] for b in ("gh", "s") if b in w}}
        if gates is not None:
            out.update((g, gates[g][k]) for g in ("r", "z", "n", "ghn"))
        caches.append(cell_forward(gx, h[k], W_hh, b_hh, cell, dt, out=out)[1])
    return h_new, caches


def step_workspace(L, lead_shape, H, dtype):
    """Per-layer scratch arrays for `step_forward` over states of shape (L, *lead_shape, H)."""
    return [{"gh": np.empty(lead_shape + (3 * H,), dtype), "s": np.empty(lead_shape + (H,), dtype),
             "gx": np.empty(lead_shape + (3 * H,), dtype)} for _ in range(L)]


def step_backward(params, caches, dh_new, cell="classic", dt=1.0, out_dgx=None, out_dgh=None):
    """VJP of `step_forward`: cotangent on the new states (L, ..., H) -> old states.

    Returns
    -------
    dh : ndarray (L, ..., H)
        Cotangent on the old states.
    dgx : list of ndarray (..., 3H)
        Per layer, the cotangent on its input projection (layer 0's gives dx = dgx W_ih_l0).
    dgh : list of ndarray (..., 3H)
        Per layer, the cotangent on its hidden projection.

    ``out_dgx``/``out_dgh`` (lists, one array per layer), if given, receive dgx and dgh.
    """
    L = len(caches)
    dh = np.empty_like(dh_new)
    dgx, dgh = [None] * L, [None] * L
    carry = None                                             # cotangent from layer k+1's input
    for k in reversed(range(L)):
        W_ih, _, W_hh, _ = layer_params(params, k)
        d = dh_new[k] if carry is None else dh_new[k] + carry
        dh[k], dgx[k], dgh[k] = cell_backward(d, caches[k], W_hh, cell, dt,
                                              None if out_dgx is None else out_dgx[k],
                                              None if out_dgh is None else out_dgh[k])
        if k > 0:
            carry = dgx[k] @ W_ih                            # layer k's input = layer k-1's h⁺
    return dh, dgx, dgh


# ----------------------------------------------------------------------------------------------
# whole sequences: serial forward and backpropagation through time (the reference)
# ----------------------------------------------------------------------------------------------
def gru_forward(params, x, h0=None, cell="classic", dt=1.0):
    """Serial forward pass of the stacked GRU over a whole sequence (the reference).

    Parameters
    ----------
    params : dict
        From `init_gru` (or a PyTorch ``nn.GRU`` state_dict converted to NumPy).
    x : ndarray (T, B, I)
        Inputs, time first. Converted to the parameters' dtype.
    h0 : ndarray (L, B, H), optional
        Initial states; zeros by default.
    cell : {"classic", "implicit"}
    dt : float > 0
        Step size of the ODE view; ``cell="classic", dt=1`` is ``nn.GRU``.

    Returns
    -------
    y : ndarray (T, B, H)
        Top layer's state after each step.
    h_T : ndarray (L, B, H)
        All layers' final states.
    cache : dict
        States and gate values of every step, for `gru_backward`.
    """
    L, I, H, dtype = gru_dims(params)
    x, h0 = check_sequence(x, h0, L, I, H, dtype)
    cell, dt = check_cell(cell, dt)
    T, B, _ = x.shape
    W_ih0, b_ih0 = params["weight_ih_l0"], params["bias_ih_l0"]
    gx0 = (x.reshape(T * B, I) @ W_ih0.T + b_ih0).reshape(T, B, 3 * H)  # one matmul for all t
    hs = np.empty((T + 1, L, B, H), dtype)                   # u_0 .. u_T
    hs[0] = h0
    gates = {g: np.empty((T, L, B, H), dtype) for g in ("r", "z", "n", "ghn")}
    work = step_workspace(L, (B,), H, dtype)                 # reused by every step
    for t in range(T):
        step_forward(params, gx0[t], hs[t], cell, dt, h_new=hs[t + 1],
                     gates={g: gates[g][t] for g in gates}, work=work)
    if not np.all(np.isfinite(hs[T])):                       # NaN/Inf last: find where it began
        finite = np.isfinite(hs[1:]).reshape(T, -1).all(axis=1)   # (numpy's warning names no step)
        warnings.warn(f"gru_forward: the state is NaN or Inf from step {int(np.argmin(finite))} "
                      f"on (cell={cell!r}, dt={dt}; the classic cell is unstable for large dt, "
                      "the implicit one is not)", RuntimeWarning, stacklevel=2)
    # the parameters as they were (a copy): an optimiser updates them in place, and
    # gru_backward must notice if that happened before it ran
    cache = {"x": x, "hs": hs, "gates": gates, "cell": cell, "dt": dt,
             "params": {k: v.copy() for k, v in params.items()}}
    return hs[1:, L - 1].copy(), hs[T].copy(), cache


def caches_at(hs, gates, t):
    """Rebuild the per-layer caches of step(s) t from stored states and gate values.

    ``hs`` (T+1, L, ..., H) and ``gates[g]`` (T, L, ..., H); ``t`` an int or an index array.
    """
    L = hs.shape[1]
    caches = []
    for k in range(L):
        c = {g: gates[g][t, k] for g in ("r", "z", "n", "ghn")}
        c["h"] = hs[t, k]
        c["h_new"] = hs[np.asarray(t) + 1, k]
        caches.append(c)
    return caches


def input_gradient(params, dgx0):
    """dx = dgx0 W_ih_l0: the VJP of layer 0's input projection gx = W_ih x + b_ih, for the
    cotangents dgx0 (T, B, 3H) of its gate inputs; (T, B, I)."""
    T, B, G = dgx0.shape
    return (dgx0.reshape(T * B, G) @ params["weight_ih_l0"]).reshape(T, B, -1)


def param_grads(params, inputs, states, dgx, dgh):
    """Sum the parameter gradients over all steps in one matmul per tensor.

    ``inputs[k]`` is layer k's input at each step (x for k = 0, layer k-1's new state above),
    ``states[k]`` layer k's old state, ``dgx[k]``/``dgh[k]`` from `step_backward`; all with the
    same leading dimensions (e.g. (T, B)).
    """
    grads = {}
    for k in range(len(dgx)):
        gx = dgx[k].reshape(-1, dgx[k].shape[-1])
        gh = dgh[k].reshape(-1, dgh[k].shape[-1])
        grads[f"weight_ih_l{k}"] = gx.T @ inputs[k].reshape(gx.shape[0], -1)
        grads[f"weight_hh_l{k}"] = gh.T @ states[k].reshape(gh.shape[0], -1)
        grads[f"bias_ih_l{k}"] = gx.sum(axis=0)
        grads[f"bias_hh_l{k}"] = gh.sum(axis=0)
    return grads


def gru_backward(params, cache, dy=None, dh_T=None, input_grad=True):
    """Backpropagation through time for `gru_forward` (the serial reference gradients).

    Parameters
    ----------
    params : dict
    cache : dict
        Third output of `gru_forward`.
    dy : ndarray (T, B, H), optional
        Cotangent on the outputs y.
    dh_T : ndarray (L, B, H), optional
        Cotangent on the final states.
    input_grad : bool
        False: skip ``dx`` (returned as None), one (T·B, 3H) @ (3H, I) product saved, for a
        caller that only needs the parameter gradients (training).

    Returns
    -------
    grads : dict
        Same keys and shapes as ``params``.
    dx : ndarray (T, B, I) or None
    dh0 : ndarray (L, B, H)
    """
    input_grad = check_flag(input_grad, "input_grad")
    L, I, H, dtype = gru_dims(params)
    if not isinstance(cache, dict) or not {"hs", "gates", "x", "cell", "dt"} <= set(cache):
        raise ValueError("cache must be the third output of gru_forward")
    hs, gates, x, cell, dt = cache["hs"], cache["gates"], cache["x"], cache["cell"], cache["dt"]
    T, B = x.shape[:2]
    if hs.shape != (T + 1, L, B, H) or hs.dtype != dtype:
        raise ValueError(f"cache holds states of shape {hs.shape} ({hs.dtype}) but params give "
                         f"(T+1, L, B, H) = {(T + 1, L, B, H)} ({dtype}): not this model's cache")
    if x.shape[2] != I:
        raise ValueError(f"cache holds inputs of {x.shape[2]} features but params take "
                         f"input_size {I}: not this model's cache")
    if cache.get("params") is not None:
        check_unchanged(cache["params"], params, "gru_forward")
    dy = check_cotangent(dy, (T, B, H), dtype, "dy")
    dh_T = check_cotangent(dh_T, (L, B, H), dtype, "dh_T")
    require_cotangent(dy, dh_T, "gru_backward")
    dgx = [np.empty((T, B, 3 * H), dtype) for _ in range(L)]
    dgh = [np.empty((T, B, 3 * H), dtype) for _ in range(L)]
    lam = dh_T.copy() if dh_T is not None else np.zeros((L, B, H), dtype)   # λ_T = ∂L/∂u_T
    for t in reversed(range(T)):
        if dy is not None:
            lam[L - 1] += dy[t]                              # y_t is u_{t+1}'s top layer
        lam = step_backward(params, caches_at(hs, gates, t), lam, cell, dt,
                            out_dgx=[d[t] for d in dgx], out_dgh=[d[t] for d in dgh])[0]
    inputs = [x] + [hs[1:, k - 1] for k in range(1, L)]
    grads = param_grads(params, inputs, [hs[:-1, k] for k in range(L)], dgx, dgh)
    return grads, (input_gradient(params, dgx[0]) if input_grad else None), lam
