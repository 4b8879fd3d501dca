"""Argument checks shared by the public entry points: one place for each rule, so an argument
is refused the same way, with the same message, wherever it is passed.

Each check returns the value in its plain Python type or raises ValueError naming the argument.
"""
from __future__ import annotations

import math

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
    """Anything with ``__index__`` (also a 0-d array) that is >= ``minimum``, as an int.

    Raises
    ------
    ValueError
        "{name} must be an integer >= {minimum}, got {v!r}"; also for bool and for arrays of
        several values.
    """
    try:
        ok = not isinstance(v, bool) and hasattr(v, "__index__") and int(v) >= minimum
    except TypeError:                                        # an array of several values
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


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
