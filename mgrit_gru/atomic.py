"""Atomic file writes: a reader, or the next run after a crash, sees the old file or the complete
new one, never half of one.

The data goes to a temporary file in the target's folder, is flushed to disk, given the mode an
ordinary ``open`` would give it (``0o666`` less the umask: ``mkstemp`` alone makes it private),
then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


def _file_mode():
    umask = os.umask(0)                                      # the only way to read it: set, restore
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path, mode="w"):
    """Open a temporary file for ``path`` (``mode`` "w" or "wb"); on a clean exit it replaces
    ``path``, on an exception it is removed and ``path`` is left as it was.

    >>> with atomic_write(path) as f:                        # doctest: +SKIP
    ...     f.write("complete or not at all\\n")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())                             # data on disk before the rename
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_figure(fig, path, **kwargs):
    """``fig.savefig(path, **kwargs)``, atomically (the format from the file's extension)."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or None
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)
