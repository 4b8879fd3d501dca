"""A user's own sequences as ``.npz`` files: validated loading and atomic saving.

File format (``np.savez`` / `save_npz`, no pickled objects):

- ``x``: float or integer array of shape (N, T, F): N sequences of T steps with F features each.
  Per-frame images must be flattened to vectors first (F = height·width·channels), e.g.
  ``frames.reshape(N, T, -1)``. An array of shape (N, T) is read as one feature per step
  (F = 1).
- ``y``: integer array of shape (N,) with class indices 0..C-1 (C = max(y) + 1 unless
  ``num_classes`` is given), of at least two distinct classes (a classifier's data; `load_npz`
  takes ``min_classes=1`` for, e.g., one class's examples to evaluate a model on).

Any other keys (e.g. ``class_names``) are ignored by `load_npz`.

``load_npz(path, time_window=(start, stop))`` returns ``x[:, start:stop]`` and never holds more:
it reads ``x`` sequence by sequence from the archive (an MPI rank needs only its time rows of a
file that may not fit in one process's memory). In an archive written by ``np.savez`` (members
stored, not compressed) the skipped rows are real seeks in the file, so a rank reads about its
own bytes only; a compressed archive (``np.savez_compressed``) is decompressed as it streams past
(every rank reads the whole file, holding only its rows). Fortran-ordered or unusual arrays are
loaded whole, then cut.
"""
from __future__ import annotations

import contextlib
import os
import struct
import zipfile

import numpy as np

from ...atomic import atomic_write
from ...checks import check_time_window, float_dtype, positive_int


def _validate(x, y, where, num_classes=None, step0=0, min_classes=1):
    """Check x (N, T, F) or (N, T), y (N,); return (x, y) with x 3-D and y int64 (``step0``:
    the time step of x's first row, when x is a window of the file's rows; ``min_classes``: the
    fewest distinct labels accepted)."""
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
                         f"step {step0 + bad[1]}, feature {bad[2]})")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)                           # whole-number floats are accepted
        else:
            raise ValueError(f"{where}: 'y' must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"{where}: 'y' has negative labels (min {y.min()}); labels are 0..C-1")
    present = np.unique(y)
    if len(present) < min_classes:
        which = "one class" if len(present) == 1 else f"only {len(present)} classes"
        raise ValueError(f"{where}: 'y' has {which} ({', '.join(map(str, present))}); a "
                         f"classifier needs labels of at least {min_classes} classes")
    if num_classes is not None and y.max() >= num_classes:
        raise ValueError(f"{where}: 'y' has label {y.max()} out of range for "
                         f"num_classes = {num_classes}")
    return x, y


def _open_npz(path):
    """The archive of ``path`` as a ZipFile with an ``x`` and a ``y`` member; ValueError naming
    the file otherwise (missing, a folder, not a zip, a single-array .npy, arrays missing)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: a folder, not an .npz file (a folder of frame images is "
                         "data frames:ROOT)")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise ValueError(f"{path}: is a single-array .npy, not an .npz with 'x' and "
                                 "'y'") from None
        raise ValueError(f"{path}: not a readable .npz file (not a zip archive)") from None
    except OSError as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    missing = [k for k in ("x", "y") if k not in keys]
    if missing:
        zf.close()
        raise ValueError(f"{path}: missing array(s) {missing} (found {sorted(keys)}); "
                         "the file needs 'x' (N, T, F) and 'y' (N,)")
    return zf


def _npy_header(f):
    """``(shape, fortran_order, dtype)`` of the .npy stream ``f``, left at the first data byte;
    None for a format this reader does not stream (the caller then loads the array whole)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
    except ValueError:
        pass
    return None                                              # (3, 0) or damaged: np.load decides


def npz_checksums(path):
    """CRC32 and size of the ``x`` and ``y`` arrays of an ``.npz`` file, from the archive's
    central directory (no array is read).

    The CRC32 covers a member's uncompressed bytes (the .npy header and the data), so the same
    arrays saved with ``np.savez`` or ``np.savez_compressed`` give the same result.

    Returns
    -------
    dict
        ``{"x.npy": [crc32, size], "y.npy": [crc32, size]}`` (size: uncompressed bytes).

    Raises
    ------
    ValueError
        Naming the file, as `load_npz` does, when it is missing, not an .npz, or lacks x or y.
    """
    path = os.fspath(path)
    with _open_npz(path) as zf:
        return {name: [zf.getinfo(name).CRC, zf.getinfo(name).file_size]
                for name in ("x.npy", "y.npy")}


def npz_shape(path):
    """Shape of the ``x`` array in an ``.npz`` file, read from its header (no data is loaded).

    Raises
    ------
    ValueError
        Naming the file, as `load_npz` does, when it is missing, not an .npz, or lacks x or y.
    """
    path = os.fspath(path)
    try:
        with _open_npz(path) as zf, zf.open("x.npy") as f:
            head = _npy_header(f)
            if head is not None:
                return tuple(head[0])
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    return load_npz(path)[0].shape                           # an unusual header: load and see


@contextlib.contextmanager
def _seekable_member(zf, name):
    """``(f, end)``: a binary stream over member ``name`` of the open archive ``zf``, at the
    member's first byte, whose relative seeks skip without reading where they can, and the
    offset in ``f`` where the member ends.

    A member stored uncompressed (``np.savez``) is read from the archive's own file, positioned
    at the member's first byte: before Python 3.12, ``ZipExtFile.seek`` reads (and CRC-checks)
    every byte it skips, so each MPI rank would read the whole file to reach its rows. A
    compressed (or encrypted) member is ``zf.open``'s stream, where skipping is decompressing.
    """
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        with zf.open(info) as f:
            yield f, info.file_size
        return
    fp = zf.fp                                               # (no member of zf is open meanwhile)
    fp.seek(info.header_offset)
    local = fp.read(30)                                      # the local file header, fixed part
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local file header for {name}")
    n_name, n_extra = struct.unpack("<HH", local[26:30])     # its variable part's lengths
    begin = info.header_offset + 30 + n_name + n_extra       # the member's first byte
    fp.seek(begin)
    yield fp, begin + info.file_size


def _read_rows(zf, start, stop):
    """``x[:, start:stop]`` (3-D) read sequence by sequence from member x.npy: the rows before
    and after the window are skipped (seek), never stored. None where the layout does not allow
    it (Fortran order, object or structured dtype, not 2-D or 3-D, an unusual header)."""
    with _seekable_member(zf, "x.npy") as (f, end):
        head = _npy_header(f)
        if head is None:
            return None
        shape, fortran, dtype = head
        if fortran or dtype.hasobject or dtype.fields is not None or len(shape) not in (2, 3):
            return None
        N, T = shape[:2]
        F = shape[2] if len(shape) == 3 else 1
        row = F * dtype.itemsize                             # bytes per time step of a sequence
        if f.tell() + N * T * row > end:                     # (a stored member's next bytes
            raise EOFError("x.npy is shorter than its header says")   # are another's)
        x = np.empty((N, stop - start, F), dtype)
        for n in range(N):
            f.seek(start * row, os.SEEK_CUR)                 # the rows before the window
            buf = memoryview(x[n]).cast("B")
            if f.readinto(buf) != len(buf):
                raise EOFError(f"x.npy ends inside sequence {n}")
            f.seek((T - stop) * row, os.SEEK_CUR)            # the rows after it
        return x


def load_npz(path, num_classes=None, dtype=None, time_window=None, min_classes=2):
    """Load and validate a sequence-classification data set from an ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A file with arrays ``x`` (N, T, F) (or (N, T): one feature per step) and ``y`` (N,).
    num_classes : int, optional
        If given, labels must lie in [0, num_classes).
    dtype : {float32, float64}, optional
        Convert ``x`` to this dtype; by default it is kept (integers are converted to float64).
        Values beyond float32's range are refused, not turned into Inf.
    time_window : (int, int), optional
        ``(start, stop)`` with ``0 <= start < stop <= T``: return only ``x[:, start:stop]``,
        reading the file sequence by sequence so that the rest of ``x`` is never held (an MPI
        rank's rows of a long file). The finiteness check then covers these rows only.
    min_classes : int, optional
        The fewest distinct labels ``y`` may hold: 2 (a classifier learns nothing from one
        class); 1 accepts, e.g., one class's examples to evaluate a trained model on.

    Returns
    -------
    x : ndarray (N, T, F), or (N, stop - start, F) with ``time_window``
    y : ndarray (N,) int64

    Raises
    ------
    ValueError
        Naming the file and the problem: not found or not an .npz, missing ``x`` or ``y``, wrong
        number of dimensions, N mismatch, empty arrays, NaN/Inf, labels that are not integers,
        negative, >= num_classes, or of fewer than ``min_classes`` classes; a ``time_window``
        outside [0, T].
    """
    path = os.fspath(path)
    if num_classes is not None:
        positive_int(num_classes, "num_classes")
    positive_int(min_classes, "min_classes")
    if dtype is not None:
        dtype = float_dtype(dtype)
    window = None
    if time_window is not None:
        shape = npz_shape(path)
        if len(shape) in (2, 3):                             # (else _validate names the shape)
            window = check_time_window(time_window, shape[1])
            window = None if window == (0, shape[1]) else window   # every row: a plain load
    try:
        with _open_npz(path) as zf:
            x = None if window is None else _read_rows(zf, *window)
            streamed = x is not None                         # else: a layout read whole, cut below
            if not streamed:
                x = _member(zf, "x")
            y = _member(zf, "y")
    except ValueError as e:
        if str(e).startswith(path):                          # already names the file
            raise
        raise ValueError(f"{path}: cannot read: {e}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    x, y = _validate(x, y, path, num_classes, step0=window[0] if streamed else 0,
                     min_classes=min_classes)
    if window is not None and not streamed:
        x = np.ascontiguousarray(x[:, window[0]:window[1]])
    if dtype is not None:
        with np.errstate(over="ignore"):                     # too large: Inf, refused below
            cast = x.astype(dtype, copy=False)
        if cast is not x and not np.all(np.isfinite(cast)):
            raise ValueError(f"{path}: 'x' holds values beyond the range of {dtype.name} (up "
                             f"to {np.abs(x).max():.3g}): rescale it or load it as float64")
        x = cast
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64)
    return x, y


def _member(zf, name):
    """The whole array ``name`` of an open .npz archive (no pickles)."""
    with zf.open(name + ".npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def atomic_savez(path, **arrays):
    """``np.savez`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``, so readers see either the old file or the complete new one."""
    with atomic_write(path, "wb") as f:                      # a file object: savez adds no suffix
        np.savez(f, **arrays)


def save_npz(path, x, y, **extra):
    """Validate and save ``x`` (N, T, F) and ``y`` (N,) to ``path`` atomically.

    Extra arrays (e.g. ``class_names=np.array([...])``) are stored alongside. The result loads
    with `load_npz` (one that holds a single class with ``load_npz(path, min_classes=1)``:
    saving one class's examples, to evaluate a model on, is allowed).
    """
    x, y = _validate(x, y, os.fspath(path))
    atomic_savez(path, x=x, y=y, **extra)
