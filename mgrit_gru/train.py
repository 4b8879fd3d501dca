"""Training a GRU sequence classifier, serially (exact BPTT) or parallel-in-time with MGRIT.

`train` is what ``mgrit-gru train`` runs: data -> classifier (`model`) -> forward/backward per
batch (serial or MGRIT, in one process or over the ranks of an MPI communicator) -> gradient
clipping -> optimiser step; per epoch an evaluation on the test split, one line in
``OUT/metrics.jsonl`` and a checkpoint ``OUT/checkpoint.npz`` (atomic: temporary file + rename);
at the end two plots in ``OUT``. ``resume=True`` continues the run in ``OUT`` to ``epochs`` in
total with exactly the result of an uninterrupted run (nothing random is left outside the
checkpoint: the batch order of epoch e is drawn from ``default_rng([seed, e])``).

Under MPI (``comm`` with P > 1 ranks and ``solver="mgrit"``) every rank keeps only the time rows
of each sequence that its part of the MGRIT hierarchy needs (`mgrit_gru.input_rows`; synthetic
videos are rendered for those rows only), the GRU
gradients are summed over ranks inside `mgrit_backward`, so parameters and optimiser state stay
identical on every rank, and only rank 0 prints and writes files. (``solver="serial"`` under MPI
computes the whole sequence redundantly on every rank: correct, not faster.)

Checkpoint format (``np.savez``, no pickles): the parameters under their own names
(``weight_ih_l0``, ..., ``weight_out``, ``bias_out``), the optimiser state (``optim.*``, see
`mgrit_gru.optim`), ``meta.epoch`` (completed epochs), ``meta.config`` (the `TrainConfig` as
JSON), ``meta.data`` (JSON: T, F, the number of classes and sequences of the data, for an npz
file the CRC32 and size of its ``x`` and ``y``, for a frame folder a digest of its frames' paths
and sizes; a resume on other data is refused),
``meta.format``, and the per-step records ``steps.loss``, ``steps.acc``,
``steps.fwd_residual``, ``steps.bwd_residual`` (NaN where a solve was serial).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .atomic import atomic_write, save_figure
from .checks import positive_int
from .data import atomic_savez, batches, frame_listing, load_frame_folder, load_npz, \
    moving_objects, npz_checksums, npz_shape, pulse_order, train_test_split
from .mgrit import MGRITDivergedError, agreed
from .mgrit.hierarchy import Hierarchy
from .model import SolverOptions, forward_backward, init_classifier, predict_logits
from .optim import SGD, Adam, clip_grad_norm, grad_norm
from .solve import TimeSlice, input_rows

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CURVES_PNG = "curves.png"
RESIDUALS_PNG = "residuals.png"
FORMAT = 1
OPTIMIZERS = ("adam", "sgd")
STEP_KEYS = ("loss", "acc", "fwd_residual", "bwd_residual")


class TrainingDivergedError(ValueError):
    """The training loss became NaN or Inf (learning rate too large, or the solve diverged)."""


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in the checkpoint as JSON).

    Data: ``data`` is ``"synthetic"`` (`moving_objects` videos), ``"pulse"`` (`pulse_order`),
    ``"npz:PATH"`` (`load_npz`) or ``"frames:ROOT"`` (`load_frame_folder`). ``seq_len`` is T
    (default 256 for the built-in tasks; an npz file's own T; required for frame folders).
    ``num_sequences``, ``num_classes``, ``frame_size`` and ``noise`` shape the built-in tasks
    (``frame_size`` is also the frame size frame folders are resized to; ``projection_dim`` an
    optional random projection of their frames, ``cache_dir`` their decoded-frame cache). A
    checkpoint's config holds the data's own number of classes as ``num_classes``, whatever
    the kind of data.
    ``test_fraction`` of the sequences (seeded split) is held out.

    Model: ``hidden``, ``layers``, ``cell``, ``dt``. Solver: ``solver`` and the MGRIT options
    (see `SolverOptions`). Optimiser: ``optimizer`` ("adam" or "sgd"), ``lr``, ``momentum`` (SGD),
    ``weight_decay`` (L2, as torch), ``clip`` (max gradient norm, 0 = off). Loop:
    ``batch_size``, ``epochs``, ``seed`` (data, initialisation and batch order), ``dtype``.
    """

    data: str = "synthetic"
    seq_len: int | None = None
    num_sequences: int = 1024
    num_classes: int = 4
    frame_size: int = 16
    noise: float = 0.1
    projection_dim: int | None = None
    cache_dir: str | None = None
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

    # options that may change between a run and its resumption
    RESUMABLE = ("epochs", "cache_dir", "backend")

    def __post_init__(self):
        for f in fields(self):                               # NumPy scalars (np.arange sweeps)
            v = getattr(self, f.name)                        # -> Python ones: the checkpoint's
            if isinstance(v, np.generic):                    # config is JSON
                setattr(self, f.name, v.item())
        opts = self.solver_options()                         # validates the solver fields
        self.cf, self.relax = opts.cf, opts.relax            # "4" -> 4, "FCF,F" -> [...]
        _data_kind(self.data)
        for name in ("num_sequences", "num_classes", "frame_size", "hidden", "layers",
                     "batch_size", "epochs"):
            positive_int(getattr(self, name), name)
        if self.seq_len is not None:
            positive_int(self.seq_len, "seq_len")
        if self.projection_dim is not None:
            positive_int(self.projection_dim, "projection_dim")
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
        """The `SolverOptions` of this run."""
        return SolverOptions(solver=self.solver, cell=self.cell, dt=self.dt, levels=self.levels,
                             cf=self.cf, relax=self.relax, fwd_iters=self.fwd_iters,
                             bwd_iters=self.bwd_iters, tol=self.tol, skip=self.skip,
                             bwd_skip=self.bwd_skip,
                             coarse_input=self.coarse_input, backend=self.backend)

    def to_dict(self):
        return asdict(self)

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
    if spec in ("synthetic", "pulse"):
        return spec, None
    kind, colon, arg = spec.partition(":")
    if colon and kind in ("npz", "frames") and arg:
        return kind, arg
    raise ValueError(f"unknown data spec {spec!r}: use 'synthetic', 'pulse', 'npz:PATH' or "
                     "'frames:ROOT'")


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Train/test split, batch-first ``(N, T_local, F)``; ``start`` is the fine step of column 0
    (under MPI each rank keeps only the columns it needs), ``seq_len`` the full T."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    seq_len: int
    input_size: int
    start: int = 0
    description: str = ""


def load_data(spec, seq_len=None, num_sequences=1024, num_classes=4, frame_size=16, noise=0.1,
              projection_dim=None, cache_dir=None, seed=0, time_window=None, progress=False,
              training=True):
    """``(x (N, T, F), y (N,), num_classes, description)`` for a data spec (see `TrainConfig`).

    The built-in tasks are generated in float32 (half the memory); batches are cast to the
    training dtype. ``time_window=(start, stop)``: the synthetic videos render only those
    frames, an ``.npz`` file is read and a frame folder decoded for only those rows (``x`` is then
    (N, stop - start, F)); the pulse task ignores it and returns every row.
    ``progress``: a bar while a frame folder is decoded (minutes for thousands of videos).
    ``training``: the data must hold at least two classes, and an npz file's labels must be
    class indices, not sparse ids (its largest label sets the model's outputs); False (data to
    evaluate a trained model on) accepts any non-negative labels.
    """
    kind, arg = _data_kind(spec)
    if kind == "synthetic":
        T = 256 if seq_len is None else seq_len
        x, y = moving_objects(num_sequences, T, frame_size=frame_size, num_classes=num_classes,
                              noise=noise, seed=seed, dtype=np.float32, time_window=time_window)
        desc = (f"synthetic moving-object videos: {num_sequences} x {T} frames of "
                f"{frame_size}x{frame_size}, {num_classes} classes")
        return x, y, num_classes, desc
    if kind == "pulse":
        T = 256 if seq_len is None else seq_len
        x, y = pulse_order(num_sequences, T, noise=noise, seed=seed, dtype=np.float32)
        return x, y, 2, f"pulse order: {num_sequences} x {T} steps, 2 channels, 2 classes"
    if kind == "npz":
        shape = npz_shape(arg)                               # the header: no data read yet
        T = shape[1] if len(shape) > 1 else None             # (x not 2-D or 3-D: load_npz says)
        if seq_len is not None and T is not None and seq_len != T:
            raise ValueError(f"{arg}: sequences have T = {T} steps but seq_len = "
                             f"{seq_len} was asked for (leave --seq-len out for npz data)")
        x, y = load_npz(arg, time_window=time_window, min_classes=2 if training else 1)
        C, present = int(y.max()) + 1, len(np.unique(y))
        if training and present < C / 2:                     # ids, not classes: a C-way head
            raise ValueError(f"{arg}: labels run to {C - 1} but only {present} distinct values "
                             f"occur; the model would get {C} outputs. Relabel them 0..K-1 "
                             "(np.unique(y, return_inverse=True)[1])")
        return x, y, max(C, 2), f"{arg}: {x.shape[0]} sequences x {T} steps x " \
                                f"{x.shape[2]} features, {C} classes"
    if seq_len is None:
        raise ValueError(f"{arg}: frame folders need --seq-len (frames per video after "
                         "resampling)")
    x, y, names = load_frame_folder(arg, seq_len, size=(frame_size, frame_size),
                                    projection_dim=projection_dim, seed=seed, cache_dir=cache_dir,
                                    progress=progress, time_window=time_window,
                                    min_classes=2 if training else 1)
    return x, y, max(len(names), 2), f"{arg}: {x.shape[0]} videos x {seq_len} frames x " \
                                     f"{x.shape[2]} features, classes {names}"


def _time_slice(cfg, T, comm):
    """``(start, stop)``: the input rows this rank needs (all of them without MPI)."""
    if comm is None or comm.Get_size() == 1 or cfg.solver == "serial":
        return 0, T
    return input_rows(T, comm, levels=cfg.levels, cf=cfg.cf)


def _check_backend_ranks(cfg, comm):
    """ValueError for the CUDA backend under MPI, before any work (the solver would refuse it at
    the first step, after the data, the run folder and the first files)."""
    if cfg.backend == "cuda" and comm is not None and comm.Get_size() > 1:
        raise ValueError(f"--backend cuda runs on one GPU in one process, but this run has "
                         f"{comm.Get_size()} MPI ranks: run it without mpiexec")


def prepare_data(cfg, comm=None, progress=False, training=True):
    """Load the data set of ``cfg``, split it (seeded) and keep this rank's time rows
    (``progress``: rank 0 shows a bar while a frame folder is decoded; ``training``: see
    `load_data`).

    Under MPI each rank reads and checks only its own rows, so one rank may meet an error (a NaN
    in its rows) that the others do not: the ranks agree (`agreed`) before any returns, and then
    every rank raises, so that no rank goes on to write or delete the run's files.
    """
    return agreed(comm, lambda: _prepare_data(cfg, comm, progress, training))


def _prepare_data(cfg, comm, progress, training=True):
    rank = 0 if comm is None else comm.Get_rank()
    kind, source = _data_kind(cfg.data)
    args = dict(seq_len=cfg.seq_len, num_sequences=cfg.num_sequences,
                num_classes=cfg.num_classes, frame_size=cfg.frame_size, noise=cfg.noise,
                projection_dim=cfg.projection_dim, cache_dir=cfg.cache_dir, seed=cfg.seed,
                training=training)
    window = None
    if kind == "synthetic":                                  # render only our own time rows
        T = 256 if cfg.seq_len is None else cfg.seq_len
        window = _time_slice(cfg, T, comm)
    elif kind == "npz":                                      # read only our own time rows
        shape = npz_shape(source)
        if len(shape) > 1:                                   # (else load_data names the shape)
            T = shape[1]
            window = _time_slice(cfg, T, comm)
    elif kind == "frames" and cfg.seq_len is not None:       # decode only our own time rows
        T = cfg.seq_len
        window = _time_slice(cfg, T, comm)
    x = None
    if kind == "frames" and cfg.cache_dir and comm is not None and comm.Get_size() > 1:
        first = agreed(comm, lambda: load_data(cfg.data, time_window=window, progress=progress,
                                               **args) if rank == 0 else None)
        if rank == 0:                        # a cache miss decodes once, on rank 0; the others
            x, y, C, desc = first            # wait (and stop with it), then read their rows
    if x is None:
        x, y, C, desc = load_data(cfg.data, time_window=window, progress=progress and rank == 0,
                                  **args)
    if cfg.test_fraction > 0:
        x_tr, y_tr, x_te, y_te = train_test_split(x, y, cfg.test_fraction, seed=cfg.seed)
    else:
        x_tr, y_tr, x_te, y_te = x, y, x[:0], y[:0]
    if window is None:                                       # loaded whole: keep only our rows
        T = x.shape[1]
        window = _time_slice(cfg, T, comm)
        if window != (0, T):
            x_tr = np.ascontiguousarray(x_tr[:, window[0]:window[1]])
            x_te = np.ascontiguousarray(x_te[:, window[0]:window[1]])
    start = window[0]
    del x
    return Dataset(x_tr, y_tr, x_te, y_te, C, T, x_tr.shape[2], start, desc)


# ----------------------------------------------------------------------------------------------
# one step, evaluation
# ----------------------------------------------------------------------------------------------
def _as_input(xb, data, dtype):
    """A (T_local, B, F) batch as what `forward_backward` takes: full array or TimeSlice."""
    xb = xb.astype(dtype, copy=False)
    if xb.shape[0] == data.seq_len and data.start == 0:
        return xb
    return TimeSlice(xb, data.start, data.seq_len)


def make_optimizer(cfg, params):
    """The optimiser of ``cfg`` over ``params`` (updated in place)."""
    if cfg.optimizer == "adam":
        return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def train_step(params, optimizer, x, labels, opts, clip=1.0, comm=None):
    """One training step: forward/backward (serial or MGRIT), clip, optimiser update.

    Returns the `StepResult` (loss and accuracy are those *before* the update) with
    ``grad_norm`` (before clipping) added.
    """
    try:
        res = forward_backward(params, x, labels, opts, comm=comm)
    except MGRITDivergedError as e:                          # every rank sees the same residual
        raise TrainingDivergedError(f"{e}: the parameters may have blown up: lower --lr, use "
                                    "--clip, or the implicit cell") from e
    if not math.isfinite(res.loss):
        raise TrainingDivergedError(f"training loss became {res.loss}: lower --lr, use "
                                    "--clip, or the implicit cell")
    res.grad_norm = clip_grad_norm(res.grads, clip) if clip else grad_norm(res.grads)
    if not math.isfinite(res.grad_norm):                     # before the update: the parameters
        raise TrainingDivergedError(                         # (and the checkpoint) stay finite
            f"gradient norm became {res.grad_norm} at a finite loss: lower --lr, use "
            "--clip, or the implicit cell")
    optimizer.step(res.grads)
    bad = next((k for k, v in params.items() if not np.all(np.isfinite(v))), None)
    if bad is not None:                                      # a finite gradient, an update too
        raise TrainingDivergedError(                         # large for the dtype (weight decay)
            f"the optimiser step made {bad!r} NaN or Inf (gradient norm {res.grad_norm:.3g}): "
            "lower --lr or --weight-decay, or use --dtype float64")
    return res


def evaluate_arrays(params, x, y, opts, comm=None, batch_size=256, start=0, seq_len=None,
                    dtype=None):
    """``(loss, accuracy)`` of the classifier on ``x`` (N, T_local, F), ``y`` (N,).

    Under MPI ``x`` holds this rank's time rows ``start ..`` of sequences of length ``seq_len``.
    """
    if len(y) == 0:
        return float("nan"), float("nan")
    dtype = dtype or next(iter(params.values())).dtype
    seq_len = x.shape[1] if seq_len is None else seq_len
    view = Dataset(x, y, x, y, 0, seq_len, x.shape[2], start)
    loss_sum, correct = 0.0, 0
    for xb, yb in batches(x, y, batch_size, shuffle=False):
        logits = predict_logits(params, _as_input(xb, view, dtype), opts, comm=comm)
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss_sum += -float(logp[np.arange(len(yb)), yb].sum())
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
    return loss_sum / len(y), correct / len(y)


# ----------------------------------------------------------------------------------------------
# checkpoints and metrics
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path, params, optimizer, epoch, cfg, steps, data=None):
    """Write the checkpoint atomically (temporary file in the same folder, then rename);
    ``data``: the record of the run's data (``meta.data``, see `train`), if any."""
    arrays = {k: v for k, v in params.items()}
    arrays.update(optimizer.state_dict("optim."))
    arrays["meta.format"] = np.array(FORMAT, dtype=np.int64)
    arrays["meta.epoch"] = np.array(epoch, dtype=np.int64)
    arrays["meta.config"] = np.array(json.dumps(cfg.to_dict(), sort_keys=True))
    if data is not None:
        arrays["meta.data"] = np.array(json.dumps(data))
    for k in STEP_KEYS:
        arrays[f"steps.{k}"] = np.asarray(steps[k], dtype=np.float64)
    atomic_savez(path, **arrays)


@dataclass
class Checkpoint:
    """A loaded checkpoint: parameters, optimiser state, completed epochs, config, step records,
    and the record of the run's data (``data``; None in checkpoints of older versions)."""

    params: dict
    optim_state: dict
    epoch: int
    config: TrainConfig
    steps: dict = field(default_factory=dict)
    data: dict | None = None


def load_checkpoint(path):
    """Read a checkpoint written by `save_checkpoint`; ValueError naming the file otherwise."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):                         # np.load would blame "pickled data"
        raise ValueError(f"{path}: not a .npz checkpoint (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:                                   # zip/npy errors of all kinds
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    for key in ("meta.format", "meta.epoch", "meta.config", "weight_out", "weight_hh_l0"):
        if key not in arrays:
            raise ValueError(f"{path}: not a mgrit-gru training checkpoint (no {key!r})")
    if int(arrays["meta.format"]) != FORMAT:
        raise ValueError(f"{path}: checkpoint format {int(arrays['meta.format'])}, "
                         f"this version reads {FORMAT}")
    cfg = TrainConfig.from_dict(json.loads(str(arrays["meta.config"])))
    params = {k: v for k, v in arrays.items() if "." not in k}
    optim_state = {k: v for k, v in arrays.items() if k.startswith("optim.")}
    steps = {k: list(arrays[f"steps.{k}"]) for k in STEP_KEYS if f"steps.{k}" in arrays}
    data = json.loads(str(arrays["meta.data"])) if "meta.data" in arrays else None
    return Checkpoint(params, optim_state, int(arrays["meta.epoch"]), cfg, steps, data)


def read_metrics(out):
    """The epoch records of ``OUT/metrics.jsonl`` (a list of dicts; empty if none).

    A cut-off last line (a crash or a full disk during its append: it is written after the
    previous checkpoint and before the next) is left out; any other line that is not JSON is a
    ValueError naming the file and line.
    """
    path = os.path.join(out, METRICS)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
    records = []
    for j, (i, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if j == len(lines) - 1 and not line.endswith("\n"):    # the append was cut off
                break
            raise ValueError(f"{path}, line {i}: not a JSON record ({e})") from None
    return records


def _write_metrics(out, records):
    """Rewrite metrics.jsonl atomically with ``records``."""
    with atomic_write(os.path.join(out, METRICS)) as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _append_metrics(out, record):
    with open(os.path.join(out, METRICS), "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def plot_run(out, history, steps, title=""):
    """Save ``OUT/curves.png`` (loss and accuracy per epoch) and ``OUT/residuals.png`` (the
    last forward/backward MGRIT residual of every training step); return both paths."""
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    n_steps = len(steps["loss"])
    if n_steps and ep:
        per = n_steps / ep[-1]
        a1.plot(np.arange(1, n_steps + 1) / per, steps["loss"], color="0.75", lw=0.8,
                label="train loss (per step)")
    a1.plot(ep, [r["train_loss"] for r in history], "o-", label="train loss")
    nan = float("nan")                                       # no test split: null, not drawn
    if any(r["test_loss"] is not None for r in history):
        a1.plot(ep, [nan if r["test_loss"] is None else r["test_loss"] for r in history], "s-",
                label="test loss")
    a1.set_xlabel("epoch"), a1.set_ylabel("cross-entropy"), a1.legend()
    a2.plot(ep, [100 * r["train_acc"] for r in history], "o-", label="train")
    if any(r["test_acc"] is not None for r in history):
        a2.plot(ep, [nan if r["test_acc"] is None else 100 * r["test_acc"] for r in history],
                "s-", label="test")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy (%)"), a2.set_ylim(0, 102), a2.legend()
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    curves = os.path.join(out, CURVES_PNG)
    save_figure(fig, curves, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    k = np.arange(1, n_steps + 1)
    f, b = np.asarray(steps["fwd_residual"], float), np.asarray(steps["bwd_residual"], float)
    if n_steps and np.any(np.isfinite(f)):
        exact = not np.any((f > 0) | (b > 0))               # levels=1: every r = 0, no log axis
        draw = ax.plot if exact else ax.semilogy
        draw(k, f, label="forward solve")
        draw(k, b, label="backward (adjoint) solve")
        if exact:
            ax.text(0.5, 0.75, "one level: sequential solves, residual exactly 0", ha="center",
                    transform=ax.transAxes)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "serial solver: no MGRIT residuals", ha="center",
                transform=ax.transAxes)
    ax.set_xlabel("training step"), ax.set_ylabel("final MGRIT residual ‖r‖₂")
    ax.set_title(title or "MGRIT residual per training step")
    fig.tight_layout()
    residuals = os.path.join(out, RESIDUALS_PNG)
    save_figure(fig, residuals, dpi=110)
    plt.close(fig)
    return curves, residuals


# ----------------------------------------------------------------------------------------------
# the training loop
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train` returns (on every rank; files are written by rank 0 only)."""

    params: dict
    history: list
    steps: dict
    config: TrainConfig
    out: str | None = None
    plots: tuple = ()
    seconds: float = 0.0


def _absolute_data(spec):
    """The data spec with its file or folder as an absolute path: what a checkpoint stores, so
    that the run can be evaluated and resumed from any working directory."""
    kind, source = _data_kind(spec)
    return spec if source is None else f"{kind}:{_data_name(spec)}"


def _mismatch(a, b, other_file=False):
    """The options of config ``a`` that differ from checkpoint config ``b`` and may not.

    A checkpoint records the data's own number of classes as ``num_classes`` (only synthetic
    data takes it as an option). ``other_file``: another npz file may stand in for ``b``'s
    (the comparison with the checkpoint's data record decides)."""
    da, db = a.to_dict(), b.to_dict()
    da["data"], db["data"] = _absolute_data(da["data"]), _absolute_data(db["data"])
    kind_a, kind_b = _data_kind(da["data"])[0], _data_kind(db["data"])[0]
    free = set(TrainConfig.RESUMABLE)
    if kind_a == kind_b != "synthetic":
        free.add("num_classes")
    if kind_a == kind_b == "npz" and other_file:
        free.add("data")
    return sorted(k for k in da if k not in free and da[k] != db[k])


_DATA_FIELDS = ("T", "F", "classes", "sequences")


def _data_record(data, spec, listing=True):
    """What a checkpoint records of its run's data (``meta.data``): T, F, the numbers of classes
    and sequences, for an npz file the CRC32 and size of ``x`` and ``y`` (`npz_checksums`), and
    for a frame folder the digest of its frames' paths and sizes (`frame_listing`; only where
    ``listing``: it stats every frame, which rank 0 alone needs to do)."""
    record = {"T": int(data.seq_len), "F": int(data.input_size),
              "classes": int(data.num_classes), "sequences": len(data.y_train) + len(data.y_test)}
    kind, source = _data_kind(spec)
    if kind == "npz":
        record["members"] = npz_checksums(source)
    elif kind == "frames" and listing:
        record["listing"] = frame_listing(source)
    return record


def _data_changes(now, then):
    """How data record ``now`` differs from a checkpoint's ``then``, as phrases ("T 64
    (checkpoint: 32)"); empty for the same data. What ``then`` lacks is not compared."""
    changes = [f"{k} {now.get(k)} (checkpoint: {then[k]})" for k in _DATA_FIELDS
               if k in then and now.get(k) != then[k]]
    if changes:                                              # (the CRCs differ too, surely)
        return changes
    for name, was in then.get("members", {}).items():
        got = now.get("members", {}).get(name)
        if got is not None and list(got) != list(was):
            changes.append(f"{name} CRC32 {got[0]:08x}, {got[1]} bytes (checkpoint: "
                           f"{was[0]:08x}, {was[1]} bytes)")
    got, was = now.get("listing"), then.get("listing")
    if got is not None and was is not None and got != was:   # (a rank that skipped it: None)
        changes.append(f"frame files {got['frames']}, names and sizes {got['sha256']} "
                       f"(checkpoint: {was['frames']}, {was['sha256']})")
    return changes


def _same_npz(spec, ckpt):
    """Whether ``spec`` names an npz file whose x and y are the checkpoint's recorded ones (a
    moved or copied data file); False where the checkpoint records no checksums."""
    kind, source = _data_kind(spec)
    members = (ckpt.data or {}).get("members")
    if kind != "npz" or _data_kind(ckpt.config.data)[0] != "npz" or members is None \
            or not os.path.isfile(source):
        return False
    try:
        return npz_checksums(source) == members              # (JSON: lists, as it gives)
    except ValueError:                                       # not an npz: the loader says so
        return False


def _check_run_data(spec, ckpt, where, moved_ok):
    """ValueError when ``spec`` is the checkpoint's data and its file or folder is gone: said as
    such, with the way on (a plain "no such file" named neither). ``moved_ok``: another path
    to the data may be given with --data."""
    kind, source = _data_kind(spec)
    if source is None or _absolute_data(spec) != _absolute_data(ckpt.config.data):
        return
    source = _data_name(spec)
    if os.path.isfile(source) if kind == "npz" else os.path.isdir(source):
        return
    what = "file" if kind == "npz" else "folder"
    if moved_ok:
        how = f"if it was moved, pass --data {kind}:{'NEWPATH' if kind == 'npz' else 'NEWROOT'}"
    elif kind == "npz":
        how = ("this checkpoint (of an older version) does not record what the data was, so "
               "it resumes on that path only: put the file back there")
    else:
        how = "put it (or a link to it) back at that path to resume"
    raise ValueError(f"{where}: the run's data {what} {source} (recorded in the checkpoint) is "
                     f"missing; {how}")


def _data_name(spec):
    """The data's file or folder as an absolute path, or the built-in task's name."""
    source = _data_kind(spec)[1]
    return spec if source is None else os.path.abspath(source)


def _bar(iterable=None, rank=0, progress=True, **kw):
    from tqdm import tqdm
    disable = True if (rank != 0 or not progress) else None  # None: off when not a TTY
    return tqdm(iterable, disable=disable, dynamic_ncols=True, file=sys.stderr, **kw)


def _say(line):
    from tqdm import tqdm
    tqdm.write(line)                                         # does not break a running bar


def _fmt_res(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.2e}"


def _open_run(cfg, out, ckpt_path, resume, overwrite):
    """The checkpoint to resume (or None), after the checks that the run folder allows this
    run: --resume needs a checkpoint whose options and data fit; without it, none may exist
    unless ``overwrite``."""
    ckpt = None
    if out is not None:
        if resume:
            if not os.path.isfile(ckpt_path):
                raise ValueError(f"{ckpt_path}: no checkpoint to resume (run without --resume "
                                 "/ resume=True)")
            ckpt = load_checkpoint(ckpt_path)
            bad = _mismatch(cfg, ckpt.config, other_file=ckpt.data is not None)
            if bad:
                raise ValueError(f"{ckpt_path}: options differ from the checkpoint's: " +
                                 ", ".join(f"{k}={getattr(cfg, k)!r} (checkpoint: "
                                           f"{getattr(ckpt.config, k)!r})" for k in bad))
            _check_run_data(cfg.data, ckpt, ckpt_path, moved_ok=_data_kind(cfg.data)[0] == "npz"
                            and ckpt.data is not None)
        elif os.path.isfile(ckpt_path) and not overwrite:
            raise ValueError(f"{ckpt_path} exists: pass --resume (resume=True) to continue "
                             "that run, --overwrite (overwrite=True) to start afresh, or another "
                             "--out")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file, not a run folder")
    elif resume:
        raise ValueError("resume needs an out folder")
    return ckpt


def _check_fit(cfg, data, data_record, ckpt, ckpt_path, comm):
    """ValueError unless the loaded data is the resumed run's (T, F, classes, files: before
    the model is built) and, for MGRIT, the hierarchy fits its T on these ranks."""
    changes = [] if ckpt is None or ckpt.data is None else _data_changes(data_record, ckpt.data)
    if changes:
        now, then = _data_name(cfg.data), _data_name(ckpt.config.data)
        raise ValueError(f"{ckpt_path}: " + (
            f"the data in {now} no longer matches the checkpoint's: " if now == then else
            f"{now} holds other data than the run was trained on ({then}): ")
            + ", ".join(changes))
    if cfg.solver == "mgrit":
        Hierarchy(data.seq_len, cfg.cf, cfg.levels, rank=0 if comm is None else comm.Get_rank(),
                  size=1 if comm is None else comm.Get_size())


def train(config=None, out=None, resume=False, overwrite=False, comm=None, progress=True,
          verbose=True, plots=True, **options):
    """Train the classifier; write metrics, checkpoints and plots to ``out`` (if given).

    Parameters
    ----------
    config : TrainConfig, optional
        The run; or give its fields as keyword ``options`` (e.g. ``seq_len=512``). Keyword
        options the run does not use (``momentum`` with Adam, MGRIT's with ``solver="serial"``
        or ``levels=1``, data options of another kind of data) get a UserWarning naming them.
    out : str, optional
        Run folder for ``metrics.jsonl``, ``checkpoint.npz`` and the plots (rank 0 writes).
    resume : bool
        Continue the run in ``out`` from its checkpoint up to ``config.epochs`` epochs in total;
        the options must equal the checkpoint's (except ``epochs``, ``cache_dir`` and
        ``backend``), and the data must be what the checkpoint records (T, F, classes,
        sequences; an npz file's checksums, under which another npz path is accepted).
    overwrite : bool
        Start afresh even if ``out`` holds a checkpoint (otherwise that is an error).
    comm : mpi4py communicator, optional
        Split the time axis of every sequence over its ranks (MGRIT).
    progress : bool
        tqdm bars (rank 0, when stderr is a terminal).
    verbose : bool
        One summary line per epoch on rank 0.
    plots : bool
        Save the PNGs at the end.

    Returns
    -------
    TrainResult
    """
    if config is None:
        config = TrainConfig(**options)
    elif options:
        config = TrainConfig.from_dict({**config.to_dict(), **options})
    cfg = config
    if comm is not None and comm.Get_size() == 1:
        comm = None
    _check_backend_ranks(cfg, comm)
    if cfg.backend == "cuda":                                # before the data, not after it
        from .cuda.backend import require_gpu
        require_gpu()
    if comm is not None:
        from .mgrit import MPIComm
        comm_w = MPIComm(comm)                               # one wrapper for the whole run
    else:
        comm_w = None
    rank = 0 if comm is None else comm.Get_rank()
    unused = _unused_options(options, cfg, python=True)     # keywords: we know what was given
    if unused and rank == 0:                                 # (a sweep may share them: a warning)
        warnings.warn("this run does not use " + "; ".join(unused), UserWarning, stacklevel=2)
    say = _say if (verbose and rank == 0) else (lambda s: None)
    ckpt_path = None if out is None else os.path.join(out, CHECKPOINT)
    # every rank reads the run folder; under mpiexec an error is printed once (`agreed`)
    ckpt = agreed(comm, lambda: _open_run(cfg, out, ckpt_path, resume, overwrite))

    t_start = time.perf_counter()
    dtype = np.dtype(cfg.dtype)
    data = prepare_data(cfg, comm, progress)                 # validates the data spec first:
    data_record = _data_record(data, cfg.data, listing=rank == 0)   # (rank 0 checks, writes)
    agreed(comm, lambda: _check_fit(cfg, data, data_record, ckpt, ckpt_path, comm))
    opts = cfg.solver_options()
    if out is not None and rank == 0:                        # a refused run leaves no folder
        os.makedirs(out, exist_ok=True)                      # and touches no file
    params = init_classifier(data.input_size, cfg.hidden, cfg.layers, data.num_classes,
                             seed=cfg.seed, dtype=dtype)
    optimizer = make_optimizer(cfg, params)
    steps = {k: [] for k in STEP_KEYS}
    history, first_epoch = [], 1
    if ckpt is not None:
        for k, v in ckpt.params.items():
            if k not in params or v.shape != params[k].shape or v.dtype != params[k].dtype:
                raise ValueError(f"{ckpt_path}: parameter {k!r} does not fit the model")
            params[k][...] = v
        optimizer.load_state_dict(ckpt.optim_state)
        steps = {k: list(ckpt.steps.get(k, [])) for k in STEP_KEYS}
        first_epoch = ckpt.epoch + 1
        history = [r for r in read_metrics(out) if r.get("epoch", 0) <= ckpt.epoch]
        if rank == 0:
            _write_metrics(out, history)                     # drop epochs past the checkpoint
        say(f"resuming {out} after epoch {ckpt.epoch}" if ckpt.epoch < cfg.epochs else
            f"{out} already has {ckpt.epoch} epoch(s), --epochs {cfg.epochs}: nothing to train "
            "(--epochs is the total; raise it to continue)")
    # afresh into a folder with an old run (--overwrite): the old run stays whole until this
    # one has an epoch to replace it with (a run that fails in its first epoch loses nothing)
    replace_old = ckpt is None and out is not None and rank == 0
    saved_cfg = replace(cfg, data=_absolute_data(cfg.data),   # (the new path, if it moved)
                        num_classes=cfg.num_classes if _data_kind(cfg.data)[0] == "synthetic"
                        else data.num_classes)                  # the data's own, not the option
    n_ranks = 1 if comm is None else comm.Get_size()
    say(f"{data.description}; {len(data.y_train)} train / {len(data.y_test)} test; "
        f"GRU {cfg.layers}x{cfg.hidden} {cfg.cell}; solver {cfg.solver}"
        + (f" (levels {cfg.levels}, cf {cfg.cf}, {cfg.relax}, {cfg.fwd_iters} fwd / "
           f"{cfg.bwd_iters} bwd iterations)" if cfg.solver == "mgrit" else " (exact BPTT)")
        + f"; {n_ranks} rank(s)")

    n_batches = math.ceil(len(data.y_train) / cfg.batch_size)
    epochs_bar = _bar(range(first_epoch, cfg.epochs + 1), rank, progress, desc="epochs",
                      initial=first_epoch - 1, total=cfg.epochs)
    for epoch in epochs_bar:
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        res = None
        bar = _bar(batches(data.x_train, data.y_train, cfg.batch_size, shuffle=True,
                           seed=np.random.default_rng([cfg.seed, epoch])),
                   rank, progress, desc=f"epoch {epoch}", total=n_batches, leave=False)
        for xb, yb in bar:
            res = train_step(params, optimizer, _as_input(xb, data, dtype), yb, opts,
                             clip=cfg.clip, comm=comm_w)
            loss_sum += res.loss * res.batch
            correct += res.correct
            seen += res.batch
            steps["loss"].append(res.loss)
            steps["acc"].append(res.correct / res.batch)
            steps["fwd_residual"].append(np.nan if res.fwd_residual is None else res.fwd_residual)
            steps["bwd_residual"].append(np.nan if res.bwd_residual is None else res.bwd_residual)
            bar.set_postfix(loss=f"{res.loss:.3f}", acc=f"{correct / seen:.3f}",
                            res_f=_fmt_res(res.fwd_residual), res_b=_fmt_res(res.bwd_residual),
                            refresh=False)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        test_loss, test_acc = None, None                     # no test split: JSON null
        if len(data.y_test):
            test_loss, test_acc = evaluate_arrays(params, data.x_test, data.y_test, opts,
                                                  comm=comm_w, start=data.start,
                                                  seq_len=data.seq_len, dtype=dtype)
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds,
                  "eval_seconds": time.perf_counter() - t1,
                  "last_fwd_residual": None if res is None else res.fwd_residual,
                  "last_bwd_residual": None if res is None else res.bwd_residual,
                  "steps": len(steps["loss"]), "solver": cfg.solver, "ranks": n_ranks}
        history.append(record)
        test = ("no test split" if test_loss is None else
                f"test loss {test_loss:.4f} acc {100 * test_acc:.1f}%")
        epochs_bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                               test_acc="-" if test_acc is None else f"{test_acc:.3f}",
                               refresh=False)
        say(f"epoch {epoch}/{cfg.epochs}: train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_acc']:.1f}% | {test} | {seconds:.1f} s | "
            f"last residual fwd "
            f"{_fmt_res(record['last_fwd_residual'])} bwd {_fmt_res(record['last_bwd_residual'])}")
        if replace_old:                                      # the old checkpoint first: no
            if os.path.isfile(ckpt_path):                    # --resume may continue it with
                os.remove(ckpt_path)                         # the new metrics
            _write_metrics(out, [record])
            replace_old = False
        elif out is not None and rank == 0:                  # metrics first, then the checkpoint:
            _append_metrics(out, record)                     # resume drops lines past it
        if out is not None and rank == 0:
            save_checkpoint(ckpt_path, params, optimizer, epoch, saved_cfg, steps, data_record)
    epochs_bar.close()
    paths = ()
    if out is not None and rank == 0 and plots and history:
        paths = plot_run(out, history, steps,
                         title=f"{cfg.solver}: T={data.seq_len}, H={cfg.hidden}")
    if comm is not None:
        comm.Barrier()                                       # files complete before anyone leaves
    return TrainResult(params, history, steps, cfg, out, paths, time.perf_counter() - t_start)


def evaluate_checkpoint(path, data=None, split=None, comm=None, **solver_overrides):
    """``(loss, accuracy, n)`` of a checkpoint's model on a data set.

    ``data`` defaults to the run's own data; ``split`` ("test", "train" or "all") defaults to
    "test" for the run's own data and "all" for other data. An npz file the checkpoint's record
    shows to hold the run's data (a moved copy) counts as the run's own; the run's own file
    that has changed since (by that record) has no "test" or "train" split of the run's, only
    "all". ``solver_overrides`` (``solver``, ``fwd_iters``, ...) change how the forward pass
    is computed.
    """
    path = os.fspath(path)
    ck = load_checkpoint(path)
    cfg_d = ck.config.to_dict()
    cfg_d.update({k: v for k, v in solver_overrides.items() if v is not None})
    own = data is None or _absolute_data(data) == _absolute_data(ck.config.data)
    if own:
        _check_run_data(ck.config.data, ck, path, moved_ok=True)
    else:
        own = _same_npz(data, ck)
    if data is not None:
        cfg_d["data"] = data
    split = split or ("test" if own else "all")
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    if split == "all":
        cfg_d["test_fraction"] = 0.0
    if not own and _data_kind(cfg_d["data"])[0] == "npz":
        cfg_d["seq_len"] = None                              # the file's own T
    cfg = TrainConfig.from_dict(cfg_d)
    if solver_overrides.get("fwd_iters") is not None and cfg.solver != "mgrit":
        raise ValueError("--fwd-iters is for MGRIT; this evaluation uses the serial solver")
    if comm is not None and comm.Get_size() == 1:
        comm = None
    _check_backend_ranks(cfg, comm)
    comm_w = None
    if comm is not None:                     # first: an error on one rank (say, a NaN in its rows
        from .mgrit import MPIComm           # of the data) then ends the job, as in train()
        comm_w = MPIComm(comm)
    d = prepare_data(cfg, comm, training=False)
    if own and split != "all" and ck.data is not None:
        changes = _data_changes(_data_record(d, cfg.data), ck.data)
        if changes:
            raise ValueError(f"{path}: the data in {_data_name(cfg.data)} no longer matches the "
                             f"checkpoint's: {', '.join(changes)}; its {split} split is not the "
                             "run's any more (--split all evaluates on all of it)")
    x, y = {"test": (d.x_test, d.y_test), "train": (d.x_train, d.y_train),
            "all": (d.x_train, d.y_train)}[split]
    F = ck.params["weight_ih_l0"].shape[1]
    if d.input_size != F:
        raise ValueError(f"{cfg.data}: {d.input_size} features per step, the model takes {F}")
    if len(y) == 0:
        raise ValueError(f"the {split} split of {cfg.data} is empty (test_fraction "
                         f"{cfg.test_fraction}): use --split train or --split all")
    C = ck.params["weight_out"].shape[0]
    if y.max() >= C:
        raise ValueError(f"{cfg.data}: label {y.max()} out of range for a {C}-class model")
    loss, acc = evaluate_arrays(ck.params, x, y, cfg.solver_options(), comm=comm_w,
                                start=d.start, seq_len=d.seq_len)
    return loss, acc, len(y)


# ----------------------------------------------------------------------------------------------
# the demo
# ----------------------------------------------------------------------------------------------
DEMO = dict(data="synthetic", seq_len=128, num_sequences=640, frame_size=16, noise=0.1,
            hidden=32, layers=1, cell="classic", solver="mgrit", levels=3, cf=4, relax="FCF",
            fwd_iters=2, bwd_iters=1, optimizer="adam", lr=1e-2, clip=1.0, batch_size=32,
            epochs=5, seed=0, dtype="float64")
"""The demo's settings: 512 training videos of 128 frames, about 10 s on one laptop core
(8 s measured with one thread on the 2-vCPU development machine)."""


def demo(out="runs/demo", comm=None, progress=True, **overrides):
    """Train the demo model (`DEMO` settings, MGRIT) into ``out`` and return the `TrainResult`.

    A rerun replaces an earlier demo in ``out``; a folder holding any other run is refused (the
    demo must not overwrite a user's training run)."""
    cfg = TrainConfig(**{**DEMO, **overrides})
    ckpt_path = os.path.join(out, CHECKPOINT)
    if os.path.isfile(ckpt_path):
        try:
            other = [k for k in _mismatch(cfg, load_checkpoint(ckpt_path).config) if k != "solver"]
        except ValueError:                                   # unreadable: not ours to replace
            other = ["checkpoint"]
        if other:
            raise ValueError(f"{ckpt_path} holds a run that is not the demo's (its "
                             f"{', '.join(other[:4])} differ): the demo replaces only its own "
                             "runs; pass another --out")
    return train(cfg, out=out, overwrite=True, comm=comm, progress=progress)


# ----------------------------------------------------------------------------------------------
# command-line glue (mgrit-gru train / evaluate / demo)
# ----------------------------------------------------------------------------------------------
_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_PROCID",
            "MPI_LOCALNRANKS")


def world_comm():
    """``MPI.COMM_WORLD`` when started by mpiexec with more than one rank, else None.

    mpi4py is imported only when an MPI launcher's environment variables are present, so a plain
    ``mgrit-gru train`` never initialises MPI.
    """
    if not any(k in os.environ for k in _MPI_ENV):
        return None
    try:
        from mpi4py import MPI
    except ImportError:                                      # pragma: no cover
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


# options that only some data kinds use, and those only MGRIT uses
_DATA_ONLY = {"num_sequences": ("synthetic", "pulse"), "noise": ("synthetic", "pulse"),
              "num_classes": ("synthetic",), "frame_size": ("synthetic", "frames"),
              "projection_dim": ("frames",), "cache_dir": ("frames",)}
_MGRIT_ONLY = ("levels", "cf", "relax", "fwd_iters", "bwd_iters", "tol", "skip", "bwd_skip",
               "coarse_input")


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
    spelled = {"frames": "frames:ROOT", "npz": "npz:PATH"} if python else {}
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


def train_from_options(options, out, resume=False, overwrite=False, progress=True,
                       verbose=True, comm="world"):
    """`train` with ``options`` (TrainConfig fields; None = not given).

    Options not given take `TrainConfig`'s defaults, or, with ``resume``, the checkpoint's (so
    ``--resume --epochs 10`` is enough to continue a run).
    """
    comm = world_comm() if comm == "world" else comm

    def config():
        given = {k: v for k, v in options.items() if v is not None}
        base = TrainConfig().to_dict()
        ckpt_path = os.path.join(out, CHECKPOINT)
        if resume and os.path.isfile(ckpt_path):
            base = load_checkpoint(ckpt_path).config.to_dict()
        cfg = TrainConfig.from_dict({**base, **given})
        unused = _unused_options(given, cfg)
        if unused:                                           # as bench: refused, not ignored
            raise ValueError("this run would not use " + "; ".join(unused))
        return cfg
    # every rank checks the same options: agreed, so that a bad one is printed once, not P times
    cfg = agreed(comm, config)
    return train(cfg, out=out, resume=resume, overwrite=overwrite, comm=comm,
                 progress=progress, verbose=verbose)
