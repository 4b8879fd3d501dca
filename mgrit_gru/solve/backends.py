"""Where the GRU steps run: NumPy on the host or numba.cuda on one GPU, chosen in one place.

Both backends give the same small interface, so `forward`, `backward` and the serial
`gru_forward`/`gru_backward` below never test a backend's name:

- ``problems()``: the (forward, adjoint) MGRIT problem classes;
- ``device_input(a, name, shape, dtype)``: ``a`` as a checked device array when it lives on
  a GPU, None for a host array;
- ``scope()``: a context around one solve (the GPU's: no device frees until it ends);
- ``outputs(problem, u)``: y and h_T left on the device, for callers that gave x there;
- ``gru_forward``/``gru_backward``: the serial reference recurrences.

The CUDA backend imports numba only when it is first asked for.
"""
from __future__ import annotations

import contextlib

from .. import gru as _gru
from ..checks import choice, on_gpu
from ..problems import GRUAdjointProblem, GRUForwardProblem

BACKENDS = ("numpy", "cuda")


class NumpyBackend:
    """The reference: every step a NumPy call on the host."""

    name = "numpy"

    def problems(self, comm_size=1):
        return GRUForwardProblem, GRUAdjointProblem

    def device_input(self, a, name, shape, dtype, contiguous=False):
        if on_gpu(a):
            raise ValueError(f"{name} is a GPU array: use backend='cuda' (or copy it to the host)")
        return None

    def scope(self):
        return contextlib.nullcontext()

    def outputs(self, problem, u):                           # pragma: no cover - never asked
        raise NotImplementedError("the NumPy backend returns host arrays")

    def gru_forward(self, params, x, h0=None, cell="classic", dt=1.0):
        return _gru.gru_forward(params, x, h0, cell, dt)

    def gru_backward(self, params, cache, dy=None, dh_T=None, input_grad=True):
        return _gru.gru_backward(params, cache, dy, dh_T, input_grad=input_grad)


class CudaBackend:
    """States, inputs, weights and gates on one GPU (`mgrit_gru.cuda`); one rank."""

    name = "cuda"

    def problems(self, comm_size=1):
        if comm_size > 1:
            raise NotImplementedError("backend='cuda' runs on one GPU: comm must have one rank")
        from ..cuda.problems import CudaAdjointProblem, CudaForwardProblem
        return CudaForwardProblem, CudaAdjointProblem

    def device_input(self, a, name, shape, dtype, contiguous=False):
        if not on_gpu(a):
            return None
        from ..cuda.backend import as_device, check_device
        return check_device(as_device(a), name, shape, dtype, contiguous)

    def scope(self):
        from ..cuda.backend import solve_scope
        return solve_scope()

    def outputs(self, problem, u):
        from ..cuda.problems import outputs_on_device
        return outputs_on_device(problem.gru, u)

    def gru_forward(self, params, x, h0=None, cell="classic", dt=1.0):
        from ..cuda.serial import gru_forward
        return gru_forward(params, x, h0, cell, dt)

    def gru_backward(self, params, cache, dy=None, dh_T=None, input_grad=True):
        from ..cuda.serial import gru_backward
        return gru_backward(params, cache, dy, dh_T, input_grad=input_grad)


_BACKENDS = {"numpy": NumpyBackend(), "cuda": CudaBackend()}


def get_backend(backend):
    """The backend object named ``backend`` ("numpy" or "cuda"); ValueError otherwise."""
    return _BACKENDS[choice(backend, "backend", BACKENDS)]


def small_to_host(a):
    """A small array (h0, dh_T: L*B*H numbers) given on the GPU, copied to the host."""
    if on_gpu(a):
        from ..cuda.backend import small_to_host as copy
        return copy(a)
    return a


def gru_forward(params, x, h0=None, cell="classic", dt=1.0, backend="numpy"):
    """Serial forward pass of the stacked GRU (`mgrit_gru.gru.gru_forward`) on ``backend``.

    ``backend="cuda"``: the same recurrence on the GPU, one persistent kernel launch for all
    steps; its cache holds device arrays and is for ``gru_backward`` only. x may then be a GPU
    array (numba, CuPy, a PyTorch CUDA tensor): y and h_T stay on the device.
    """
    return get_backend(backend).gru_forward(params, x, h0, cell, dt)


def gru_backward(params, cache, dy=None, dh_T=None, backend=None, input_grad=True):
    """BPTT (`mgrit_gru.gru.gru_backward`) on the backend that made ``cache``.

    ``backend`` (None: the cache's) must match the `gru_forward` that made the cache.
    """
    made_by = cache.get("backend", "numpy") if isinstance(cache, dict) else "numpy"
    if backend not in (None, made_by):
        raise ValueError(f"backend={backend!r} but the cache comes from gru_forward with "
                         f"backend={made_by!r}")
    return get_backend(made_by).gru_backward(params, cache, dy, dh_T, input_grad=input_grad)
