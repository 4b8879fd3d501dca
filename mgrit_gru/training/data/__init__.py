"""Data: synthetic tasks, a user's .npz files, frame folders of real videos (HMDB51 layout),
HMDB51's .avi videos with the official splits, and UCI-HAR as distributed.

Every loader returns ``x`` (N, T, F) and integer labels ``y`` (N,); `batches` turns them into the
time-major (T, B, F) batches the GRU takes.
"""
from .synthetic import (moving_objects, early_event, pulse_order, noisy_sum_sign, train_test_split, batches)
from .files import load_npz, npz_checksums, npz_shape, save_npz, atomic_savez
from .frames import frame_listing, load_frame_folder
from .uci_har import load_uci_har
from .hmdb51 import hmdb51_listing, load_hmdb51

__all__ = ["moving_objects", "early_event", "pulse_order", "noisy_sum_sign", "train_test_split", "batches",
           "load_npz", "npz_checksums", "npz_shape", "save_npz", "atomic_savez",
           "load_frame_folder", "frame_listing", "load_uci_har", "load_hmdb51",
           "hmdb51_listing"]
