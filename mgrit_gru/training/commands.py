"""What ``mgrit-gru train``, ``evaluate`` and ``demo`` run: the demo's settings, MPI from the
launcher's environment, options from the command line (checked for what the run would not use)."""
from __future__ import annotations

import os

from ..mgrit import agreed
from .agreement import same_on_every_rank
from .checkpoint import CHECKPOINT, load_checkpoint
from .config import TrainConfig, _unused_options
from .lock import run_folder_lock
from .loop import train
from .presets import resolve
from .runfolder import _mismatch

DEMO = dict(data="synthetic", seq_len=128, num_sequences=640, frame_size=16, noise=0.1,
            hidden=32, layers=1, cell="classic", solver="mgrit", levels=3, cf=4, relax="FCF",
            fwd_iters=2, bwd_iters=1, optimizer="adam", lr=1e-2, clip=1.0, batch_size=32,
            epochs=5, seed=0, dtype="float64")
"""The demo's settings: 512 training videos of 128 frames, about 10 s on one laptop core
(8 s measured with one thread on the 2-vCPU development machine)."""


def demo(out="runs/demo", comm=None, progress=True, **overrides):
    """Train the demo model (`DEMO` settings, MGRIT) into ``out`` and return the `TrainResult`.

    A rerun replaces an earlier demo in ``out``; a folder holding any other run is refused (the
    demo must not overwrite a user's training run)."""
    cfg = TrainConfig(**{**DEMO, **overrides})
    if comm is not None and comm.Get_size() == 1:
        comm = None
    same_on_every_rank(comm, "demo", {**cfg.to_dict(), "out": os.fspath(out)})
    ckpt_path = os.path.join(out, CHECKPOINT)

    def check():
        if not os.path.isfile(ckpt_path):
            return
        try:
            other = [k for k in _mismatch(cfg, load_checkpoint(ckpt_path).config) if k != "solver"]
        except ValueError:                                   # unreadable: not ours to replace
            other = ["checkpoint"]
        if other:
            raise ValueError(f"{ckpt_path} holds a run that is not the demo's (its "
                             f"{', '.join(other[:4])} differ): the demo replaces only its own "
                             "runs; pass another --out")
    with run_folder_lock(out, comm):                        # nothing read before the lock
        agreed(comm, check)
        return train(cfg, out=out, overwrite=True, comm=comm, progress=progress)


_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_PROCID",
            "MPI_LOCALNRANKS")


def world_comm():
    """``MPI.COMM_WORLD`` when started by mpiexec with more than one rank, else None.

    mpi4py is imported only when an MPI launcher's environment variables are present, so a plain
    ``mgrit-gru train`` never initialises MPI.
    """
    if not any(k in os.environ for k in _MPI_ENV):
        return None
    try:
        from mpi4py import MPI
    except ImportError:                                      # pragma: no cover
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def train_from_options(options, out, resume=False, overwrite=False, progress=True,
                       verbose=True, comm="world"):
    """`train` with ``options`` (TrainConfig fields; None = not given).

    Options not given take the ``preset``'s values if one is given, else `TrainConfig`'s
    defaults, or, with ``resume``, the checkpoint's (so ``--resume --epochs 10`` is enough to
    continue a run).
    """
    comm = world_comm() if comm == "world" else comm
    if comm is not None and comm.Get_size() == 1:
        comm = None
    # an MPMD launch (mpiexec -n 1 A : -n 1 B) may start the ranks with different options
    same_on_every_rank(comm, "train", {**options, "out": os.fspath(out), "resume": resume,
                                       "overwrite": overwrite}, flags=True)

    def config():
        given = {k: v for k, v in options.items() if v is not None}
        preset = given.pop("preset", None)
        base = TrainConfig().to_dict()
        ckpt_path = os.path.join(out, CHECKPOINT)
        if resume and os.path.isfile(ckpt_path):
            base = load_checkpoint(ckpt_path).config.to_dict()
        # a preset fills what the flags leave out; a flag given wins
        cfg = TrainConfig.from_dict({**base, **(resolve(preset, given) if preset else given)})
        unused = _unused_options(given, cfg)
        if unused:                                           # as bench: refused, not ignored
            raise ValueError("this run would not use " + "; ".join(unused))
        return cfg
    with run_folder_lock(out, comm):                        # nothing read before the lock
        # every rank checks the same options: agreed, so that a bad one is printed once
        cfg = agreed(comm, config)
        return train(cfg, out=out, resume=resume, overwrite=overwrite, comm=comm,
                     progress=progress, verbose=verbose)
