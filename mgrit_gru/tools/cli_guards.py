"""What the command line checks around a command: counts and writable paths before it, an
empty run folder and the whole MPI job after a failure."""
from __future__ import annotations

import os
import sys
import time


def _remove_if_empty(folder):
    """Remove ``folder`` if it is an empty folder (another rank may have removed it first)."""
    try:
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
    except OSError:
        pass


# integer options that count something (>= 1), by argparse dest (main names the flag)
_COUNTS = ("seq_len", "batch", "input", "input_size", "hidden", "layers", "num_sequences",
           "num_classes", "frame_size", "projection_dim", "batch_size", "epochs", "repeat",
           "levels", "iters", "bwd_iters", "fwd_iters", "directions", "conv_max_iter")


def _check_counts(args):
    """ValueError for a size or count below 1 or a negative seed, before any work (numpy's own
    message, "negative dimensions are not allowed", names nothing)."""
    for dest in _COUNTS:
        v = getattr(args, dest, None)
        if isinstance(v, int) and v < 1:
            raise ValueError(f"{dest} must be >= 1, got {v}")
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _end_the_mpi_job(code):
    """Under ``mpiexec -n P`` (P > 1), end every rank: an error that only one rank met (rank 0
    alone writes the checkpoint and metrics) would otherwise leave the others waiting in the
    solver's next message forever."""
    from ..training import world_comm
    comm = world_comm()
    if comm is not None:
        sys.stderr.flush()
        time.sleep(0.2)                   # let mpiexec forward the message before the kill
        comm.Abort(code)


def _one_process(command):
    """ValueError under ``mpiexec -n P`` (P > 1): every rank would run the same whole job and
    write the same files at once."""
    from ..training import world_comm
    if world_comm() is not None:
        raise ValueError(f"mgrit-gru {command} runs on one process; under mpiexec use train, "
                         "evaluate, demo, bench --what forward, train-step or epoch, or the "
                         "Python API with comm=")


def _check_writable(path, flag, image=False):
    """ValueError naming ``flag`` unless ``path``'s folder exists (or can be made) and is
    writable, and ``path`` is not a folder; with ``image``, unless matplotlib can write its
    file type (checked before the work, not after it)."""
    if image:
        from matplotlib.figure import Figure
        kinds = Figure().canvas.get_supported_filetypes()
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        if ext not in kinds:
            raise ValueError(f"{flag} {path}: not an image file name (use one of "
                             f"{', '.join('.' + k for k in sorted(kinds))})")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder                                        # the writer makes the rest; a
    while not os.path.exists(existing):                      # refused run leaves no folder
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {path}: cannot create its folder ({existing} is a file)")
    if os.path.isdir(path) or not os.access(existing, os.W_OK):
        raise ValueError(f"{flag} {path}: not a writable file path")
