"""What the ranks of an MPI run must agree on before its first step: the command, every option
that shapes the run, and the data.

Ranks started with different options (an MPMD launch, ``mpiexec -n 1 A : -n 1 B``) would train
different models, or follow different message patterns and wait for each other forever; each
rank's view is compared in one ``allgather`` and every rank refuses a difference, said once
(rank 0's copy: the others' errors carry ``same_as_rank``).
"""
from __future__ import annotations

import hashlib

import numpy as np

def same_on_every_rank(comm, command, values, flags=False):
    """ValueError on every rank unless every rank of ``comm`` runs ``command`` with equal
    ``values`` (a dict of JSON-like values); nothing without ``comm``.

    Parameters
    ----------
    comm : mpi4py communicator or None
    command : str
        What this rank runs ("train", "evaluate", "demo", "train data", ...): ranks running
        different commands are refused as such.
    values : dict
        What must be equal, by name.
    flags : bool
        Name the values as command-line flags (``seed`` -> ``--seed``).
    """
    if comm is None or comm.Get_size() == 1:
        return
    rank = comm.Get_rank()
    every = comm.allgather({"command": command, "values": values})
    error = _difference(every, command, flags)
    if error is not None:
        err = ValueError(error)
        if rank > 0:                                         # every rank says the same: once
            err.same_as_rank = 0
        raise err


def _difference(every, command, flags):
    """The message for what differs between the ranks' views ``every``, or None."""
    strangers = [r for r, o in enumerate(every)
                 if not (isinstance(o, dict) and isinstance(o.get("values"), dict))]
    if strangers:
        return (f"MPI rank {strangers[0]} of {len(every)} is not running mgrit-gru {command}: "
                "start every rank with the same command")
    commands = [o["command"] for o in every]
    if len(set(commands)) > 1:
        return ("the MPI ranks run different commands (" + _by_rank(commands) + "): start "
                "every rank with the same command and options")
    names = sorted(set().union(*(o["values"] for o in every)))
    differ = [k for k in names
              if any(o["values"].get(k) != every[0]["values"].get(k) for o in every)]
    if not differ:
        return None
    what = "options" if command != "train data" else "data"
    show = (lambda k: "--" + k.replace("_", "-")) if flags else (lambda k: k)
    return (f"the MPI ranks of {command} differ in their {what}: " + "; ".join(
        f"{show(k)} ({_by_rank([o['values'].get(k) for o in every])})" for k in differ[:4])
        + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
        + ": start every rank with the same options (and the same data)")


def _by_rank(values):
    """"rank 0: a, rank 1: b" for the ranks whose value is not rank 0's (at most three)."""
    shown = [0] + [r for r, v in enumerate(values) if v != values[0]][:3]
    return ", ".join(f"rank {r}: {values[r]!r}" for r in shown)


def data_identity(data, record):
    """What the ranks of a run must agree on about its loaded data: the record of `train`'s
    checkpoint (without a frame folder's listing, which only rank 0 makes), the sizes of the
    splits and a digest of their labels (every rank holds them whole; the time rows differ)."""
    h = hashlib.sha256()
    for y in (data.y_train, data.y_test):
        h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
        h.update(b"\0")
    identity = {k: v for k, v in record.items() if k != "listing"}
    identity.update(train=len(data.y_train), test=len(data.y_test), labels=h.hexdigest()[:16])
    return identity
