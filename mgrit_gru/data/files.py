"""A user's own sequences as ``.npz`` files: validated loading and atomic saving.

File format (``np.savez`` / `save_npz`, no pickled objects):

- ``x``: float or integer array of shape (N, T, F): N sequences of T steps with F features each.
  Per-frame images must be flattened to vectors first (F = height·width·channels), e.g.
  ``frames.reshape(N, T, -1)``. An array of shape (N, T) is read as one feature per step
  (F = 1).
- ``y``: integer array of shape (N,) with class indices 0..C-1 (C = max(y) + 1 unless
  ``num_classes`` is given).

Any other keys (e.g. ``class_names``) are ignored by `load_npz`.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from ..atomic import atomic_write
from ..checks import positive_int


def _validate(x, y, where, num_classes=None):
    """Check x (N, T, F) or (N, T), y (N,); return (x, y) with x 3-D and y int64."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating)
                                 or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{where}: 'x' must be a numeric array, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, :, None]                                    # (N, T): one feature per step
    if x.ndim != 3:
        raise ValueError(f"{where}: 'x' must have shape (N, T, F) or (N, T), got {x.shape} "
                         f"(flatten per-frame images to vectors first)")
    if 0 in x.shape:
        raise ValueError(f"{where}: 'x' is empty, shape {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{where}: 'y' must have shape (N,), got {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{where}: 'x' has N = {x.shape[0]} sequences but 'y' has {y.shape[0]} labels")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{where}: 'x' contains NaN or Inf (first at sequence {bad[0]}, "
                         f"step {bad[1]}, feature {bad[2]})")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)                           # whole-number floats are accepted
        else:
            raise ValueError(f"{where}: 'y' must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"{where}: 'y' has negative labels (min {y.min()}); labels are 0..C-1")
    if num_classes is not None and y.max() >= num_classes:
        raise ValueError(f"{where}: 'y' has label {y.max()} out of range for "
                         f"num_classes = {num_classes}")
    return x, y


def load_npz(path, num_classes=None, dtype=None):
    """Load and validate a sequence-classification data set from an ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A file with arrays ``x`` (N, T, F) (or (N, T): one feature per step) and ``y`` (N,).
    num_classes : int, optional
        If given, labels must lie in [0, num_classes).
    dtype : numpy dtype, optional
        Convert ``x`` to this dtype (e.g. ``np.float32``); by default it is kept (integers are
        converted to float64).

    Returns
    -------
    x : ndarray (N, T, F)
    y : ndarray (N,) int64

    Raises
    ------
    ValueError
        Naming the file and the problem: not found or not an .npz, missing ``x`` or ``y``, wrong
        number of dimensions, N mismatch, empty arrays, NaN/Inf, labels that are not integers,
        negative, or >= num_classes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):     # a plain .npy holds one array
            raise ValueError(f"{path}: is a single-array .npy, not an .npz with 'x' and 'y'")
        with loaded as f:
            keys = set(f.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise ValueError(f"{path}: missing array(s) {missing} (found {sorted(keys)}); "
                                 "the file needs 'x' (N, T, F) and 'y' (N,)")
            x, y = f["x"], f["y"]
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: cannot read: {e}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    if num_classes is not None:
        positive_int(num_classes, "num_classes")
    x, y = _validate(x, y, path, num_classes)
    if dtype is not None:
        x = x.astype(dtype, copy=False)
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64)
    return x, y


def atomic_savez(path, **arrays):
    """``np.savez`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``, so readers see either the old file or the complete new one."""
    with atomic_write(path, "wb") as f:                      # a file object: savez adds no suffix
        np.savez(f, **arrays)


def save_npz(path, x, y, **extra):
    """Validate and save ``x`` (N, T, F) and ``y`` (N,) to ``path`` atomically.

    Extra arrays (e.g. ``class_names=np.array([...])``) are stored alongside. The result loads
    with `load_npz`.
    """
    x, y = _validate(x, y, os.fspath(path))
    atomic_savez(path, x=x, y=y, **extra)
