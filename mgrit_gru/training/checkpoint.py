"""A run folder's files: the checkpoint (``checkpoint.npz``) and the metrics (``metrics.jsonl``).

Checkpoint format (``np.savez``, no pickles): the parameters under their own names
(``weight_ih_l0``, ..., ``weight_out``, ``bias_out``), the optimiser state (``optim.*``, see
`mgrit_gru.training.optim`), ``meta.epoch`` (completed epochs), ``meta.config`` (the
`TrainConfig` as JSON), ``meta.data`` (JSON: T, F, the number of classes and sequences of the
data, for an npz file the CRC32 and size of its ``x`` and ``y``, for a frame folder a digest of
its frames' paths and sizes; a resume on other data is refused), ``meta.format``, and the
per-step records ``steps.loss``, ``steps.acc``, ``steps.fwd_residual``, ``steps.bwd_residual``
(NaN where a solve was serial).
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_write
from .config import TrainConfig
from .data import atomic_savez

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
FORMAT = 1
STEP_KEYS = ("loss", "acc", "fwd_residual", "bwd_residual", "fwd_iters", "bwd_iters")

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
