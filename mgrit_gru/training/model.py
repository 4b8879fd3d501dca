"""The GRU sequence classifier: stacked GRU + linear head on the final top-layer state.

Parameters live in ONE flat dict: the `init_gru` names (``weight_ih_l0``, ...) plus the head's
``weight_out`` (C, H) and ``bias_out`` (C,). That is what the optimisers update and what a
checkpoint stores.

One training step's forward and backward pass runs either

- ``solver="serial"``: `gru_forward` + `gru_backward` (exact BPTT), or
- ``solver="mgrit"``: `mgrit_forward` + `mgrit_backward` (parallel-in-time, inexact with few
  iterations, exact at convergence), in one process or split over the ranks of ``comm``.

The loss depends on the final state h_T only, so the backward pass starts from
``dh_T = (0, ..., 0, ∂L/∂h_T[top])`` and no ``dy``. ``h_T`` is on every rank after the MGRIT
forward solve, so the head's forward/backward runs (identically) on every rank, and the GRU
gradients come back summed over ranks: parameters stay identical everywhere.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..checks import check_cell, check_flag, choice, nonneg_float, positive_float, positive_int
from ..gru import init_gru
from ..head import head_backward, head_forward, init_head
from ..mgrit import MGRITOptions
from ..solve import BACKENDS, TimeSlice, gru_backward, gru_forward, mgrit_backward, mgrit_forward

HEAD_KEYS = ("weight_out", "bias_out")
SOLVERS = ("serial", "mgrit")


def init_classifier(input_size, hidden_size, num_layers, num_classes, seed=0, dtype=np.float64):
    """Parameters of the classifier in one flat dict (GRU names + ``weight_out``, ``bias_out``).

    The GRU is drawn from ``seed`` (exactly `init_gru`'s), the head from ``seed + 1``.
    """
    params = init_gru(input_size, hidden_size, num_layers, seed=seed, dtype=dtype)
    params.update(init_head(hidden_size, num_classes, seed=seed + 1, dtype=dtype))
    return params


def split_params(params):
    """``(gru, head)``: two dicts of *the same arrays* (views, no copies), so in-place optimiser
    updates of the flat dict are seen by both."""
    missing = [k for k in HEAD_KEYS if k not in params]
    if missing:
        raise ValueError(f"params is missing the head's {missing}")
    gru = {k: v for k, v in params.items() if k not in HEAD_KEYS}
    head = {k: params[k] for k in HEAD_KEYS}
    return gru, head


def model_dims(params):
    """``(input_size, hidden_size, num_layers, num_classes)`` of a classifier's parameters."""
    gru, head = split_params(params)
    L = sum(1 for k in gru if k.startswith("weight_hh_l"))
    return (gru["weight_ih_l0"].shape[1], gru["weight_hh_l0"].shape[1], L,
            head["weight_out"].shape[0])


@dataclass
class SolverOptions:
    """How one training step computes its forward and backward pass.

    Attributes
    ----------
    solver : {"serial", "mgrit"}
    cell : {"classic", "implicit"}
        Fine-level GRU cell (MGRIT's coarse levels always use the implicit cell).
    dt : float
        Fine step size (1 with the classic cell = ``nn.GRU``).
    levels : int
        MGRIT levels (1 = sequential stepping).
    cf : int or list of int
        Coarsening factor (per level).
    relax : {"F", "FCF"} or list
        Relaxation (per level) of the forward solve.
    fwd_rtol, bwd_rtol : float or None
        Accuracy-controlled solves: instead of ``fwd_iters`` (``bwd_iters``) cycles, iterate
        until the residual has dropped by this factor from the first one measured, at most
        ``max_iters`` cycles. Each step's iterations are what the solver needed: a forward
        solve that converges worse as the weights train gets more of them.
    max_iters : int
        The cap of the accuracy-controlled solves.
    bwd_relax : {"F", "FCF"}, list or None
        Relaxation (per level) of the backward solve; None: as ``relax``. The authors' code
        relaxes the adjoint with F on the fine level and FCF below.
    fwd_iters, bwd_iters : int
        Most MGRIT cycles of the forward and the backward (adjoint) solve; the paper and
        TorchBraid train with 2 and 1.
    tol : float
        Absolute residual tolerance: a solve stops earlier once below it.
    skip : bool
        XBraid's skip (no fine work on the first down-cycle); TorchBraid's default, on.
    bwd_skip : bool or None
        Skip for the backward solve alone (None: as ``skip``). With skip, one backward
        iteration is a coarse solve interpolated by F-relaxation: its gradient is ~40 % off
        BPTT; ``bwd_skip=False`` adds one fine adjoint sweep and gives ~4 %
        (docs/theory/backward.md, "Inexact solves").
    coarse_input : {"inject", "average"}
    backend : {"numpy", "cuda"}
        Where the GRU steps run (``"cuda"``: one GPU, states on the device for the whole solve).
    """

    solver: str = "mgrit"
    cell: str = "classic"
    dt: float = 1.0
    levels: int = 3
    cf: object = 4
    relax: object = "FCF"
    fwd_iters: int = 2
    bwd_iters: int = 1
    tol: float = 1e-9
    skip: bool = True
    coarse_input: str = "inject"
    backend: str = "numpy"
    bwd_skip: object = None
    bwd_relax: object = None
    fwd_rtol: object = None
    bwd_rtol: object = None
    max_iters: int = 10

    def __post_init__(self):
        choice(self.solver, "solver", SOLVERS)
        choice(self.backend, "backend", BACKENDS)
        self.cell, self.dt = check_cell(self.cell, self.dt)
        for name in ("fwd_iters", "bwd_iters", "max_iters"):
            setattr(self, name, positive_int(getattr(self, name), name))
        for name in ("fwd_rtol", "bwd_rtol"):
            if getattr(self, name) is not None:
                rtol = positive_float(getattr(self, name), name)
                if rtol >= 1:
                    raise ValueError(f"{name} must lie in (0, 1), got {rtol}")
                setattr(self, name, rtol)
        if self.bwd_skip is not None:                        # None: as skip
            self.bwd_skip = check_flag(self.bwd_skip, "bwd_skip")
        # every solver field checked here, by MGRITOptions' rules, and not at the first solve
        # (a run refused then had already written its files)
        fwd = self.forward_options
        self.levels, self.skip = fwd.levels, fwd.skip
        self.tol = nonneg_float(self.tol, "tol")              # (fwd.tol is fwd_rtol, if set)
        self.cf = list(fwd.cf) if isinstance(fwd.cf, tuple) else fwd.cf       # "4" -> 4,
        self.relax = list(fwd.relax) if isinstance(fwd.relax, tuple) else fwd.relax   # "F,FCF"
        self.coarse_input = fwd.coarse_input                                 # -> a list
        if self.bwd_relax is not None:                       # None: as relax
            bwd = self.backward_options.relax
            self.bwd_relax = list(bwd) if isinstance(bwd, tuple) else bwd

    @property
    def forward_options(self):
        """The `MGRITOptions` of the forward solve."""
        return MGRITOptions(levels=self.levels, cf=self.cf, relax=self.relax,
                            skip=self.skip, coarse_input=self.coarse_input,
                            **_stopping(self.fwd_rtol, self.fwd_iters, self.max_iters, self.tol))

    @property
    def backward_options(self):
        """The `MGRITOptions` of the backward (adjoint) solve."""
        skip = self.skip if self.bwd_skip is None else self.bwd_skip
        relax = self.relax if self.bwd_relax is None else self.bwd_relax
        return self.forward_options.replace(
            skip=skip, relax=relax,
            **_stopping(self.bwd_rtol, self.bwd_iters, self.max_iters, self.tol))

    def to_dict(self):
        return asdict(self)


def _stopping(rtol, iters, max_iters, tol):
    """A solve's stopping options: a fixed budget, or a relative tolerance under a cap."""
    if rtol is None:
        return dict(max_iter=iters, tol=tol, tol_type="absolute")
    return dict(max_iter=max_iters, tol=rtol, tol_type="relative")


@dataclass
class StepResult:
    """One forward/backward pass of the classifier on one batch."""

    loss: float
    correct: int
    batch: int
    grads: dict = field(repr=False)
    fwd_residual: float | None = None                        # last forward / backward MGRIT
    bwd_residual: float | None = None                        # residual (None for serial)
    fwd_iterations: int = 0
    bwd_iterations: int = 0


def _final_state(gru, x, opts, comm):
    """``(h_T, info_or_cache)`` of the GRU on ``x`` with the chosen solver."""
    if opts.solver == "serial":
        if isinstance(x, TimeSlice):
            raise ValueError("solver='serial' needs the whole sequence, got a TimeSlice")
        _, h_T, cache = gru_forward(gru, x, cell=opts.cell, dt=opts.dt, backend=opts.backend)
        return h_T, cache
    _, h_T, info = mgrit_forward(gru, x, options=opts.forward_options, cell=opts.cell,
                                 dt=opts.dt, comm=comm, gather="local", backend=opts.backend)
    return h_T, info


def forward_backward(params, x, labels, opts, comm=None):
    """Loss, number of correct predictions and gradients of the classifier on one batch.

    Parameters
    ----------
    params : dict
        Flat classifier parameters (`init_classifier`).
    x : ndarray (T, B, I) or TimeSlice
        The batch, time-major; under MPI with ``solver="mgrit"`` a `TimeSlice` with this rank's
        rows (see `mgrit_gru.input_rows`).
    labels : ndarray (B,) of int
    opts : SolverOptions
    comm : mpi4py communicator, optional
        Ranks that split the time axis (MGRIT only).

    Returns
    -------
    StepResult
        ``grads`` has the keys of ``params`` and is identical on every rank.
    """
    gru, head = split_params(params)
    h_T, state = _final_state(gru, x, opts, comm)
    loss, logits, hcache = head_forward(head, h_T[-1], labels)
    hgrads, dh_top = head_backward(head, hcache)
    dh_T = np.zeros_like(h_T)
    dh_T[-1] = dh_top
    res = dict(loss=loss, correct=int(np.sum(np.argmax(logits, axis=1) == labels)),
               batch=int(len(labels)))
    if opts.solver == "serial":                              # (dx: not needed, not computed)
        grads, _, _ = gru_backward(gru, state, dh_T=dh_T, input_grad=False)
    else:
        grads, _, _, binfo = mgrit_backward(gru, state, dh_T=dh_T,
                                            options=opts.backward_options, comm=comm,
                                            gather="local", input_grad=False)
        res.update(fwd_residual=state.final_residual, bwd_residual=binfo.final_residual,
                   fwd_iterations=state.iterations, bwd_iterations=binfo.iterations)
    grads.update(hgrads)
    return StepResult(grads=grads, **res)


def predict_logits(params, x, opts, comm=None):
    """Logits (B, C) of the classifier on ``x`` (forward pass only, same solver as training)."""
    gru, head = split_params(params)
    h_T, _ = _final_state(gru, x, opts, comm)
    return h_T[-1] @ head["weight_out"].T + head["bias_out"]
