"""Argument checks shared by the public entry points: one place for each rule, so an argument
is refused the same way, with the same message, wherever it is passed.

Each check returns the value in its plain Python type or raises ValueError naming the argument.
"""
from __future__ import annotations

import math
import operator

import numpy as np


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def optional_import(module, extra, purpose):
    """``import module``, or MissingExtraError: "{purpose} needs {module}: pip install
    "mgrit_gru[{extra}]"" (the command line prints it as one line)."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs {module}: pip install "
                                f'"mgrit_gru[{extra}]"') from None


def positive_int(v, name):
    """A Python or NumPy integer >= 1 as an int (bool, floats such as 2.0 and arrays refused).

    Raises
    ------
    ValueError
        "{name} must be a positive integer, got {v!r}".
    """
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def int_at_least(v, name, minimum):
    """An integer (anything ``operator.index`` takes, a 0-d integer array too) >= ``minimum``,
    as an int; a float, even 2.0 or a 0-d float array, is refused rather than truncated.

    Raises
    ------
    ValueError
        "{name} must be an integer >= {minimum}, got {v!r}"; also for bool and for arrays of
        several values.
    """
    try:                                                     # index(): no truncation of 2.5
        i = None if isinstance(v, bool) else operator.index(v)
    except TypeError:                                        # a float, or several values
        i = None
    if i is None or i < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return i


def nonneg_float(v, name):
    """A finite number >= 0 (anything ``float`` takes) as a float; else ValueError
    "{name} must be a finite number >= 0, got ..."."""
    return _finite_number(v, name, strict=False)


def positive_float(v, name):
    """A finite number > 0 (anything ``float`` takes) as a float; else ValueError
    "{name} must be a finite number > 0, got ..."."""
    return _finite_number(v, name, strict=True)


def _finite_number(v, name, strict):
    bound = "> 0" if strict else ">= 0"
    if isinstance(v, (bool, np.bool_)):                      # True is no step size
        raise ValueError(f"{name} must be a finite number {bound}, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):                          # "x", None, several values
        raise ValueError(f"{name} must be a finite number {bound}, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (strict and f == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {f}")
    return f


def check_flag(value, name):
    """``value`` as a bool; ValueError naming ``name`` unless it is one (``bool("False")`` is
    True, so a string from a config file must not pass)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def float_dtype(dtype):
    """``np.dtype(dtype)`` if it is float32 or float64, else ValueError naming ``dtype``."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:                                        # "foo": numpy names no argument
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_time_window(window, T):
    """``window`` as ``(start, stop)`` ints with 0 <= start < stop <= T: the time rows an MPI rank
    reads (floats such as 1.5 are refused, not truncated).

    Raises
    ------
    ValueError
        "time_window must be a pair of integers (start, stop), got ..." or
        "time_window must satisfy 0 <= start < stop <= T = {T}, got (start, stop)".
    """
    try:
        start, stop = (operator.index(v) for v in window)
    except (TypeError, ValueError):                          # not a pair, or not integers
        raise ValueError(f"time_window must be a pair of integers (start, stop), got "
                         f"{window!r}") from None
    if not 0 <= start < stop <= T:
        raise ValueError(f"time_window must satisfy 0 <= start < stop <= T = {T}, got "
                         f"{(start, stop)}")
    return start, stop


def real_array(a, name):
    """``a`` as an ndarray of real numbers (a float or integer dtype); ValueError naming
    ``name`` for complex (whose imaginary part a cast would drop with only a warning), bool,
    object or string arrays and ragged lists."""
    try:
        a = np.asarray(a)
    except (TypeError, ValueError):                          # ragged nested lists
        raise ValueError(f"{name} must be an array of real numbers, got "
                         f"{type(a).__name__}") from None
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be real numbers (a float or integer array), got dtype "
                         f"{a.dtype}")
    return a


def choice(value, name, allowed):
    """``value`` if it is one of ``allowed``, else ValueError "{name} must be one of ..."."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def int_choice(value, name, allowed):
    """``value`` as an int if it is one of the integers ``allowed``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or int(value) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return int(value)


def per_level(value, name, cast):
    """An option given once or per level: a scalar, a list/tuple, or a comma-separated string
    ("4,2", "FCF,F"). Returns the scalar, or a list of ``cast`` values (one entry: the scalar).
    An integer option refuses floats such as 2.9 rather than truncating them."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise ValueError(f"{name} is empty")
        values = [_cast(p, name, cast) for p in parts]
        return values[0] if len(values) == 1 else values
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:   # a 1-D NumPy array
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is empty")
        values = [_cast(v, name, cast) for v in value]
        return values[0] if len(values) == 1 else values
    return _cast(value, name, cast)


def _cast(v, name, cast):
    if cast is int:
        if isinstance(v, str):
            try:
                v = int(v)
            except ValueError:
                raise ValueError(f"{name} must be an integer (per level), got {v!r}") from None
        whole = isinstance(v, (int, np.integer)) or \
            (isinstance(v, (float, np.floating)) and float(v).is_integer())
        if isinstance(v, (bool, np.bool_)) or not whole:
            raise ValueError(f"{name} must be an integer (per level), got {v!r}")
        return int(v)
    return v


# ----------------------------------------------------------------------------------------------
# GRU parameters and sequences
# ----------------------------------------------------------------------------------------------
CELLS = ("classic", "implicit")


def gru_dims(params):
    """Check a GRU parameter dict and return ``(num_layers, input_size, hidden_size, dtype)``.

    Raises ``ValueError`` naming the offending entry for missing or extra names, wrong shapes,
    mixed or non-float dtypes, and NaN or Inf values.
    """
    if not isinstance(params, dict) or "weight_hh_l0" not in params:
        raise ValueError("params must be a dict with nn.GRU names (weight_ih_l0, weight_hh_l0, ...)")
    num_layers = 0
    while f"weight_hh_l{num_layers}" in params:
        num_layers += 1
    W_hh0 = np.asarray(params["weight_hh_l0"])
    if W_hh0.ndim != 2 or W_hh0.shape[0] != 3 * W_hh0.shape[1]:
        raise ValueError(f"params['weight_hh_l0'] must have shape (3H, H), got {W_hh0.shape}")
    H = W_hh0.shape[1]
    I = np.asarray(params.get("weight_ih_l0", np.empty((0, 0)))).shape[-1]
    if H < 1 or I < 1:
        raise ValueError(f"params must have hidden_size and input_size >= 1, got H = {H}, I = {I} "
                         f"(weight_hh_l0 {W_hh0.shape})")
    dtype = W_hh0.dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"params must be float32 or float64, got {dtype}")
    expected = set()
    for k in range(num_layers):
        want = {f"weight_ih_l{k}": (3 * H, I if k == 0 else H), f"weight_hh_l{k}": (3 * H, H),
                f"bias_ih_l{k}": (3 * H,), f"bias_hh_l{k}": (3 * H,)}
        for name, shape in want.items():
            expected.add(name)
            if name not in params:
                raise ValueError(f"params is missing {name!r}")
            v = params[name]
            if not isinstance(v, np.ndarray) or v.shape != shape:
                raise ValueError(f"params[{name!r}] must be an array of shape {shape}, "
                                 f"got {getattr(v, 'shape', type(v).__name__)}")
            if v.dtype != dtype:
                raise ValueError(f"params[{name!r}] has dtype {v.dtype}, the others {dtype}: "
                                 "all parameters must share one dtype")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"params[{name!r}] contains NaN or Inf")
    extra = set(params) - expected
    if extra:
        raise ValueError(f"params has unexpected entries {sorted(extra)}")
    return num_layers, I, H, dtype


def check_cell(cell, dt):
    """Validate ``cell`` and ``dt``; return them (dt as float)."""
    return choice(cell, "cell", CELLS), positive_float(dt, "dt")


def on_gpu(a):
    """Whether ``a`` lives on a GPU: a numba device array, or anything with
    ``__cuda_array_interface__`` (CuPy, a PyTorch CUDA tensor). Needs no CUDA import."""
    return bool(getattr(a, "__cuda_ndarray__", False)) or hasattr(a, "__cuda_array_interface__")


def check_sequence(x, h0, L, I, H, dtype):
    """Validate x (T, B, I) and h0 (L, B, H); return them as fresh arrays of ``dtype`` (copies:
    the caches keep x, and a caller may reuse its buffer before the backward pass)."""
    if on_gpu(x):
        raise ValueError("x is a GPU array: use backend='cuda' (or copy it to the host)")
    x = real_array(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I) (3 dimensions), got shape {x.shape}")
    T, B, I_x = x.shape
    if T < 1 or B < 1:
        raise ValueError(f"x must have at least one time step and one sequence, got shape {x.shape}")
    if I_x != I:
        raise ValueError(f"x has {I_x} features per step but the GRU's input_size is {I}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or Inf")
    raw, x = x, np.array(x, dtype=dtype, order="C")         # a copy, even of a matching array
    if not np.all(np.isfinite(x)):                           # finite, but not in float32
        raise ValueError(f"x has values beyond the range of {np.dtype(dtype)} (largest "
                         f"|x| {float(np.abs(raw).max()):.3g}): rescale the inputs or use "
                         "float64")
    return x, check_h0(h0, L, B, H, dtype)


def check_h0(h0, L, B, H, dtype):
    """Validate h0 (L, B, H) (None: zeros); return it as a fresh array of ``dtype``."""
    if h0 is None:
        return np.zeros((L, B, H), dtype)
    h0 = real_array(h0, "h0")
    if h0.shape != (L, B, H):
        raise ValueError(f"h0 must have shape (L, B, H) = {(L, B, H)}, got {h0.shape}")
    h0 = np.array(h0, dtype=dtype)
    if not np.all(np.isfinite(h0)):
        raise ValueError("h0 contains NaN or Inf")
    return h0


def check_cotangent(d, shape, dtype, name):
    """A cotangent (dy, dh_T) of ``shape`` as an array of ``dtype``; None stays None."""
    if d is None:
        return None
    d = real_array(d, name)
    if d.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {d.shape}")
    d = np.asarray(d, dtype=dtype)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} contains NaN or Inf")
    return d


def require_cotangent(dy, dh_T, fn):
    """ValueError when neither cotangent is given: every gradient would be zero, silently."""
    if dy is None and dh_T is None:
        raise ValueError(f"{fn} needs a cotangent: dy (on the outputs), dh_T (on the final "
                         "states) or both; with neither every gradient is zero")


def check_unchanged(snapshot, params, forward):
    """ValueError unless ``params`` equal ``snapshot``, the copy the forward pass kept: an
    optimiser updates them in place, and the stored gates belong to the old values."""
    if set(snapshot) != set(params) or any(not np.array_equal(snapshot[k], params[k])
                                           for k in params):
        raise ValueError(f"params differ from the ones {forward} ran with (changed in place "
                         f"since the forward pass?): run {forward} again")
