"""mgrit_gru: parallel-in-time training of GRU networks with MGRIT (Moon & Cyr, ICLR 2022).

Where things live: `gru` (the GRU math, step + VJP, serial forward/BPTT), `head` (classifier),
`gradcheck`, `mgrit` (the generic solver: cycle, hierarchy, comm, problem), `problems` (the GRU
forward and adjoint as MGRIT problems), `solve` (`mgrit_forward`, `mgrit_backward`), `data`,
`optim`, `model` (the GRU classifier, one serial or MGRIT training step), `train` (the training
loop, checkpoints, resume, ``mgrit-gru train``/``demo``), `cuda` (numba.cuda kernels),
`diagnostics` (plots), `bench`, `cli`.
"""
from ._threads import limit_blas_threads as _limit_blas_threads

_limit_blas_threads()      # before NumPy starts its BLAS: one thread per rank under mpiexec -n P
from .gru import (init_gru, gru_forward, gru_backward, step_forward, step_backward,
                  cell_forward, cell_backward, gru_dims)
from .head import init_head, head_forward, head_backward
from .gradcheck import gradcheck, check_gru_gradients, GradcheckResult
from .solve import mgrit_forward, mgrit_backward, input_rows, TimeSlice
from .optim import SGD, Adam, clip_grad_norm, grad_norm
from . import data

__version__ = "0.1.0"
