"""Argument checks shared by the public entry points: one place for each rule, so an argument
is refused the same way, with the same message, wherever it is passed.

Each check returns the value in its plain Python type or raises ValueError naming the argument.
"""
from __future__ import annotations

import math
import operator

import numpy as np


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
