"""`mgrit_gru.cuda.backend.view`: cheap strided views of numba device arrays.

Without a GPU no real device array exists, so the test drives `view` with a stand-in that has
what it uses (numba's own dummy array for the layout, a memory object recording the byte range)
and checks, for the views the solver takes, that it builds what numba's ``__getitem__`` builds:
numpy's shape and strides, over the byte range from the first to the last element, which is
the union of the contiguous extents numba enumerates.
"""
import importlib.util
import os

import numpy as np
import pytest
from numba import cuda

from mgrit_gru.cuda.backend import view


def _load_dummyarray():
    """numba's dummyarray module (pure Python, numpy only), loaded from its file: under the
    simulator ``numba.cuda.cudadrv`` is replaced by stand-ins."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cuda.__file__)))
    path = os.path.join(root, "cuda", "cudadrv", "dummyarray.py")
    spec = importlib.util.spec_from_file_location("_numba_dummyarray", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


dummyarray = _load_dummyarray()


class FakeMemory:
    def __init__(self, start=0, stop=None):
        self.range = (start, stop)

    def view(self, start, stop=None):
        return FakeMemory(start, stop)


class FakeDeviceArray:
    """Has the attributes `view` reads: _dummy, gpu_data, dtype, stream; and __getitem__."""

    def __init__(self, shape, strides, dtype, gpu_data=None, stream=0):
        self.shape, self.strides, self.dtype, self.stream = shape, strides, np.dtype(dtype), stream
        self._dummy = dummyarray.Array.from_desc(0, shape, strides, self.dtype.itemsize)
        self.gpu_data = gpu_data or FakeMemory()
        self.sliced_by_numba = False

    def __getitem__(self, item):                         # numba's path (fast cases only here)
        d = self._dummy[item]
        out = FakeDeviceArray(d.shape, d.strides, self.dtype, FakeMemory(*d.extent))
        out.sliced_by_numba = True
        return out


ITEMS = [slice(0, 13, 4), slice(1, 14, 4), slice(2, 17, 1), (slice(None), slice(1, 2)),
         (slice(0, 9), 1), (slice(1, 10, 3), 0), slice(5, 6, 4)]


@pytest.mark.parametrize("item", ITEMS)
def test_view_matches_numpy_layout_and_numba_extents(item):
    n, L, B, H = 17, 2, 3, 5
    host = np.zeros((n, L, B, H), np.float32)
    a = FakeDeviceArray(host.shape, host.strides, host.dtype)
    v = view(a, item)
    want = host[item]
    assert tuple(v.shape) == want.shape and tuple(v.strides) == want.strides
    d = a._dummy[item]
    extents = list(d.iter_contiguous_extent())           # what numba enumerates, slowly
    lo, hi = min(e[0] for e in extents), max(e[1] for e in extents)
    assert v.gpu_data.range == (lo, hi) == tuple(d.extent)
    contiguous = want.flags.c_contiguous or want.flags.f_contiguous
    assert v.sliced_by_numba == contiguous               # only non-contiguous views bypass numba


def test_view_of_host_arrays_is_plain_indexing():
    x = np.arange(10)
    assert np.array_equal(view(x, slice(1, 9, 3)), x[1:9:3])
