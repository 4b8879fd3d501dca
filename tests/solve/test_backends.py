"""The backend objects: one small interface, chosen in one place by `get_backend`."""
import numpy as np
import pytest

from mgrit_gru import gru as ref
from mgrit_gru.problems import GRUAdjointProblem, GRUForwardProblem
from mgrit_gru.solve import backends
from mgrit_gru.solve.backends import CudaBackend, NumpyBackend, get_backend


def test_get_backend_names_the_choices():
    assert isinstance(get_backend("numpy"), NumpyBackend)
    assert isinstance(get_backend("cuda"), CudaBackend)
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'cuda'\), "
                                         r"got 'gpu'"):
        get_backend("gpu")


@pytest.mark.parametrize("name", ["numpy", "cuda"])
def test_both_backends_offer_the_same_interface(name):
    be = get_backend(name)
    assert be.name == name
    for method in ("problems", "device_input", "scope", "outputs", "gru_forward",
                   "gru_backward"):
        assert callable(getattr(be, method)), method


def test_the_numpy_backend_is_the_reference_recurrence():
    """Its serial passes are `mgrit_gru.gru`'s, bit for bit; its problems the NumPy ones."""
    be = get_backend("numpy")
    p = ref.init_gru(3, 4, num_layers=2, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    y, h, cache = be.gru_forward(p, x)
    y0, h0, cache0 = ref.gru_forward(p, x)
    assert np.array_equal(y, y0) and np.array_equal(h, h0)
    dy = np.ones_like(y)
    g, g0 = be.gru_backward(p, cache, dy), ref.gru_backward(p, cache0, dy)
    assert all(np.array_equal(g[0][k], g0[0][k]) for k in g0[0])
    assert be.problems() == (GRUForwardProblem, GRUAdjointProblem)
    assert be.device_input(x, "x", (None, None, 3), x.dtype) is None   # host array: no copy


def test_the_cuda_backend_refuses_more_than_one_rank_before_importing_numba():
    with pytest.raises(NotImplementedError, match="one GPU: comm must have one rank"):
        get_backend("cuda").problems(comm_size=2)


def test_the_dispatching_gru_backward_refuses_a_cache_of_another_backend():
    p = ref.init_gru(2, 3, seed=0)
    y, _, cache = backends.gru_forward(p, np.ones((4, 1, 2)))
    with pytest.raises(ValueError, match="backend='cuda' but the cache comes from gru_forward "
                                         "with backend='numpy'"):
        backends.gru_backward(p, cache, dy=np.ones_like(y), backend="cuda")


def test_small_to_host_leaves_host_arrays_alone():
    a = np.ones(3)
    assert backends.small_to_host(a) is a
