"""mgrit_gru: parallel-in-time training of GRU networks with MGRIT (Moon & Cyr, ICLR 2022)."""
from .gru import (init_gru, gru_forward, gru_backward, step_forward, step_backward,
                  cell_forward, cell_backward, gru_dims)
from .head import init_head, head_forward, head_backward
from .gradcheck import gradcheck, check_gru_gradients, GradcheckResult

__version__ = "0.1.0"
from .solve import mgrit_forward, mgrit_backward, input_rows, TimeSlice
