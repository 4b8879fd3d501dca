"""One object for every MGRIT option: validated once, when it is built.

`MGRITOptions` is what flows from the command line, a training run or a user's script to the
solver; a forward and a backward solve each hold their own. Names follow XBraid and PyMGRIT
where those have one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..checks import check_flag, choice, int_at_least, per_level, positive_float, \
    nonneg_float, positive_int

RELAXATIONS = ("F", "FCF")
CYCLES = ("V", "F")
TOL_TYPES = ("absolute", "relative")
NORMS = ("2", "max")
COARSE_INPUTS = ("inject", "average")


@dataclass(frozen=True)
class MGRITOptions:
    """How an MGRIT solve runs.

    Attributes
    ----------
    levels : int
        Number of levels (1 = sequential stepping).
    cf : int or tuple of int
        Coarsening factor >= 2: one for every coarsening, or one per coarsening
        (``levels - 1`` of them). A string "4,2" is read as a list.
    relax : {"F", "FCF"} or tuple of them
        Relaxation, one for all levels or one per level ("FCF,F" is read as a list).
    cycle : {"V", "F"}
    max_iter : int
        Most cycles.
    tol : float
        Stop when ||r|| <= tol (``tol_type="absolute"``) or <= tol * first measured ||r||.
    tol_type : {"absolute", "relative"}
    norm : {"2", "max"}
        Norm over time of the C-point residuals.
    skip : bool
        XBraid's skip: no fine-grid work on the first down-cycle.
    min_coarse : int
        Fewest intervals allowed on the coarsest level.
    c_weight : float
        Weight ω of C-relaxation, in (0, 2]: u_C <- (1 - ω) u_C + ω Φ(u_{C-1}).
    coarse_input : {"inject", "average"}
        For the GRU problems: a coarse step's input is the fine input at the interval start
        (the paper) or the interval mean. The generic solver ignores it.
    divergence_factor : float
        Stop and report divergence when ||r|| exceeds this times the first measured ||r||.
    """

    levels: int = 3
    cf: object = 4
    relax: object = "FCF"
    cycle: str = "V"
    max_iter: int = 10
    tol: float = 1e-9
    tol_type: str = "absolute"
    norm: str = "2"
    skip: bool = True
    min_coarse: int = 1
    c_weight: float = 1.0
    coarse_input: str = "inject"
    divergence_factor: float = 1e8

    def __post_init__(self):
        put = lambda name, value: object.__setattr__(self, name, value)   # frozen: once, here
        put("levels", positive_int(self.levels, "levels"))
        cfs = per_level(self.cf, "cf", int)
        for c in cfs if isinstance(cfs, list) else [cfs]:
            int_at_least(c, "cf", 2)
        if isinstance(cfs, list) and len(cfs) not in (1, self.levels - 1):
            raise ValueError(f"cf has {len(cfs)} entries; {self.levels} levels need "
                             f"{self.levels - 1} (one per coarsening)")
        put("cf", tuple(cfs) if isinstance(cfs, list) and len(cfs) > 1 else
            (cfs[0] if isinstance(cfs, list) else cfs))
        relax = per_level(self.relax, "relax", str)
        for r in relax if isinstance(relax, list) else [relax]:
            choice(r, "relax", RELAXATIONS)
        if isinstance(relax, list) and len(relax) not in (1, self.levels):
            raise ValueError(f"relax has {len(relax)} entries, expected one per level "
                             f"({self.levels})")
        put("relax", tuple(relax) if isinstance(relax, list) and len(relax) > 1 else
            (relax[0] if isinstance(relax, list) else relax))
        put("cycle", choice(self.cycle, "cycle", CYCLES))
        put("max_iter", positive_int(self.max_iter, "max_iter"))
        put("tol", nonneg_float(self.tol, "tol"))
        put("tol_type", choice(self.tol_type, "tol_type", TOL_TYPES))
        put("norm", choice(str(self.norm), "norm", NORMS))
        put("skip", check_flag(self.skip, "skip"))
        put("min_coarse", positive_int(self.min_coarse, "min_coarse"))
        c_weight = positive_float(self.c_weight, "c_weight")
        if c_weight > 2.0:
            raise ValueError(f"c_weight must lie in (0, 2], got {self.c_weight!r}")
        put("c_weight", c_weight)
        put("coarse_input", choice(self.coarse_input, "coarse_input", COARSE_INPUTS))
        put("divergence_factor", positive_float(self.divergence_factor, "divergence_factor")
            if self.divergence_factor != float("inf") else float("inf"))

    @property
    def cfs(self):
        """The ``levels - 1`` coarsening factors as a list."""
        return list(self.cf) if isinstance(self.cf, tuple) else [self.cf] * (self.levels - 1)

    @property
    def relax_per_level(self):
        """The relaxation of each of the ``levels`` levels as a list."""
        return list(self.relax) if isinstance(self.relax, tuple) else [self.relax] * self.levels

    def replace(self, **changes):
        """A copy with ``changes`` (checked like the constructor's arguments)."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise TypeError(f"MGRITOptions has no option(s) {unknown}; options are {FIELDS}")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain JSON-able values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def build(cls, options=None, **overrides):
        """``options`` (None: the defaults) with ``overrides`` applied: the one way the public
        entry points turn ``options=`` and per-option keywords into one object."""
        if options is None:
            return cls(**overrides)
        if not isinstance(options, cls):
            raise ValueError(f"options must be an MGRITOptions, got {type(options).__name__}")
        return options.replace(**overrides) if overrides else options


FIELDS = tuple(f.name for f in dataclasses.fields(MGRITOptions))
