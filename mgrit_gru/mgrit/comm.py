"""Communication for the time-parallel solver: boundary states and reductions.

`SerialComm` is the one-rank stand-in (no MPI needed); `MPIComm` wraps an mpi4py communicator.
The solver only ever needs: send one state to a neighbour (non-blocking), receive one state,
sum / max over ranks, and bring the whole job down when one rank fails (`abort`).

Deadlock-freedom: every message of the solver flows from a rank to its right neighbour on the same
level, sends are non-blocking (`isend` copies the state first), and every rank runs the same
sequence of phases, so a blocking `recv` only ever waits for a rank further left that is in the
same or an earlier phase; rank 0 never waits. The one collective per iteration (the residual
norm) is reached by every rank. What remains is a rank that *fails*: the others would wait for it
forever. `MPIComm` therefore installs `abort_on_error` (an exception hook that prints the
traceback with the rank and calls ``MPI_Abort``) when it wraps a communicator of more than one
rank; call `abort_on_error` yourself at the top of a script to cover code before the solver, or run
``mpiexec -n P python -m mpi4py script.py``, which does the same. Where ranks do different
work before a side effect (each reads its own rows of the data, then rank 0 writes files),
`agreed` makes an error on one rank an error on every rank before any goes on.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np


class SerialComm:
    """One rank: every reduction is the identity, there is nobody to talk to."""

    rank, size = 0, 1

    def __init__(self):
        self.comm_time = 0.0

    def isend(self, arr, dest, tag):
        raise RuntimeError("SerialComm has no neighbours to send to")

    def recv(self, buf, source, tag):
        raise RuntimeError("SerialComm has no neighbours to receive from")

    def waitall(self):
        pass

    def allreduce_sum(self, x):
        return x

    def allreduce_max(self, x):
        return x

    def bcast(self, obj, root=0):
        return obj

    def abort(self, code=1):
        sys.exit(code)


def abort_on_error(comm=None):
    """Make an uncaught exception on this rank end the whole MPI job (``MPI_Abort``), not hang it.

    Installs a `sys.excepthook` that prints ``[rank r/P] Traceback ...`` to stderr (whole lines,
    flushed) and then calls ``comm.Abort(1)``: mpiexec / srun then kill every rank and exit
    non-zero within a second or so, instead of the other ranks waiting forever in a receive from
    the dead one. Idempotent; a no-op without mpi4py. `MPIComm` calls it for communicators of more
    than one rank unless the environment sets ``MGRIT_GRU_NO_ABORT=1``.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        The communicator to abort (default ``MPI.COMM_WORLD``).

    Examples
    --------
    >>> from mgrit_gru.mgrit.comm import abort_on_error
    >>> abort_on_error()        # first line of an MPI script  # doctest: +SKIP

    Equivalent: ``mpiexec -n 4 python -m mpi4py script.py``.
    """
    if getattr(sys.excepthook, "_mgrit_gru_abort", False):
        return
    try:
        from mpi4py import MPI
    except ImportError:                                      # pragma: no cover - no MPI, no job
        return
    comm = MPI.COMM_WORLD if comm is None else comm
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if comm.Get_size() == 1:                             # alone: behave like plain Python
            previous(exc_type, exc, tb)
            return
        try:
            try:
                sys.stdout.flush()
            except Exception:                                # pragma: no cover
                pass
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            sys.stderr.write(f"[rank {comm.Get_rank()}/{comm.Get_size()}] uncaught exception, "
                             f"aborting the MPI job:\n{text}")
            sys.stderr.flush()
            time.sleep(0.2)               # let mpiexec forward the text before it kills the job
        finally:
            comm.Abort(1)

    hook._mgrit_gru_abort = True
    sys.excepthook = hook


class RankFailed(ValueError):
    """Raised by `agreed` on the ranks that did not fail themselves: another rank's error,
    quoted (that rank raises its own)."""


def agreed(comm, fn):
    """``fn()`` on every rank of the mpi4py communicator ``comm``, with agreement on failure.

    If ``fn`` raised on any rank, every rank raises before returning: the failing rank(s) their
    own exception, the others `RankFailed` quoting the first failing rank's. A failing rank whose
    error reads as a lower rank's (all ranks read the same bad file) marks it ``same_as_rank``
    (that rank's number), so that only one copy is printed. Without this, a
    rank that met no error would go on (rank 0: to write the run's files, delete an old
    checkpoint) until the failing rank's ``MPI_Abort`` reached it. Every rank must call it (one
    ``allgather``), and ``fn`` must send no messages between ranks (a rank failing before its
    sends would wait in the allgather while the others wait for them); ``comm=None`` just
    calls ``fn``.
    """
    if comm is None:
        return fn()
    try:
        out, err = fn(), None
    except Exception as e:                                   # (not KeyboardInterrupt & co.)
        out, err = None, e
    failures = comm.allgather(None if err is None else f"{type(err).__name__}: {err}")
    if err is not None:
        first = failures.index(failures[comm.Get_rank()])
        if first < comm.Get_rank():                          # the same error on a lower rank:
            err.same_as_rank = first                         # the command line says it once
        raise err
    for r, failure in enumerate(failures):
        if failure is not None:
            raise RankFailed(f"rank {r} of {len(failures)} failed: {failure}")
    return out


class MPIComm:
    """An mpi4py communicator seen through the few calls the solver makes.

    Sends copy the state into a private buffer first (so the sender may overwrite its array at
    once) and complete in `waitall`; every call's wall time is added to ``comm_time``. With more
    than one rank it installs `abort_on_error`, so that an exception on one rank ends the job.
    """

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._pending = []                                   # (request, buffer) kept alive
        self.comm_time = 0.0
        if self.size > 1 and os.environ.get("MGRIT_GRU_NO_ABORT") != "1":
            abort_on_error(comm)

    def isend(self, arr, dest, tag):
        t0 = time.perf_counter()
        buf = np.ascontiguousarray(arr).copy()
        self._pending.append((self.comm.Isend(buf, dest=dest, tag=tag), buf))
        self.comm_time += time.perf_counter() - t0

    def recv(self, buf, source, tag):
        t0 = time.perf_counter()
        if buf.flags.c_contiguous:
            self.comm.Recv(buf, source=source, tag=tag)
        else:
            tmp = np.empty(buf.shape, buf.dtype)
            self.comm.Recv(tmp, source=source, tag=tag)
            buf[...] = tmp
        self.comm_time += time.perf_counter() - t0

    def waitall(self):
        if self._pending:
            t0 = time.perf_counter()
            self.MPI.Request.Waitall([r for r, _ in self._pending])
            self._pending.clear()
            self.comm_time += time.perf_counter() - t0

    def allreduce_sum(self, x):
        t0 = time.perf_counter()
        if isinstance(x, np.ndarray):                        # one buffer Allreduce, no pickling
            x = np.ascontiguousarray(x)                      # (4x faster for 4M float64)
            out = np.empty_like(x)
            self.comm.Allreduce(x, out, op=self.MPI.SUM)
        else:
            out = self.comm.allreduce(x, op=self.MPI.SUM)
        self.comm_time += time.perf_counter() - t0
        return out

    def allreduce_max(self, x):
        t0 = time.perf_counter()
        if x != x:                                           # NaN: MPI's MAX compares, and a
            x = float("inf")                                 # comparison with NaN is False
        out = self.comm.allreduce(x, op=self.MPI.MAX)
        self.comm_time += time.perf_counter() - t0
        return out

    def bcast(self, obj, root=0):
        t0 = time.perf_counter()
        out = self.comm.bcast(obj, root=root)
        self.comm_time += time.perf_counter() - t0
        return out

    def abort(self, code=1):
        self.comm.Abort(code)


def as_comm(comm):
    """``None`` -> `SerialComm`; an mpi4py communicator (any size) -> `MPIComm`.

    A one-rank `MPIComm` behaves exactly like the serial solver (its reductions are identities).
    """
    if comm is None:
        return SerialComm()
    if isinstance(comm, (SerialComm, MPIComm)):
        return comm
    if hasattr(comm, "Get_size"):
        return MPIComm(comm)
    raise ValueError(f"comm must be None or an mpi4py communicator, got {type(comm).__name__}")
