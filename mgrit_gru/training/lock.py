"""One run at a time in a run folder: an exclusive advisory lock on ``OUT/.lock``.

The lock is an ``flock`` (through the ``filelock`` package) on a file in the folder, so the
operating system releases it when its holder ends, however it ends (a SIGKILL too): no stale
lock is ever cleared by hand. The holder writes its pid, host and start time into the file, so
that a second run is refused at once with who holds the folder. The holder removes the file
when it is done (a killed holder's is reused by the next run).

Taking the lock also tidies what a holder stopped mid-write left behind (`checkpoint.recover`),
and a folder that the lock had to create is removed again when the run leaves nothing in it.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ..mgrit import agreed
from .checkpoint import recover

LOCK = ".lock"


@dataclass
class _Hold:
    lock: object
    folder: str                                              # absolute
    key: str                                                 # its real path
    made: str | None                                         # the topmost folder we created
    thread: int
    count: int = 1


_HELD = {}                                                   # real path of the folder -> _Hold


@contextmanager
def run_folder_lock(out, comm=None):
    """Hold the lock of run folder ``out`` for the body (nothing if ``out`` is None).

    Under MPI rank 0 takes it and every rank waits for the outcome (`agreed`): a refusal ends
    every rank. A thread that holds it already enters again (``train_from_options`` holds it
    around `train`).

    Raises
    ------
    ValueError
        ``out`` is a file or cannot be made a folder; another run (another process, or another
        thread of this one) holds it, named by pid, host and start time; it cannot be locked.
    """
    if out is None:
        yield
        return
    rank = 0 if comm is None else comm.Get_rank()
    hold = agreed(comm, lambda: _take(os.fspath(out)) if rank == 0 else None)
    try:
        yield
    finally:
        if hold is not None:
            _give_back(hold)


def _take(out):
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a run folder")
    key = os.path.realpath(out)
    hold = _HELD.get(key)
    if hold is not None:
        if hold.thread != threading.get_ident():
            raise ValueError(f"{out}: run folder in use by another thread of this process "
                             f"(pid {os.getpid()}): use another out folder")
        hold.count += 1
        return hold
    made = _make_folder(out)
    path = os.path.join(out, LOCK)
    try:
        lock = _acquire(out, path)
    except BaseException:
        _remove_made(out, made)
        raise
    try:
        recover(out)
    except BaseException:
        _release(lock, path)
        _remove_made(out, made)
        raise
    hold = _HELD[key] = _Hold(lock, os.path.abspath(out), key, made, threading.get_ident())
    return hold


def _give_back(hold):
    hold.count -= 1
    if hold.count:
        return
    del _HELD[hold.key]
    _release(hold.lock, os.path.join(hold.folder, LOCK))
    _remove_made(hold.folder, hold.made)


def _make_folder(out):
    """Create ``out`` (and its missing parents); return the topmost folder created, or None."""
    top, parent = None, os.path.abspath(out)
    while not os.path.exists(parent):
        top, parent = parent, os.path.dirname(parent)
    if top is None:
        return None
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create the run folder ({e.strerror or e})") from None
    return top


def _remove_made(out, made):
    """Remove the folders from ``out`` up to ``made`` that the run left empty."""
    if made is None:
        return
    folder = os.path.abspath(out)
    while True:
        try:
            os.rmdir(folder)                                 # only if empty
        except OSError:
            return
        if folder == made:
            return
        folder = os.path.dirname(folder)


def _acquire(out, path, tries=3):
    import filelock                                          # imported only when a run locks
    for attempt in range(tries):
        lock = filelock.FileLock(path, blocking=False, preserve_lock_file=True,
                                 on_acquired=_write_holder)
        try:
            lock.acquire()
            return lock
        except filelock.Timeout:
            holder = _holder(path)
            if holder is None and attempt + 1 < tries:       # it was just leaving: again
                time.sleep(0.05)
                continue
            raise ValueError(f"{out}: run folder in use by another run ("
                             f"{holder or 'holder unknown: it is starting or ending'}); wait for "
                             "it to end, or use another out folder") from None
        except OSError as e:
            raise ValueError(f"{out}: cannot lock the run folder ({e.strerror or e})") from None


def _release(lock, path):
    """Remove the lock file, then unlock: a run that opened the file meanwhile finds it gone
    (filelock then refuses its lock on the removed file) and the next one makes a new one."""
    try:
        os.remove(path)
    except OSError:
        pass
    lock.release()


def _write_holder(fd):
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(info) + "\n").encode())


def _holder(path):
    """"pid 123 on host h since 2025-01-01 12:00:00" from the lock file, or None."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read())
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
