"""The GRU's forward and backward pass solved by MGRIT, and the backend they run on.

- `forward`: `mgrit_forward`, `TimeSlice`, `input_rows`
- `backward`: `mgrit_backward`
- `backends`: NumPy or CUDA, chosen in one place; the serial `gru_forward`/`gru_backward` on
  either
- `record`: what a solve returns besides its arrays (`ForwardInfo`, `BackwardInfo`)
- `ranks`: the MPI agreement check and row gathering
"""
from .backends import BACKENDS, get_backend, gru_backward, gru_forward
from .backward import mgrit_backward
from .forward import GATHERS, TimeSlice, input_rows, mgrit_forward
from .record import BackwardInfo, ForwardInfo

__all__ = ["mgrit_forward", "mgrit_backward", "TimeSlice", "input_rows", "gru_forward",
           "gru_backward", "get_backend", "BACKENDS", "GATHERS", "ForwardInfo", "BackwardInfo"]
