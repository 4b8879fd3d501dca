"""Training a GRU sequence classifier, serially (exact BPTT) or parallel-in-time with MGRIT.

`train` is what ``mgrit-gru train`` runs: data -> classifier (`model`) -> forward/backward per
batch (serial or MGRIT, in one process or over the ranks of an MPI communicator) -> gradient
clipping -> optimiser step; per epoch an evaluation on the test split, one line in
``OUT/metrics.jsonl`` and a checkpoint ``OUT/checkpoint.npz`` (atomic: temporary file + rename;
format in `checkpoint`); at the end two plots in ``OUT``. ``resume=True`` continues the run in
``OUT`` to ``epochs`` in total with exactly the result of an uninterrupted run (nothing random
is left outside the checkpoint: the batch order of epoch e is drawn from
``default_rng([seed, e])``).

Under MPI (``comm`` with P > 1 ranks and ``solver="mgrit"``) every rank keeps only the time rows
of each sequence that its part of the MGRIT hierarchy needs (`mgrit_gru.input_rows`; synthetic
videos are rendered for those rows only), the GRU gradients are summed over ranks inside
`mgrit_backward`, so parameters and optimiser state stay identical on every rank, and only
rank 0 prints and writes files. (``solver="serial"`` under MPI computes the whole sequence
redundantly on every rank: correct, not faster.)
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..checks import check_flag
from ..mgrit import MGRITDivergedError, agreed
from .agreement import data_identity, same_on_every_rank
from .checkpoint import (CHECKPOINT, METRICS, STEP_KEYS, RunWriter, load_checkpoint, new_run_id,
                         save_checkpoint)
from .config import CLASSES_GIVEN, TrainConfig, _data_kind, _unused_options
from .data import batches
from .datasets import Dataset, _as_input, _check_backend_ranks, prepare_data
from .lock import run_folder_lock
from .model import forward_backward, init_classifier, predict_logits
from .optim import SGD, Adam, clip_grad_norm, grad_norm
from .plots import plot_run
from .runfolder import (_absolute_data, _check_fit, _check_run_data, _data_changes,
                        _data_name, _data_record, _open_run, _same_npz)

class TrainingDivergedError(ValueError):
    """The training loss became NaN or Inf (learning rate too large, or the solve diverged)."""


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


@dataclass
class TrainResult:
    """What `train` returns (on every rank; files are written by rank 0 only); ``run`` is the
    run's identity, as its checkpoint and metrics lines hold it (None without ``out``)."""

    params: dict
    history: list
    steps: dict
    config: TrainConfig
    out: str | None = None
    plots: tuple = ()
    seconds: float = 0.0
    run: str | None = None




def _bar(iterable=None, rank=0, progress=True, **kw):
    from tqdm import tqdm
    disable = True if (rank != 0 or not progress) else None  # None: off when not a TTY
    return tqdm(iterable, disable=disable, dynamic_ncols=True, file=sys.stderr, **kw)


def _say(line):
    from tqdm import tqdm
    tqdm.write(line)                                         # does not break a running bar


def _solver_line(opts):
    """``levels 3, cf 4, relax FCF / bwd F,FCF,FCF, 2 fwd / 1 bwd iterations, skip``."""
    f, b = opts.forward_options, opts.backward_options
    show = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
    skip = ("skip" if f.skip else "no skip") if f.skip == b.skip else \
        f"skip {'on' if f.skip else 'off'} / bwd {'on' if b.skip else 'off'}"
    relax = show(f.relax) + ("" if f.relax == b.relax else f" / bwd {show(b.relax)}")
    budget = lambda o: (f"rtol {o.tol:g} (<= {o.max_iter})" if o.tol_type == "relative"
                        else str(o.max_iter))
    return (f"levels {f.levels}, cf {show(f.cf)}, relax {relax}, {budget(f)} fwd / "
            f"{budget(b)} bwd iterations, {skip}")


def _fmt_res(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.2e}"




def train(config=None, out=None, resume=False, overwrite=False, comm=None, progress=True,
          verbose=True, plots=True, preset=None, **options):
    """Train the classifier; write metrics, checkpoints and plots to ``out`` (if given).

    Parameters
    ----------
    config : TrainConfig, optional
        The run; or give its fields as keyword ``options`` (e.g. ``seq_len=512``). Keyword
        options the run does not use (``momentum`` with Adam, MGRIT's with ``solver="serial"``
        or ``levels=1``, data options of another kind of data) get a UserWarning naming them.
    out : str, optional
        Run folder for ``metrics.jsonl``, ``checkpoint.npz`` and the plots (rank 0 writes). It
        holds one run at a time: the run locks it (`mgrit_gru.training.lock`) before reading or
        writing anything, and a second run on it is refused at once.
    resume : bool
        Continue the run in ``out`` from its checkpoint up to ``config.epochs`` epochs in total;
        the options must equal the checkpoint's (except ``epochs``, ``cache_dir`` and
        ``backend``), and the data must be what the checkpoint records (T, F, classes,
        sequences; an npz file's checksums, under which another npz path is accepted). The
        checkpoint must match its digest and hold every array of its format, and
        ``metrics.jsonl`` its epochs of the same run (`check_metrics`).
    overwrite : bool
        Start afresh even if ``out`` holds a checkpoint (otherwise that is an error); the old
        run stays whole until the new one's first checkpoint replaces it.
    comm : mpi4py communicator, optional
        Split the time axis of every sequence over its ranks (MGRIT). Every rank must pass the
        same options and load the same data (compared before the first step).
    progress : bool
        tqdm bars (rank 0, when stderr is a terminal).
    verbose : bool
        One summary line per epoch on rank 0.
    plots : bool
        Save the PNGs at the end.
    preset : str, optional
        Start from a named set of options (``"torchbraid"``: the authors' network and solver,
        `mgrit_gru.training.presets`); keyword ``options`` override its values.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Bad options; ``resume`` with ``overwrite``; a run folder that another run holds, or
        whose files do not allow this run (each named with the field and what was expected);
        ranks that disagree; data the run cannot use; a model too large for the memory.
    """
    resume, overwrite = check_flag(resume, "resume"), check_flag(overwrite, "overwrite")
    if resume and overwrite:
        raise ValueError("resume continues the run in out and overwrite starts it afresh: "
                         "pass one of them")
    if preset is not None:
        if config is not None:
            raise ValueError("give preset with keyword options, not with a config (a config "
                             "already holds every option)")
        config = TrainConfig.with_preset(preset, **options)
    elif config is None:
        config = TrainConfig(**options)
    elif options:
        config = TrainConfig.from_dict({**config.to_dict(), **options})
    cfg = config
    if comm is not None and comm.Get_size() == 1:
        comm = None
    _check_backend_ranks(cfg, comm)
    if cfg.backend == "cuda":                                # before the data, not after it
        from ..cuda.backend import require_gpu
        require_gpu()
    rank = 0 if comm is None else comm.Get_rank()
    unused = _unused_options(options, cfg, python=True)     # keywords: we know what was given
    if unused and rank == 0:                                 # (a sweep may share them: a warning)
        warnings.warn("this run does not use " + "; ".join(unused), UserWarning, stacklevel=2)
    same_on_every_rank(comm, "train", {**cfg.to_dict(), "resume": resume, "overwrite": overwrite,
                                       "out": None if out is None else os.fspath(out)})
    with run_folder_lock(out, comm):
        return _train(cfg, out, resume, overwrite, comm, progress, verbose, plots)


def _train(cfg, out, resume, overwrite, comm, progress, verbose, plots):
    """`train` once its options are checked, holding the run folder."""
    if comm is not None:
        from ..mgrit import MPIComm
        comm_w = MPIComm(comm)                               # one wrapper for the whole run
    else:
        comm_w = None
    rank = 0 if comm is None else comm.Get_rank()
    say = _say if (verbose and rank == 0) else (lambda s: None)
    ckpt_path = None if out is None else os.path.join(out, CHECKPOINT)
    # every rank reads the run folder; under mpiexec an error is printed once (`agreed`)
    ckpt, history, stale = agreed(comm, lambda: _open_run(cfg, out, ckpt_path, resume,
                                                          overwrite))

    t_start = time.perf_counter()
    dtype = np.dtype(cfg.dtype)
    data = prepare_data(cfg, comm, progress)                 # validates the data spec first:
    data_record = _data_record(data, cfg.data, listing=rank == 0, cfg=cfg)   # (rank 0 checks, writes)
    if comm is not None:
        same_on_every_rank(comm, "train data", data_identity(data, data_record))
    n_batches = math.ceil(len(data.y_train) / cfg.batch_size)
    agreed(comm, lambda: _check_fit(cfg, data, data_record, ckpt, ckpt_path, comm, n_batches))
    opts = cfg.solver_options()
    params, optimizer = agreed(comm, lambda: _build(cfg, data, ckpt, ckpt_path))
    steps = {k: [] for k in STEP_KEYS}
    first_epoch, run = 1, None
    if ckpt is not None:
        steps = {k: list(ckpt.steps[k]) for k in STEP_KEYS}
        first_epoch, run = ckpt.epoch + 1, ckpt.run
        if stale and ckpt.epoch < cfg.epochs:
            say(f"{os.path.join(out, METRICS)}: its line after epoch {ckpt.epoch} (written "
                "before a checkpoint that never came) is dropped")
        say(f"resuming {out} after epoch {ckpt.epoch}" if ckpt.epoch < cfg.epochs else
            f"{out} already has {ckpt.epoch} epoch(s), --epochs {cfg.epochs}: nothing to train "
            "(--epochs is the total; raise it to continue)")
    elif out is not None:
        run = new_run_id() if comm is None else comm.bcast(new_run_id() if rank == 0 else None)
    # afresh into a folder with an old run (--overwrite): the old run stays whole until this
    # one's first checkpoint replaces it (`RunWriter`)
    writer = RunWriter(out, history, new=ckpt is None, stale=stale) \
        if out is not None and rank == 0 else None
    saved_cfg = replace(cfg, data=_absolute_data(cfg.data),   # (the new path, if it moved)
                        features=cfg.features and os.path.abspath(cfg.features),
                        splits_dir=cfg.splits_dir and os.path.abspath(cfg.splits_dir),
                        num_classes=cfg.num_classes if _data_kind(cfg.data)[0] in CLASSES_GIVEN
                        else data.num_classes)                  # the data's own, not the option
    n_ranks = 1 if comm is None else comm.Get_size()
    say(f"{data.description}; {len(data.y_train)} train / {len(data.y_test)} test; "
        f"GRU {cfg.layers}x{cfg.hidden} {cfg.cell}; solver {cfg.solver}"
        + (f" ({_solver_line(opts)})" if cfg.solver == "mgrit" else " (exact BPTT)")
        + (f"; preset {cfg.preset}" if cfg.preset else "") + f"; {n_ranks} rank(s)")

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
            steps["fwd_iters"].append(res.fwd_iterations)
            steps["bwd_iters"].append(res.bwd_iterations)
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
        record = {"epoch": epoch, "run": run, "train_loss": loss_sum / seen,
                  "train_acc": correct / seen,
                  "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds,
                  "eval_seconds": time.perf_counter() - t1,
                  "last_fwd_residual": None if res is None else res.fwd_residual,
                  "last_bwd_residual": None if res is None else res.bwd_residual,
                  "steps": len(steps["loss"]), "solver": cfg.solver, "ranks": n_ranks,
                  "fwd_iters": int(sum(steps["fwd_iters"][-n_batches:])),
                  "bwd_iters": int(sum(steps["bwd_iters"][-n_batches:]))}
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
        if writer is not None:
            writer.commit(record, lambda: save_checkpoint(ckpt_path, params, optimizer, epoch,
                                                          saved_cfg, steps, data_record, run))
    epochs_bar.close()
    paths = ()
    if out is not None and rank == 0 and plots and history:
        paths = plot_run(out, history, steps,
                         title=f"{cfg.solver}: T={data.seq_len}, H={cfg.hidden}")
    if comm is not None:
        comm.Barrier()                                       # files complete before anyone leaves
    return TrainResult(params, history, steps, cfg, out, paths, time.perf_counter() - t_start,
                       run)


def _build(cfg, data, ckpt, ckpt_path):
    """``(params, optimizer)`` of a new model, or of the checkpoint's; ValueError naming the
    hidden size when the model cannot fit in memory, and naming the checkpoint's array when
    its state does not fit the model."""
    _check_model_fits(cfg, data.input_size, data.num_classes)
    try:
        params = init_classifier(data.input_size, cfg.hidden, cfg.layers, data.num_classes,
                                 seed=cfg.seed, dtype=np.dtype(cfg.dtype))
        optimizer = make_optimizer(cfg, params)
    except MemoryError as e:
        raise ValueError(f"hidden {cfg.hidden}: the model does not fit in memory ({e})") from None
    if ckpt is not None:
        for k, v in ckpt.params.items():
            if k not in params or v.shape != params[k].shape or v.dtype != params[k].dtype:
                raise ValueError(f"{ckpt_path}: parameter {k!r} does not fit the model")
        missing = sorted(set(params) - set(ckpt.params))
        if missing:
            raise ValueError(f"{ckpt_path}: parameter {missing[0]!r} is missing")
        for k, v in ckpt.params.items():
            params[k][...] = v
        try:
            optimizer.load_state_dict(ckpt.optim_state)
        except ValueError as e:
            raise ValueError(f"{ckpt_path}: {e}") from None
    return params, optimizer


def _check_model_fits(cfg, F, C):
    """ValueError naming ``hidden`` when the parameters, their gradients and the optimiser's
    state need more than this machine's memory (numpy's own error names no option, and a
    system that overcommits memory would kill the process later instead)."""
    H, L = cfg.hidden, cfg.layers
    n = 3 * H * (F + H + 2) + (L - 1) * 3 * H * (2 * H + 2) + C * (H + 1)
    copies = 4 if cfg.optimizer == "adam" else (3 if cfg.momentum else 2)
    need = n * copies * np.dtype(cfg.dtype).itemsize
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):            # not a POSIX system: numpy decides
        return
    if need > have:
        raise ValueError(f"hidden {H} (with layers {L}): the model's {n:.3g} parameters need "
                         f"{need / 2**30:.3g} GiB with their gradients and the optimiser's "
                         f"state, more than this machine's {have / 2**30:.3g} GiB of memory")


def evaluate_checkpoint(path, data=None, split=None, comm=None, **solver_overrides):
    """``(loss, accuracy, n)`` of a checkpoint's model on a data set.

    ``data`` defaults to the run's own data; ``split`` ("test", "train" or "all") defaults to
    "test" for the run's own data and "all" for other data. An npz file the checkpoint's record
    shows to hold the run's data (a moved copy) counts as the run's own; the run's own file
    that has changed since (by that record) has no "test" or "train" split of the run's, only
    "all". ``solver_overrides`` (``solver``, ``fwd_iters``, ...) change how the forward pass
    is computed. The checkpoint is checked as `load_checkpoint` checks it (its digest and its
    arrays; one of format 1 has neither); under MPI every rank must pass the same arguments.
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
    same_on_every_rank(comm, "evaluate", {"checkpoint": path, "data": data, "split": split,
                                          **solver_overrides})
    comm_w = None
    if comm is not None:                     # first: an error on one rank (say, a NaN in its rows
        from ..mgrit import MPIComm           # of the data) then ends the job, as in train()
        comm_w = MPIComm(comm)
    d = prepare_data(cfg, comm, training=False)
    if own and split != "all" and ck.data is not None:
        changes = _data_changes(_data_record(d, cfg.data, cfg=cfg), ck.data)
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
