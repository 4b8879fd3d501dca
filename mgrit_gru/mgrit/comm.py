"""Communication for the time-parallel solver: boundary states and reductions.

`SerialComm` is the one-rank stand-in (no MPI needed); `MPIComm` wraps an mpi4py communicator.
The solver only ever needs: send one state to a neighbour (non-blocking), receive one state,
sum / max over ranks, and bring the whole job down when one rank fails (`abort`).
"""
from __future__ import annotations

import sys
import time

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


class MPIComm:
    """An mpi4py communicator seen through the few calls the solver makes.

    Sends copy the state into a private buffer first (so the sender may overwrite its array at
    once) and complete in `waitall`; every call's wall time is added to ``comm_time``.
    """

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._pending = []                                   # (request, buffer) kept alive
        self.comm_time = 0.0

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
        out = self.comm.allreduce(x, op=self.MPI.SUM)
        self.comm_time += time.perf_counter() - t0
        return out

    def allreduce_max(self, x):
        t0 = time.perf_counter()
        out = self.comm.allreduce(x, op=self.MPI.MAX)
        self.comm_time += time.perf_counter() - t0
        return out

    def bcast(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def abort(self, code=1):
        self.comm.Abort(code)


def as_comm(comm):
    """``None`` or a one-rank communicator -> `SerialComm`; an mpi4py communicator -> `MPIComm`."""
    if comm is None:
        return SerialComm()
    if isinstance(comm, (SerialComm, MPIComm)):
        return comm
    if hasattr(comm, "Get_size"):
        return MPIComm(comm)
    raise ValueError(f"comm must be None or an mpi4py communicator, got {type(comm).__name__}")
