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
    """A finite number >= 0 (anything ``float`` takes) as a float.

    Raises
    ------
    ValueError
        "{name} must be a number >= 0, got {v!r}" if ``float(v)`` fails, "{name} must be a
        finite number >= 0, got {float(v)}" for nan, inf or a negative number.
    """
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}") from None
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {f}")
    return f


def positive_float(v, name):
    """A finite number > 0 (anything ``float`` takes) as a float.

    Raises
    ------
    ValueError
        "{name} must be a finite number > 0, got {v!r}" if ``float(v)`` fails, "... got
        {float(v)}" for nan, inf, zero or a negative number.
    """
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {f}")
    return f


def float_dtype(dtype):
    """``np.dtype(dtype)`` if it is float32 or float64, else ValueError naming ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype
