"""What an MGRIT solve of the GRU returns besides its arrays: the solver's `MGRITInfo` plus the
declared fields a later step needs (the backward solve, or a caller gathering rows)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..mgrit import MGRITInfo


@dataclass
class ForwardInfo(MGRITInfo):
    """`mgrit_forward`'s info: the solve's history (`MGRITInfo`) and what `mgrit_backward` needs.

    Attributes
    ----------
    problem : GRUForwardProblem or CudaForwardProblem
        The forward problem: parameters, input projections, stored gates.
    solver : MGRIT
        The solver, holding the forward states of this rank (``solver.U[0]``).
    backend : str
        "numpy" or "cuda".
    params_snapshot : dict
        A copy of the parameters the solve ran with: `mgrit_backward` refuses parameters that
        an optimiser has changed in place since.
    y_rows : (int, int)
        This rank's rows of y (``gather="local"``).
    dy_rows : (int, int)
        The rows of dy `mgrit_backward` needs on this rank: ``y_rows`` and one more in front.
    device_io : bool
        x was given on the GPU: y, h_T and dx stay there.
    """

    problem: object = None
    solver: object = None
    backend: str = "numpy"
    params_snapshot: dict = None
    y_rows: tuple = (0, 0)
    dy_rows: tuple = (0, 0)
    device_io: bool = False


@dataclass
class BackwardInfo(MGRITInfo):
    """`mgrit_backward`'s info: the adjoint solve's history and this rank's rows of dx.

    Attributes
    ----------
    problem : GRUAdjointProblem or CudaAdjointProblem
    solver : MGRIT
    dx_rows : (int, int)
        This rank's rows of dx (``gather="local"``).
    """

    problem: object = None
    solver: object = None
    dx_rows: tuple = (0, 0)


def extend(info, cls, **fields):
    """``info`` (an `MGRITInfo`) as a ``cls`` with ``fields`` set."""
    base = {f.name: getattr(info, f.name) for f in dataclasses.fields(MGRITInfo)}
    return cls(**base, **fields)
