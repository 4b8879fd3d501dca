"""What the GRU solves need from MPI besides the solver's own messages: one agreement check
before a solve's first message, and assembling rows that ranks hold in pieces."""
from __future__ import annotations

import numpy as np

_NEEDED_EVERYWHERE = {
    "dy_given": "every rank needs dy: the whole array, or a TimeSlice of at least its rows "
                "fwd.dy_rows (after gather='root', broadcast dy from rank 0)",
    "dh_T_given": "every rank needs dh_T, the whole (L, B, H) array"}


def same_on_every_rank(comm, options, **call):
    """ValueError on every rank unless the `MGRITOptions` ``options`` and the ``call``'s other
    values (sizes, cell, backend, gather, ...) are equal on every rank of ``comm``.

    Ranks that disagree (on T, levels, whether dy was given, ...) would follow different
    message patterns and wait for each other forever, or sum gradients of different losses.
    One allgather of a few small values per solve, before the solve's first message.
    """
    if comm.size == 1:
        return
    mine = {**options.to_dict(), **call}
    every = comm.comm.allgather(mine)
    differ = [k for k in mine
              if not all(np.array_equal(o.get(k), mine[k]) or repr(o.get(k)) == repr(mine[k])
                         for o in every)]
    if differ:
        raise ValueError("the ranks disagree on " + "; ".join(
            f"{k} ({', '.join(f'rank {r}: {o.get(k)!r}' for r, o in enumerate(every))})"
            for k in differ) + ": every rank must pass the same" + "".join(
            f"; {_NEEDED_EVERYWHERE[k]}" for k in differ if k in _NEEDED_EVERYWHERE))


def gather_rows(comm, start, rows, n_total, root):
    """Assemble each rank's ``rows`` (starting at ``start``) into one (n_total, ...) array, on
    every rank (``root`` None) or on ``root`` alone (None elsewhere)."""
    mpi = comm.comm
    parts = mpi.allgather((start, rows)) if root is None else mpi.gather((start, rows), root=root)
    if parts is None:
        return None
    out = np.empty((n_total,) + rows.shape[1:], rows.dtype)
    for s, r in parts:
        out[s: s + len(r)] = r
    return out
