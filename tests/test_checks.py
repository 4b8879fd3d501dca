"""The shared argument checks: what each accepts, what it returns, the message it refuses with."""
import re

import numpy as np
import pytest

from mgrit_gru.checks import (check_time_window, float_dtype, int_at_least, nonneg_float,
                              positive_float, positive_int)


@pytest.mark.parametrize("v", [1, 7, np.int64(3), np.int32(1)])
def test_positive_int_accepts_python_and_numpy_integers(v):
    out = positive_int(v, "n")
    assert out == v and type(out) is int


@pytest.mark.parametrize("v", [0, -1, True, 2.0, "3", None, np.array([1, 2]), np.array(3)])
def test_positive_int_refuses(v):
    with pytest.raises(ValueError, match=re.escape(f"n must be a positive integer, got {v!r}")):
        positive_int(v, "n")


@pytest.mark.parametrize("v", [2, np.int64(3), np.array(4)])     # anything with __index__
def test_int_at_least_accepts(v):
    out = int_at_least(v, "cf", 2)
    assert out == int(v) and type(out) is int


@pytest.mark.parametrize("v", [1, 0, -1, True, 2.0, "3", None, np.array([1, 2]),
                               np.array(2.5), np.float64(3.0)])     # floats: not truncated
def test_int_at_least_refuses(v):
    with pytest.raises(ValueError, match=re.escape(f"cf must be an integer >= 2, got {v!r}")):
        int_at_least(v, "cf", 2)


@pytest.mark.parametrize("v", [0, 0.5, np.float32(0.25), np.int64(2), "1e-3"])
def test_nonneg_float_accepts(v):
    out = nonneg_float(v, "tol")
    assert out == float(v) and type(out) is float


@pytest.mark.parametrize("v, message", [
    ("x", "tol must be a finite number >= 0, got 'x'"),
    (None, "tol must be a finite number >= 0, got None"),
    (np.array([1.0, 2.0]), "tol must be a finite number >= 0, got array([1., 2.])"),
    (float("nan"), "tol must be a finite number >= 0, got nan"),
    (float("inf"), "tol must be a finite number >= 0, got inf"),
    (-1, "tol must be a finite number >= 0, got -1.0"),
])
def test_nonneg_float_refuses(v, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        nonneg_float(v, "tol")


@pytest.mark.parametrize("v", [0.5, 1, np.int64(2), np.float64(1e-12)])
def test_positive_float_accepts(v):
    out = positive_float(v, "dt")
    assert out == float(v) and type(out) is float


@pytest.mark.parametrize("v, message", [
    ("x", "dt must be a finite number > 0, got 'x'"),
    (None, "dt must be a finite number > 0, got None"),
    (float("nan"), "dt must be a finite number > 0, got nan"),
    (float("inf"), "dt must be a finite number > 0, got inf"),
    (-1, "dt must be a finite number > 0, got -1.0"),
    (0, "dt must be a finite number > 0, got 0.0"),
])
def test_positive_float_refuses(v, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        positive_float(v, "dt")


@pytest.mark.parametrize("v", [np.float32, "float64", np.dtype("f4")])
def test_float_dtype_accepts(v):
    assert float_dtype(v) == np.dtype(v)


@pytest.mark.parametrize("v", [np.float16, "int64", np.complex128])
def test_float_dtype_refuses(v):
    with pytest.raises(ValueError, match=re.escape(f"dtype must be float32 or float64, got "
                                                   f"{np.dtype(v)}")):
        float_dtype(v)


@pytest.mark.parametrize("w, T", [((0, 1), 1), ((3, 10), 10), ([2, 5], 9), (np.array([0, 4]), 4),
                                  ((np.int32(1), np.int64(2)), 3)])
def test_check_time_window_accepts(w, T):
    out = check_time_window(w, T)
    assert out == (int(w[0]), int(w[1])) and all(type(v) is int for v in out)


@pytest.mark.parametrize("w, message", [
    ((3, 3), "0 <= start < stop <= T = 10, got (3, 3)"), ((-1, 2), "got (-1, 2)"),
    ((0, 11), "got (0, 11)"), ((5, 2), "got (5, 2)"),
    ((0.5, 2), "a pair of integers"), ((0, 2.0), "a pair of integers"), ("ab", "a pair"),
    ((1, 2, 3), "a pair"), (None, "a pair"), (5, "a pair")])
def test_check_time_window_refuses(w, message):
    with pytest.raises(ValueError, match=re.escape("time_window must ") + ".*" +
                       re.escape(message)):
        check_time_window(w, 10)


def test_int_choice_takes_only_the_listed_integers():
    from mgrit_gru.checks import int_choice
    assert int_choice(2, "split", (1, 2, 3)) == 2
    assert int_choice(np.int64(3), "split", (1, 2, 3)) == 3
    for bad in (4, 0, "1", 1.0, True, None):
        with pytest.raises(ValueError, match="split must be one of 1, 2, 3"):
            int_choice(bad, "split", (1, 2, 3))


def test_optional_import_names_the_extra_to_install(monkeypatch):
    import sys
    from mgrit_gru.checks import MissingExtraError, optional_import
    assert optional_import("json", "none", "reading JSON") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingExtraError, match=r'decoding needs av: pip install "mgrit_gru\[video\]"'):
        optional_import("av", "video", "decoding")
    assert issubclass(MissingExtraError, ImportError)
