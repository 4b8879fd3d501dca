"""Data: synthetic tasks, a user's .npz files, and frame folders of real videos (HMDB51 layout).

Every loader returns ``x`` (N, T, F) and integer labels ``y`` (N,); `batches` turns them into the
time-major (T, B, F) batches the GRU takes.
"""
from .synthetic import (moving_objects, early_event, pulse_order, noisy_sum_sign, train_test_split, batches)
from .files import load_npz, npz_checksums, npz_shape, save_npz, atomic_savez
from .frames import frame_listing, load_frame_folder

__all__ = ["moving_objects", "early_event", "pulse_order", "noisy_sum_sign", "train_test_split", "batches",
           "load_npz", "npz_checksums", "npz_shape", "save_npz", "atomic_savez",
           "load_frame_folder", "frame_listing"]
