"""A run folder's files: the checkpoint (``checkpoint.npz``) and the metrics (``metrics.jsonl``).

Checkpoint format 2 (``np.savez``, no pickles): the parameters under their own names
(``weight_ih_l0``, ..., ``weight_out``, ``bias_out``), the optimiser state (``optim.*``, see
`mgrit_gru.training.optim`: every buffer of every parameter), ``meta.epoch`` (completed epochs),
``meta.config`` (the `TrainConfig` as JSON), ``meta.data`` (JSON: T, F, the number of classes and
sequences of the data, for an npz file the CRC32 and size of its ``x`` and ``y``, for a frame
folder a digest of its frames' paths and sizes; a resume on other data is refused),
``meta.run`` (the run's identity: drawn when the run starts, kept by its resumes, and written on
each of its metrics lines), ``meta.format``, the per-step records ``steps.loss``, ``steps.acc``,
``steps.fwd_residual``, ``steps.bwd_residual`` (NaN where a solve was serial),
``steps.fwd_iters``, ``steps.bwd_iters``, and ``meta.digest``: the SHA-256 of every other array
(name, dtype, shape and bytes), so that a file changed after it was written is refused.

Format 1 (earlier versions: no identity, no digest, maybe fewer step records) still loads, to
be evaluated; `train` does not resume it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_write
from .config import TrainConfig
from .data import atomic_savez
from .optim import SGD, Adam

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
# a new run's first metrics, staged until its first checkpoint has replaced the old run's
STAGED = ".metrics.next.jsonl"
FORMAT = 2
READABLE = (1, 2)
STEP_KEYS = ("loss", "acc", "fwd_residual", "bwd_residual", "fwd_iters", "bwd_iters")
META_KEYS = ("meta.format", "meta.epoch", "meta.config", "meta.data", "meta.run", "meta.digest")
# what every metrics line holds (the plots read the losses and accuracies)
RECORD_KEYS = ("epoch", "run", "steps", "train_loss", "train_acc", "test_loss", "test_acc")


def new_run_id():
    """A fresh run identity: 32 hexadecimal digits (a random UUID)."""
    return uuid.uuid4().hex


def digest(arrays):
    """SHA-256 (hex) of a checkpoint's arrays but ``meta.digest``: each one's name, dtype, shape
    and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == "meta.digest":
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path, params, optimizer, epoch, cfg, steps, data=None, run=None):
    """Write the checkpoint atomically (temporary file in the same folder, then rename).

    ``data``: the record of the run's data (``meta.data``, see `train`), if any; ``run``: the
    run's identity (`new_run_id`; a new one if None); ``steps``: a list per `STEP_KEYS` entry.
    """
    arrays = {k: v for k, v in params.items()}
    arrays.update(optimizer.state_dict("optim."))
    arrays["meta.format"] = np.array(FORMAT, dtype=np.int64)
    arrays["meta.epoch"] = np.array(epoch, dtype=np.int64)
    arrays["meta.config"] = np.array(json.dumps(cfg.to_dict(), sort_keys=True))
    if data is not None:
        arrays["meta.data"] = np.array(json.dumps(data))
    arrays["meta.run"] = np.array(new_run_id() if run is None else run)
    for k in STEP_KEYS:
        arrays[f"steps.{k}"] = np.asarray(steps[k], dtype=np.float64)
    arrays["meta.digest"] = np.array(digest(arrays))
    atomic_savez(path, **arrays)


@dataclass
class Checkpoint:
    """A loaded checkpoint: parameters, optimiser state, completed epochs, config, step records,
    the record of the run's data (``data``; None where it was saved without one), the run's
    identity (``run``; None in format 1) and the ``format``."""

    params: dict
    optim_state: dict
    epoch: int
    config: TrainConfig
    steps: dict = field(default_factory=dict)
    data: dict | None = None
    run: str | None = None
    format: int = FORMAT


def load_checkpoint(path):
    """Read a checkpoint written by `save_checkpoint` and check it.

    A format-2 checkpoint must match its digest and hold exactly the arrays its config makes
    (every parameter, every optimiser buffer, every step record) with the shapes and dtypes of
    its model; a format-1 checkpoint is read as before (no identity, no digest).

    Raises
    ------
    ValueError
        Naming the file, the array or field, and what was expected.
    """
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
    fmt = _integer(path, arrays, "meta.format", f"one of {READABLE}")
    if fmt not in READABLE:
        raise ValueError(f"{path}: meta.format is {fmt}: this version reads checkpoint formats "
                         f"{', '.join(map(str, READABLE))}")
    if fmt >= 2:
        _check_digest(path, arrays)
    epoch = _integer(path, arrays, "meta.epoch", "an integer >= 1 (the completed epochs)")
    if epoch < 1:
        raise ValueError(f"{path}: meta.epoch is {epoch}, expected an integer >= 1 (the "
                         "completed epochs)")
    try:
        cfg = TrainConfig.from_dict(_json(path, arrays, "meta.config"))
    except (TypeError, ValueError, AttributeError, KeyError) as e:   # options of any kind
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: meta.config: {e}") from None
    data = _json(path, arrays, "meta.data") if "meta.data" in arrays else None
    run = None
    if fmt >= 2:
        run = _text(path, arrays, "meta.run")
        if not re.fullmatch(r"[0-9a-f]{32}", run):
            raise ValueError(f"{path}: meta.run is {run!r}, expected 32 hexadecimal digits")
        _check_arrays(path, arrays, cfg, epoch, data)
    params = {k: v for k, v in arrays.items() if "." not in k}
    optim_state = {k: v for k, v in arrays.items() if k.startswith("optim.")}
    steps = {k: list(arrays[f"steps.{k}"]) for k in STEP_KEYS if f"steps.{k}" in arrays}
    return Checkpoint(params, optim_state, epoch, cfg, steps, data, run, fmt)


def _text(path, arrays, key):
    a = arrays[key] if key in arrays else None
    if a is None:
        raise ValueError(f"{path}: no {key!r} (a format-2 checkpoint holds {', '.join(META_KEYS)})")
    if a.shape != () or a.dtype.kind != "U":
        raise ValueError(f"{path}: {key} is a {a.dtype} array of shape {a.shape}, expected one "
                         "string")
    return str(a)


def _integer(path, arrays, key, expected):
    a = arrays[key]
    if a.shape != () or a.dtype.kind not in "iu":
        raise ValueError(f"{path}: {key} is a {a.dtype} array of shape {a.shape}, expected "
                         f"{expected}")
    return int(a)


def _json(path, arrays, key):
    """The JSON object stored as string ``key``; ValueError naming the file and the field."""
    text = _text(path, arrays, key)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {key} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {key} holds a JSON {type(value).__name__}, expected an object")
    return value


def _check_digest(path, arrays):
    stored = _text(path, arrays, "meta.digest")
    got = digest(arrays)
    if stored != got:
        raise ValueError(f"{path}: meta.digest is {stored[:16]}..., but the arrays give "
                         f"{got[:16]}...: the file was changed after it was written (restore "
                         "it, or start the run afresh with --overwrite)")


def expected_arrays(cfg, input_size, num_classes):
    """``{name: (dtype, shape)}`` of the parameters and the optimiser state of a checkpoint of
    ``cfg`` on data of ``input_size`` features and ``num_classes`` classes after its first step:
    the optimiser's scalars (dtype None: any) and every buffer of every parameter."""
    H, dtype = cfg.hidden, np.dtype(cfg.dtype)
    want = {}
    for k in range(cfg.layers):
        want[f"weight_ih_l{k}"] = (dtype, (3 * H, input_size if k == 0 else H))
        want[f"weight_hh_l{k}"] = (dtype, (3 * H, H))
        want[f"bias_ih_l{k}"] = (dtype, (3 * H,))
        want[f"bias_hh_l{k}"] = (dtype, (3 * H,))
    want["weight_out"] = (dtype, (num_classes, H))
    want["bias_out"] = (dtype, (num_classes,))
    kind = Adam if cfg.optimizer == "adam" else SGD
    buffers = kind._buffers if (cfg.optimizer == "adam" or cfg.momentum) else ()
    params = list(want)
    for name in ("type", "step", *kind._hyper):
        want[f"optim.{name}"] = (None, None)
    for b in buffers:
        for p in params:
            want[f"optim.{b}.{p}"] = want[p]
    return want


def _check_arrays(path, arrays, cfg, epoch, data):
    """ValueError unless the arrays are exactly those of a format-2 checkpoint of ``cfg``."""
    for key in ("weight_ih_l0", "weight_out"):               # they give F and C
        if key not in arrays or arrays[key].ndim != 2:
            raise ValueError(f"{path}: array {key!r} is "
                             + (f"of shape {arrays[key].shape}, expected 2-D" if key in arrays
                                else "missing"))
    F, C = arrays["weight_ih_l0"].shape[1], arrays["weight_out"].shape[0]
    if data is not None and (data.get("F"), data.get("classes")) != (F, C):
        raise ValueError(f"{path}: weight_ih_l0 and weight_out make a model of {F} features and "
                         f"{C} classes, but meta.data records {data.get('F')} and "
                         f"{data.get('classes')}")
    want = expected_arrays(cfg, F, C)
    want.update({k: (None, None) for k in META_KEYS if k != "meta.data" or data is not None})
    want.update({f"steps.{k}": (np.dtype(np.float64), None) for k in STEP_KEYS})
    missing = [k for k in want if k not in arrays]
    if missing:
        raise ValueError(f"{path}: array {missing[0]!r} is missing"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                         + f": a checkpoint of this config ({cfg.optimizer}, {cfg.layers} "
                         f"layer(s)) after epoch {epoch} holds every parameter, every optimiser "
                         "buffer and every step record")
    extra = sorted(set(arrays) - set(want))
    if extra:
        raise ValueError(f"{path}: unexpected array {extra[0]!r}: not part of a checkpoint of "
                         "this config")
    for k, (dtype, shape) in want.items():
        a = arrays[k]
        if dtype is not None and a.dtype != dtype or shape is not None and a.shape != shape:
            raise ValueError(f"{path}: array {k!r} is {a.dtype} {a.shape}, expected "
                             f"{dtype} {shape}")
    n = {len(arrays[f"steps.{k}"]) if arrays[f"steps.{k}"].ndim == 1 else -1 for k in STEP_KEYS}
    if len(n) != 1 or min(n) < epoch:
        raise ValueError(f"{path}: the step records ({', '.join(f'steps.{k}' for k in STEP_KEYS)}) "
                         f"must be 1-D arrays of one length, at least meta.epoch ({epoch}); got "
                         + ", ".join(str(arrays[f'steps.{k}'].shape) for k in STEP_KEYS))
    step = arrays["optim.step"]
    if step.shape != () or step.dtype.kind not in "iu" or int(step) != min(n):
        raise ValueError(f"{path}: optim.step is {step.tolist()!r}, expected {min(n)} (one "
                         "optimiser step per step record)")


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def _read_lines(path):
    """``(records, cut)``: the JSON objects of the file's non-empty lines with their line numbers,
    and whether a last line without its newline was left out (an append cut off by a crash)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a metrics file (byte {e.start} is not UTF-8 text)") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(keepends=True), 1) if line.strip()]
    records, cut = [], False
    for j, (i, line) in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if j == len(lines) - 1 and not line.endswith("\n"):   # the append was cut off
                cut = True
                break
            raise ValueError(f"{path}, line {i}: not a JSON record ({e})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}, line {i}: a JSON {type(rec).__name__}, expected an epoch "
                             "record (an object with 'epoch', 'train_loss', ...)")
        records.append((i, rec))
    return records, cut


def read_metrics(out):
    """The epoch records of ``OUT/metrics.jsonl`` (a list of dicts; empty if none).

    A cut-off last line (a crash or a full disk during its append: it is written after the
    previous checkpoint and before the next) is left out; any other line that is not a JSON
    object, or a file that is not UTF-8 text, is a ValueError naming the file and line.
    """
    path = os.path.join(out, METRICS)
    if not os.path.isfile(path):
        return []
    return [rec for _, rec in _read_lines(path)[0]]


def check_metrics(out, ckpt, ckpt_path):
    """``(history, stale)``: the metrics records of the checkpoint's epochs, after checking
    ``OUT/metrics.jsonl`` line by line against the checkpoint ``ckpt`` (format 2).

    Line i must hold epoch i of the checkpoint's run (its ``run``), with every field of
    `RECORD_KEYS`; the line of the checkpoint's last epoch its number of steps. The file holds
    the checkpoint's epochs, and at most one line more: an epoch's line is written just before
    its checkpoint, so a run stopped between the two leaves it (or half of it). ``stale`` says
    so; the run's next write drops it.

    Raises
    ------
    ValueError
        Naming the file, the line, the field, and what was expected.
    """
    path = os.path.join(out, METRICS)
    E = ckpt.epoch
    if not os.path.isfile(path):
        raise ValueError(f"{path}: missing, but {ckpt_path} holds {E} epoch(s) of run "
                         f"{ckpt.run}: restore the file, or start afresh with --overwrite")
    records, cut = _read_lines(path)
    for n, (i, rec) in enumerate(records, 1):
        absent = [k for k in RECORD_KEYS if k not in rec]
        if absent:
            raise ValueError(f"{path}, line {i}: no {absent[0]!r} (an epoch record holds "
                             f"{', '.join(RECORD_KEYS)}, ...)")
        if rec["epoch"] != n or isinstance(rec["epoch"], bool):
            raise ValueError(f"{path}, line {i}: epoch {rec['epoch']!r}, expected {n} (one line "
                             "per epoch, in order)")
        if rec["run"] != ckpt.run:
            raise ValueError(f"{path}, line {i}: run {rec['run']!r}, but {ckpt_path} is run "
                             f"{ckpt.run}: the metrics and the checkpoint are of different runs")
    n = len(records)
    if n not in (E, E + 1) or (cut and n != E):
        raise ValueError(f"{path}: {n} epoch line(s){' and a cut-off one' if cut else ''}, but "
                         f"{ckpt_path} (meta.epoch) holds {E} epoch(s): expected {E} lines, or "
                         f"{E + 1} when the run stopped between an epoch's line and its "
                         "checkpoint")
    steps = len(ckpt.steps["loss"])
    i, last = records[E - 1]
    if last["steps"] != steps:
        raise ValueError(f"{path}, line {i}: steps {last['steps']!r}, but {ckpt_path} holds "
                         f"{steps} step records (steps.loss)")
    return [rec for _, rec in records[:E]], n > E or cut


def _write_lines(path, records):
    """Write ``records`` as ``path`` atomically, one JSON line each."""
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _append_line(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


class RunWriter:
    """Writes a run's epochs into its folder so that a stop at any moment (a kill included)
    leaves the old run whole or the new state whole, never a mix.

    An epoch's metrics line is written first, then its checkpoint (a stop between the two
    leaves a line that `check_metrics` recognises and the next write drops). A new run's first
    epoch, in a folder that may hold another run, stages its metrics in `STAGED`, replaces the
    checkpoint, then moves the staged file over ``metrics.jsonl``; `recover` finishes or undoes
    that last move when the folder is next locked.

    Parameters
    ----------
    out : str
        The run folder.
    history : list of dict
        The metrics records of the run so far (none for a new run).
    new : bool
        The run starts here (its first epoch replaces whatever the folder holds).
    stale : bool
        ``metrics.jsonl`` holds a line after ``history`` (see `check_metrics`) to drop.
    """

    def __init__(self, out, history, new, stale=False):
        self.out, self.history, self.new, self.stale = out, list(history), new, stale

    def commit(self, record, save):
        """Write epoch ``record`` and, through ``save()``, its checkpoint."""
        metrics = os.path.join(self.out, METRICS)
        self.history.append(record)
        if self.new:
            staged = os.path.join(self.out, STAGED)
            _write_lines(staged, self.history)
            save()
            os.replace(staged, metrics)
            self.new = False
            return
        if self.stale:
            _write_lines(metrics, self.history)
            self.stale = False
        else:
            _append_line(metrics, record)
        save()


# temporary files of `atomic_write` (".NAME.RANDOM.tmp") for the files of a run folder
_TEMPORARY = re.compile(r"\.(?:checkpoint\.npz|metrics\.jsonl|\.metrics\.next\.jsonl|curves\.png"
                        r"|residuals\.png)\.[A-Za-z0-9_]+\.tmp")


def recover(out):
    """Tidy the run folder ``out`` after a holder that was stopped mid-write (call it holding the
    folder's lock): remove this package's temporary files, and finish a new run's first commit
    (`RunWriter`) if its checkpoint is in place, else undo it. Returns the names removed or
    moved."""
    done = []
    for name in sorted(os.listdir(out)):
        if _TEMPORARY.fullmatch(name):
            os.remove(os.path.join(out, name))
            done.append(name)
    staged = os.path.join(out, STAGED)
    if os.path.isfile(staged):
        run = _staged_run(staged)
        if run is not None and run == _checkpoint_run(out):
            os.replace(staged, os.path.join(out, METRICS))
        else:
            os.remove(staged)
        done.append(STAGED)
    return done


def _staged_run(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.readline()).get("run")
    except (OSError, ValueError, AttributeError):
        return None


def _checkpoint_run(out):
    try:
        with np.load(os.path.join(out, CHECKPOINT), allow_pickle=False) as f:
            return str(f["meta.run"])
    except Exception:                                        # no checkpoint, or not ours
        return None
