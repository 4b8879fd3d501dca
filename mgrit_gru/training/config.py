"""What determines a training run: `TrainConfig`, stored in every checkpoint as JSON.

It holds the run's data, model, solver, optimiser and loop options as flat fields (the
checkpoint format); `TrainConfig.solver_options` turns the solver's into a `SolverOptions`,
which holds one `MGRITOptions` for the forward and one for the backward solve.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..checks import choice, int_at_least, int_choice, positive_int
from .model import SolverOptions
from .presets import PRESETS, resolve

OPTIMIZERS = ("adam", "sgd")
SOLVER_FIELDS = tuple(f.name for f in fields(SolverOptions))
BUILT_IN = ("synthetic", "event", "pulse")
# the data kinds of videos (frames become features)
VIDEOS = ("frames", "hmdb51")
# the data kinds whose number of classes is an option (the others': the data's own)
CLASSES_GIVEN = ("synthetic", "event")

@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in the checkpoint as JSON).

    Data: ``data`` is ``"synthetic"`` (`moving_objects` videos), ``"event"`` (`early_event`,
    with ``distractors`` late events), ``"pulse"`` (`pulse_order`),
    ``"npz:PATH"`` (`load_npz`), ``"frames:ROOT"`` (`load_frame_folder`) or
    ``"uci-har:ROOT"`` (`load_uci_har`: the "UCI HAR Dataset" folder, with its given train/test
    split) or ``"hmdb51:ROOT"`` (`load_hmdb51`: the class folders of .avi videos, trained on
    official split ``split`` (1, 2 or 3), its files in ``splits_dir``, default
    ``ROOT/testTrainMulti_7030_splits``). ``seq_len`` is T (default 256 for the built-in tasks;
    an npz file's or UCI-HAR's own T; required for videos).
    ``num_sequences``, ``num_classes``, ``frame_size`` and ``noise`` shape the built-in tasks
    (``frame_size`` is also the frame size frame folders are resized to; ``projection_dim`` an
    optional random projection of their frames, ``features`` an ONNX image network whose
    features replace the pixels (`OnnxFeatures`), ``cache_dir`` their decoded-frame cache). A
    checkpoint's config holds the data's own number of classes as ``num_classes``, whatever
    the kind of data.
    ``test_fraction`` of the sequences (seeded split) is held out.

    Model: ``hidden``, ``layers``, ``cell``, ``dt``. Solver: ``solver`` and the MGRIT options
    (see `SolverOptions`; ``bwd_relax`` and ``bwd_skip`` of the backward solve, None: as the
    forward's). ``preset``: the name of the `presets` entry the run started from (a record;
    `TrainConfig.with_preset` applies one). Optimiser: ``optimizer`` ("adam" or "sgd"), ``lr``, ``momentum`` (SGD),
    ``weight_decay`` (L2, as torch), ``clip`` (max gradient norm, 0 = off). Loop:
    ``batch_size``, ``epochs``, ``seed`` (data, initialisation and batch order), ``dtype``.
    """

    data: str = "synthetic"
    seq_len: int | None = None
    num_sequences: int = 1024
    num_classes: int = 4
    frame_size: int = 16
    noise: float = 0.1
    distractors: int = 4
    projection_dim: int | None = None
    cache_dir: str | None = None
    features: str | None = None
    split: int = 1
    splits_dir: str | None = None
    test_fraction: float = 0.2
    hidden: int = 64
    layers: int = 1
    cell: str = "classic"
    dt: float = 1.0
    solver: str = "mgrit"
    levels: int = 3
    cf: object = 4
    relax: object = "FCF"
    fwd_iters: int = 2
    bwd_iters: int = 1
    tol: float = 1e-9
    skip: bool = True
    bwd_skip: object = None
    bwd_relax: object = None
    fwd_rtol: object = None
    bwd_rtol: object = None
    max_iters: int = 10
    coarse_input: str = "inject"
    backend: str = "numpy"
    optimizer: str = "adam"
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip: float = 1.0
    batch_size: int = 32
    epochs: int = 5
    seed: int = 0
    dtype: str = "float64"
    preset: str | None = None

    # options that may change between a run and its resumption
    RESUMABLE = ("epochs", "cache_dir", "backend", "splits_dir")

    def __post_init__(self):
        for f in fields(self):                               # NumPy scalars (np.arange sweeps)
            v = getattr(self, f.name)                        # -> Python ones: the checkpoint's
            if isinstance(v, np.generic):                    # config is JSON
                setattr(self, f.name, v.item())
        opts = self.solver_options()                         # validates the solver fields
        self.cf, self.relax = opts.cf, opts.relax            # "4" -> 4, "FCF,F" -> [...]
        self.bwd_relax = opts.bwd_relax
        if self.preset is not None:
            choice(self.preset, "preset", tuple(PRESETS))
        _data_kind(self.data)
        for name in ("num_sequences", "num_classes", "frame_size", "hidden", "layers",
                     "batch_size", "epochs"):
            positive_int(getattr(self, name), name)
        int_at_least(self.distractors, "distractors", 0)
        if self.seq_len is not None:
            positive_int(self.seq_len, "seq_len")
        if self.projection_dim is not None:
            positive_int(self.projection_dim, "projection_dim")
        int_choice(self.split, "split", (1, 2, 3))
        for name in ("features", "splits_dir"):             # paths: str (the config is JSON)
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (str, os.PathLike)) or not os.fspath(v)):
                raise ValueError(f"{name} must be a path or None, got {v!r}")
            setattr(self, name, None if v is None else os.fspath(v))
        if self.projection_dim is not None and self.features is not None:
            raise ValueError("projection_dim and features: choose one (a random projection of "
                             "the pixels, or an image network's features)")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("lr", "momentum", "weight_decay", "clip", "noise"):
            v = getattr(self, name)
            bound = "> 0" if name == "lr" else ">= 0"        # a zero step size trains nothing
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) \
                    or not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
                raise ValueError(f"{name} must be a finite number {bound}, got {v!r}")
        if isinstance(self.test_fraction, bool) or \
                not isinstance(self.test_fraction, (int, float, np.floating)) \
                or not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in [0, 1), got {self.test_fraction}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def solver_options(self):
        """The `SolverOptions` of this run: its fields of the same names (every `SolverOptions`
        field is a `TrainConfig` field, with the same default: the checkpoint stores them flat)."""
        return SolverOptions(**{name: getattr(self, name) for name in SOLVER_FIELDS})

    def to_dict(self):
        return asdict(self)

    @classmethod
    def with_preset(cls, name, **given):
        """The config of preset ``name`` (`presets.PRESETS`) with ``given`` options on top."""
        return cls(**resolve(name, given))

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}")
        return cls(**d)


def _data_kind(spec):
    """``(kind, argument)`` of a data spec; ValueError naming the spec if unknown."""
    if not isinstance(spec, str):
        raise ValueError(f"data must be a string, got {spec!r}")
    if spec in BUILT_IN:
        return spec, None
    kind, colon, arg = spec.partition(":")
    if colon and kind in ("npz", "frames", "uci-har", "hmdb51") and arg:
        return kind, arg
    raise ValueError(f"unknown data spec {spec!r}: use 'synthetic', 'event', 'pulse', "
                     "'npz:PATH', 'frames:ROOT', 'uci-har:ROOT' or 'hmdb51:ROOT'")


# options that only some data kinds use, and those only MGRIT uses
_DATA_ONLY = {"num_sequences": BUILT_IN, "noise": BUILT_IN, "num_classes": CLASSES_GIVEN,
              "distractors": ("event",), "frame_size": ("synthetic",) + VIDEOS,
              "projection_dim": VIDEOS, "cache_dir": VIDEOS, "features": VIDEOS,
              "split": ("hmdb51",), "splits_dir": ("hmdb51",),
              "test_fraction": BUILT_IN + ("npz", "frames")}     # uci-har, hmdb51: given splits
_MGRIT_ONLY = ("levels", "cf", "relax", "fwd_iters", "bwd_iters", "tol", "skip", "bwd_skip",
               "bwd_relax", "fwd_rtol", "bwd_rtol", "max_iters", "coarse_input")


def _unused_options(given, cfg, python=False):
    """The given options ``cfg`` would not use, each with who uses it: as command-line flags
    (``--momentum (only --optimizer sgd)``) or, with ``python``, as `train`'s keyword
    arguments (``momentum (only optimizer='sgd')``)."""
    def flag(name):                                          # skip -> --skip/--no-skip
        if python:
            return name
        f = name.replace("_", "-")
        return f"--{f}/--no-{f}" if name in ("skip", "bwd_skip") else f"--{f}"

    def only(name, *values):                                 # who uses it
        if python:
            return "only " + " or ".join(f"{name}={v!r}" for v in values)
        return f"only --{name.replace('_', '-')} " + " or ".join(map(str, values))
    kind = _data_kind(cfg.data)[0]
    spelled = ({"frames": "frames:ROOT", "npz": "npz:PATH", "uci-har": "uci-har:ROOT",
                "hmdb51": "hmdb51:ROOT"}
               if python else {})
    unused = [f"{flag(n)} ({only('data', *(spelled.get(k, k) for k in kinds))})"
              for n, kinds in _DATA_ONLY.items() if n in given and kind not in kinds]
    if "momentum" in given and cfg.optimizer != "sgd":
        unused.append(f"{flag('momentum')} ({only('optimizer', 'sgd')})")
    if cfg.solver != "mgrit":
        unused += [f"{flag(n)} ({only('solver', 'mgrit')})" for n in _MGRIT_ONLY if n in given]
    elif cfg.levels == 1:                                    # one level is serial stepping
        unused += [f"{flag(n)} (only {'levels >= 2' if python else '--levels 2 or more'}; one "
                   "level steps serially)" for n in _MGRIT_ONLY if n != "levels" and n in given]
    return unused
