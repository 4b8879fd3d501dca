"""A generic MGRIT solver: it knows time stepping, not GRUs.

- `options`: `MGRITOptions`, every option of a solve in one validated object
- `problem`: the batched problem interface and linear test problems
- `hierarchy`: levels, C/F points, which rank owns which points
- `cycle`: relaxation, FAS restriction, coarse solve, correction, V/F-cycles
- `comm`: boundary exchange and reductions over MPI (and a serial stand-in)
"""
from .comm import MPIComm, RankFailed, SerialComm, abort_on_error, agreed, as_comm
from .cycle import MGRIT, MGRITDivergedError, MGRITInfo
from .hierarchy import Hierarchy, Level
from .options import MGRITOptions
from .problem import Dahlquist, LinearRNN, NumpyVectors, Problem

__all__ = ["MGRIT", "MGRITOptions", "MGRITInfo", "MGRITDivergedError", "Hierarchy", "Level", "Problem",
           "NumpyVectors", "Dahlquist", "LinearRNN", "SerialComm", "MPIComm", "as_comm",
           "abort_on_error", "agreed", "RankFailed"]
