"""mgrit_gru: parallel-in-time training of GRU networks with MGRIT (Moon & Cyr, ICLR 2022).

The layers, each importing only those above it in this list:

- `gru`, `head`, `gradcheck`: the math, NumPy only (`checks`: the argument rules)
- `mgrit`: the generic solver; knows time stepping, not GRUs (`MGRITOptions`, `MGRIT`)
- `problems`: the GRU forward pass and its adjoint as MGRIT problems
- `cuda`: numba.cuda kernels and the device twins of those problems
- `solve`: `mgrit_forward`/`mgrit_backward` and the backend they run on
- `training`: data, classifier, optimisers, the training loop and its run folder
- `tools`: command line, benchmarks, performance model, diagnostics (plots)

``import mgrit_gru`` needs only NumPy; everything else is imported where it is used.
"""
from ._threads import limit_blas_threads as _limit_blas_threads

_limit_blas_threads()      # before NumPy starts its BLAS: one thread per rank under mpiexec -n P
from . import _moved
from .checks import gru_dims
from .gradcheck import GradcheckResult, check_gru_gradients, gradcheck
from .gru import cell_backward, cell_forward, init_gru, step_backward, step_forward
from .head import head_backward, head_forward, init_head
from .mgrit import MGRITOptions
from .solve import (TimeSlice, get_backend, gru_backward, gru_forward, input_rows,
                    mgrit_backward, mgrit_forward)
from .training.optim import SGD, Adam, clip_grad_norm, grad_norm

_moved.install()
__version__ = "0.1.0"
__all__ = ["gru_dims", "GradcheckResult", "check_gru_gradients", "gradcheck", "cell_backward",
           "cell_forward", "init_gru", "step_backward", "step_forward", "head_backward",
           "head_forward", "init_head", "MGRITOptions", "TimeSlice", "get_backend",
           "gru_backward", "gru_forward", "input_rows", "mgrit_backward", "mgrit_forward", "SGD",
           "Adam", "clip_grad_norm", "grad_norm"]

# the layers above solve/, and the top-level names of 0.1 that moved into them
_LAZY = {"training", "tools", "cuda"} | {old.split(".")[1] for old in _moved.MOVED
                                          if old.count(".") == 1}


def __getattr__(name):
    """``mgrit_gru.diagnostics``, ``mgrit_gru.data``, ...: imported on first use."""
    if name in _LAZY:
        import importlib
        return importlib.import_module(_moved.new_name(f"{__name__}.{name}"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
