"""The data of a training run: load it by its spec, split it, keep this rank's time rows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mgrit import agreed
from ..solve import TimeSlice, input_rows
from .config import VIDEOS, _data_kind
from .data import (early_event, load_frame_folder, load_npz, moving_objects, npz_shape, pulse_order,
                   train_test_split)
from .data.hmdb51 import load_hmdb51
from .data.uci_har import ACTIVITIES, load_uci_har


# data that comes with its own train/test split
GIVEN_SPLIT = ("uci-har", "hmdb51")


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
              training=True, distractors=4, dtype=None, features=None, split=1,
              splits_dir=None):
    """``(x (N, T, F), y (N,), num_classes, description)`` for a data spec (see `TrainConfig`).

    The built-in tasks are generated in float32 (half the memory); batches are cast to the
    training dtype. ``time_window=(start, stop)``: the synthetic videos render only those
    frames, an ``.npz`` file is read and a frame folder decoded for only those rows (``x`` is then
    (N, stop - start, F)); the pulse task ignores it and returns every row.
    ``progress``: a bar while a frame folder is decoded (minutes for thousands of videos).
    ``training``: the data must hold at least two classes, and an npz file's labels must be
    the class indices 0..C-1 without a gap (its largest label sets the model's outputs, and an
    output no sequence is labelled with is refused, not remapped); False (data to evaluate a
    trained model on) accepts any non-negative labels.
    ``dtype``: the dtype the data will be cast to ("float32"): an npz file's values beyond its
    range are refused, naming the file (they would turn into Inf). ``features``: an ONNX image
    network for video frames; ``split``, ``splits_dir``: HMDB51's official split. Data with a
    given split (UCI-HAR, HMDB51) comes back whole here, train then test.
    """
    kind, arg = _data_kind(spec)
    if kind == "synthetic":
        T = 256 if seq_len is None else seq_len
        x, y = moving_objects(num_sequences, T, frame_size=frame_size, num_classes=num_classes,
                              noise=noise, seed=seed, dtype=np.float32, time_window=time_window)
        desc = (f"synthetic moving-object videos: {num_sequences} x {T} frames of "
                f"{frame_size}x{frame_size}, {num_classes} classes")
        return x, y, num_classes, desc
    if kind == "event":
        T = 256 if seq_len is None else seq_len
        x, y = early_event(num_sequences, T, num_classes=num_classes, distractors=distractors,
                           noise=noise, seed=seed, dtype=np.float32, time_window=time_window)
        desc = (f"early event: {num_sequences} x {T} steps, {num_classes} classes, "
                f"{distractors} distractors")
        return x, y, num_classes, desc
    if kind == "uci-har":                                    # both splits, train first
        x_tr, y_tr, x_te, y_te, C, desc = _uci_har(arg, seq_len, 0)
        return x_tr, y_tr, C, desc
    if kind == "hmdb51":
        x_tr, y_tr, x_te, y_te, C, desc = _hmdb51(
            arg, seq_len, 0, split=split, splits_dir=splits_dir, frame_size=frame_size,
            projection_dim=projection_dim, features=features, seed=seed, cache_dir=cache_dir,
            progress=progress, time_window=time_window)
        return x_tr, y_tr, C, desc
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
        C, present = int(y.max()) + 1, np.unique(y)
        if training and len(present) < C:                    # a gap: outputs of no class
            gaps = _first_missing(present)
            raise ValueError(f"{arg}: labels run to {C - 1} but only {len(present)} distinct "
                             f"values occur (none is {', '.join(map(str, gaps[:5]))}"
                             f"{', ...' if C - len(present) > 5 else ''}); the model would get "
                             f"{C} outputs, {C - len(present)} of them for classes without an "
                             "example. Relabel them 0..K-1 (np.unique(y, return_inverse=True)[1])")
        if dtype is not None:
            _check_range(x, arg, dtype)
        return x, y, max(C, 2), f"{arg}: {x.shape[0]} sequences x {T} steps x " \
                                f"{x.shape[2]} features, {C} classes"
    if seq_len is None:
        raise ValueError(f"{arg}: frame folders need --seq-len (frames per video after "
                         "resampling)")
    x, y, names = load_frame_folder(arg, seq_len, size=(frame_size, frame_size),
                                    projection_dim=projection_dim, seed=seed, cache_dir=cache_dir,
                                    progress=progress, time_window=time_window,
                                    min_classes=2 if training else 1, features=features)
    return x, y, max(len(names), 2), f"{arg}: {x.shape[0]} videos x {seq_len} frames x " \
                                     f"{x.shape[2]} features, classes {names}"


def _first_missing(present, k=5):
    """The first ``k`` integers >= 0 missing from the sorted distinct labels ``present``."""
    edges = np.concatenate([[-1], present])
    missing = []
    for i in np.nonzero(np.diff(edges) > 1)[0]:
        missing.extend(range(int(edges[i]) + 1, min(int(edges[i + 1]), int(edges[i]) + 1 + k)))
        if len(missing) >= k:
            break
    return missing[:k]


def _check_range(x, source, dtype):
    """ValueError naming ``source`` where ``x`` holds finite values beyond ``dtype``'s range."""
    dtype = np.dtype(dtype)
    if x.dtype.kind != "f" or x.dtype.itemsize <= dtype.itemsize or x.size == 0:
        return
    big = float(np.abs(x).max())
    if big > float(np.finfo(dtype).max):
        raise ValueError(f"{source}: 'x' holds values up to {big:.3g}, beyond the range of "
                         f"{dtype.name} (dtype {dtype.name}, up to {np.finfo(dtype).max:.3g}): "
                         "rescale the data or train in float64")


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
                training=training, distractors=cfg.distractors, dtype=cfg.dtype,
                features=cfg.features, split=cfg.split, splits_dir=cfg.splits_dir)
    window = None
    if kind in ("synthetic", "event"):                       # make only our own time rows
        T = 256 if cfg.seq_len is None else cfg.seq_len
        window = _time_slice(cfg, T, comm)
    elif kind == "npz":                                      # read only our own time rows
        shape = npz_shape(source)
        if len(shape) > 1:                                   # (else load_data names the shape)
            T = shape[1]
            window = _time_slice(cfg, T, comm)
    elif kind in VIDEOS and cfg.seq_len is not None:         # decode only our own time rows
        T = cfg.seq_len
        window = _time_slice(cfg, T, comm)

    def load(bar):
        if kind == "uci-har":                                # its own split, by subject
            return _uci_har(source, cfg.seq_len, cfg.test_fraction)
        if kind == "hmdb51":                                 # the official split asked for
            return _hmdb51(source, cfg.seq_len, cfg.test_fraction, split=cfg.split,
                           splits_dir=cfg.splits_dir, frame_size=cfg.frame_size,
                           projection_dim=cfg.projection_dim, features=cfg.features,
                           seed=cfg.seed, cache_dir=cfg.cache_dir, progress=bar,
                           time_window=window)
        return load_data(cfg.data, time_window=window, progress=bar, **args)
    got = None
    if kind in VIDEOS and cfg.cache_dir and comm is not None and comm.Get_size() > 1:
        first = agreed(comm, lambda: load(progress) if rank == 0 else None)
        if rank == 0:                        # a cache miss decodes once, on rank 0; the others
            got = first                      # wait (and stop with it), then read their rows
    if got is None:
        got = load(progress and rank == 0)
    if kind in GIVEN_SPLIT:
        x_tr, y_tr, x_te, y_te, C, desc = got
        x = x_tr
    else:
        x, y, C, desc = got
        x_tr, y_tr, x_te, y_te = (train_test_split(x, y, cfg.test_fraction, seed=cfg.seed)
                                  if cfg.test_fraction > 0 else (x, y, x[:0], y[:0]))
    if window is None:                                       # loaded whole: keep only our rows
        T = x.shape[1]
        window = _time_slice(cfg, T, comm)
        if window != (0, T):
            x_tr = np.ascontiguousarray(x_tr[:, window[0]:window[1]])
            x_te = np.ascontiguousarray(x_te[:, window[0]:window[1]])
    start = window[0]
    del x
    return Dataset(x_tr, y_tr, x_te, y_te, C, T, x_tr.shape[2], start, desc)


def _uci_har(root, seq_len, test_fraction):
    """UCI-HAR's given train and test split (all in train when ``test_fraction`` is 0: an
    evaluation on all of it); ``seq_len`` must be the files' own T, or None."""
    x_tr, y_tr = load_uci_har(root, "train")
    x_te, y_te = load_uci_har(root, "test")
    T = x_tr.shape[1]
    if x_te.shape[1] != T:
        raise ValueError(f"{root}: train windows have {T} steps, test windows {x_te.shape[1]}")
    if seq_len is not None and seq_len != T:
        raise ValueError(f"{root}: windows have T = {T} steps but seq_len = {seq_len} was asked "
                         "for (leave --seq-len out for uci-har data)")
    if test_fraction == 0:
        x_tr, y_tr = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
        x_te, y_te = x_te[:0], y_te[:0]
    desc = (f"UCI-HAR {root}: {len(y_tr)} train / {len(y_te)} test windows of {T} steps x "
            f"{x_tr.shape[2]} channels, {len(ACTIVITIES)} activities (the given split)")
    return x_tr, y_tr, x_te, y_te, len(ACTIVITIES), desc


def _hmdb51(root, seq_len, test_fraction, split=1, frame_size=16, **options):
    """HMDB51's official split ``split`` (all in train when ``test_fraction`` is 0: an evaluation
    on all of it); ``options``: `load_hmdb51`'s."""
    if seq_len is None:
        raise ValueError(f"{root}: videos need --seq-len (frames per video after resampling)")
    d = load_hmdb51(root, seq_len, split=split, size=(frame_size, frame_size), **options)
    x_tr, y_tr, x_te, y_te = d.x_train, d.y_train, d.x_test, d.y_test
    if test_fraction == 0:
        x_tr, y_tr = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
        x_te, y_te = x_te[:0], y_te[:0]
    desc = (f"HMDB51 {root}, split {split}: {len(y_tr)} train / {len(y_te)} test videos x "
            f"{seq_len} frames x {x_tr.shape[2]} features, {len(d.class_names)} classes "
            f"({d.left_out} videos in neither)")
    return x_tr, y_tr, x_te, y_te, max(len(d.class_names), 2), desc


def _as_input(xb, data, dtype):
    """A (T_local, B, F) batch as what `forward_backward` takes: full array or TimeSlice."""
    xb = xb.astype(dtype, copy=False)
    if xb.shape[0] == data.seq_len and data.start == 0:
        return xb
    return TimeSlice(xb, data.start, data.seq_len)


