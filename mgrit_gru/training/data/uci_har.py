"""UCI-HAR as distributed: the "UCI HAR Dataset" folder, read as the authors' example reads it.

The folder holds ``train/`` and ``test/`` (the given split, by subject), each with
``Inertial Signals/<channel>_<split>.txt`` for the nine channels below (one row of 128 readings
per window, 50 Hz, 2.56 s) and ``y_<split>.txt`` (activities 1..6, one per line). A sequence is
one window: T = 128 steps of the 9 channels; the class is the activity, 0..5.
"""
from __future__ import annotations

import os

import numpy as np

from ...checks import check_time_window, float_dtype

CHANNELS = ("body_acc_x", "body_acc_y", "body_acc_z", "body_gyro_x", "body_gyro_y",
            "body_gyro_z", "total_acc_x", "total_acc_y", "total_acc_z")
ACTIVITIES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING",
              "LAYING")
SPLITS = ("train", "test")


def _read_rows(path, what):
    """A whitespace-separated text table as a 2-D float64 array; ValueError naming the file."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file (the {what} of a UCI HAR Dataset folder)")
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not a table of numbers ({e})") from None
    if rows.size == 0:
        raise ValueError(f"{path}: empty")
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{path}: contains NaN or Inf")
    return rows


def load_uci_har(root, split="train", time_window=None, dtype=np.float32):
    """One split of UCI-HAR: ``x`` (N, 128, 9) in `CHANNELS` order and ``y`` (N,) int64 0..5.

    ``time_window=(start, stop)``: only those steps (``x[:, start:stop]``). Missing files,
    channels whose row counts or lengths disagree, and labels outside 1..6 are ValueErrors
    naming the file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dtype = float_dtype(dtype)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"{root}: no such folder (give the 'UCI HAR Dataset' folder)")
    folder = os.path.join(root, split, "Inertial Signals")
    labels_path = os.path.join(root, split, f"y_{split}.txt")
    y = _read_rows(labels_path, "activity labels")
    if y.shape[1] != 1 or np.any(y != np.round(y)) or y.min() < 1 or y.max() > len(ACTIVITIES):
        raise ValueError(f"{labels_path}: labels must be one integer 1..{len(ACTIVITIES)} per "
                         f"line, got values {np.unique(y)[:8].tolist()} in {y.shape[1]} column(s)")
    y = y[:, 0].astype(np.int64) - 1
    channels = []
    for name in CHANNELS:
        path = os.path.join(folder, f"{name}_{split}.txt")
        rows = _read_rows(path, f"{name} channel")
        if rows.shape[0] != len(y):
            raise ValueError(f"{path}: {rows.shape[0]} rows, but {labels_path} has {len(y)} "
                             "labels (one window per row)")
        if channels and rows.shape[1] != channels[0].shape[1]:
            raise ValueError(f"{path}: rows of {rows.shape[1]} steps, but the "
                             f"{CHANNELS[0]} channel's have {channels[0].shape[1]}")
        channels.append(rows)
    T = channels[0].shape[1]
    start, stop = (0, T) if time_window is None else check_time_window(time_window, T)
    x = np.stack([c[:, start:stop] for c in channels], axis=2).astype(dtype)
    return x, y
