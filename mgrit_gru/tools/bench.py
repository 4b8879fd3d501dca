"""Benchmarks, printed as JSON lines by ``mgrit-gru bench --what NAME``.

Each benchmark is a function in `BENCHMARKS` that takes keyword options and yields one dict per
measurement (one JSON line each). To add one, write ``def bench_foo(..., repeat=5)`` and register
it as ``BENCHMARKS["foo"] = bench_foo``; `run_benchmark` passes it only the options its signature
names, so shared CLI flags (``--hidden``, ``--dtype``, ...) reach every benchmark that wants them.

Timings are medians over ``repeat`` runs after one warm-up run. For one-core figures set
``OMP_NUM_THREADS=1`` (and ``OPENBLAS_NUM_THREADS=1``) in the environment *before* starting
Python; the value in effect is recorded in every line.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import replace
import platform
import time

import numpy as np

from ..atomic import atomic_write
from ..checks import positive_float, positive_int
from ..gru import gru_backward, gru_forward, init_gru
from ..mgrit.hierarchy import Hierarchy
from . import time_to_accuracy


def _median_time(fn, repeat):
    """Median wall time of ``fn()`` over `repeat` runs, after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _median_run(runs):
    """The median of timed runs ``(total, forward, backward, ...)`` sorted by total: the middle
    run, or for an even count the mean of the two middle runs' times (their forward + backward
    still adds up to their total), with the lower one's other fields."""
    runs = sorted(runs, key=lambda r: r[0])
    lo, hi = runs[(len(runs) - 1) // 2], runs[len(runs) // 2]
    return tuple((a + b) / 2 for a, b in zip(lo[:3], hi[:3])) + tuple(lo[3:])


def _machine():
    """What the numbers were measured on."""
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "numpy": np.__version__,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS")}


def bench_gru(hidden=256, batch=32, seq_len=1024, input_size=None, layers=1, cell="classic",
              dt=1.0, dtype="float32", repeat=5, seed=0):
    """Serial forward and backward (BPTT) of `gru_forward`/`gru_backward`.

    Parameters
    ----------
    hidden, batch, seq_len : int
        H, B, T (defaults: the reference size 256, 32, 1024).
    input_size : int, optional
        I; equal to `hidden` by default.
    layers : int
    cell : {"classic", "implicit"}
    dt : float
    dtype : {"float32", "float64"}
    repeat : int
        Timed runs; the median is reported.
    seed : int

    Yields
    ------
    dict
        Sizes, median seconds of forward, backward and both, and microseconds per time step.
    """
    dtype = np.dtype(dtype)
    I = hidden if input_size is None else input_size
    params = init_gru(I, hidden, layers, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((seq_len, batch, I)).astype(dtype)
    dy = rng.standard_normal((seq_len, batch, hidden)).astype(dtype)
    cache = gru_forward(params, x, cell=cell, dt=dt)[2]        # for timing backward alone
    t_fwd = _median_time(lambda: gru_forward(params, x, cell=cell, dt=dt), repeat)
    t_bwd = _median_time(lambda: gru_backward(params, cache, dy=dy), repeat)
    t_both = _median_time(lambda: gru_backward(params, gru_forward(params, x, cell=cell, dt=dt)[2],
                                               dy=dy), repeat)
    yield {"bench": "gru", "cell": cell, "dt": dt, "layers": layers, "hidden": hidden,
           "input": I, "batch": batch, "seq_len": seq_len, "dtype": dtype.name, "repeat": repeat,
           "forward_s": t_fwd, "backward_s": t_bwd, "forward_backward_s": t_both,
           "forward_us_per_step": 1e6 * t_fwd / seq_len,
           "backward_us_per_step": 1e6 * t_bwd / seq_len,
           "forward_backward_us_per_step": 1e6 * t_both / seq_len, **_machine()}


_SPEEDUP_KIND = {False: "batching over intervals on one rank (no time parallelism)",
                 True: "time-parallel over the ranks (batching over intervals included)"}


def _rel_error(a, ref):
    """``||a - ref|| / ||ref||`` in float64."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def _relative_residual(info):
    """The final residual over the first one measured (1 for a one-cycle solve)."""
    first = info.initial_residual or (info.residual_history[0] if info.residual_history
                                      else None)
    return None if not first else float(info.final_residual / first)


def _x_rows(seed, start, stop, batch, size, dtype, chunk=256):
    """Rows ``start..stop-1`` of a random input sequence, the same whichever rank makes them
    (row chunks come from generators seeded by (seed, chunk)), so no rank needs all of x."""
    out = np.empty((stop - start, batch, size), dtype)
    for c in range(start // chunk, -(-stop // chunk)):
        rows = np.random.default_rng([seed, c]).standard_normal((chunk, batch, size))
        a, b = max(start, c * chunk), min(stop, (c + 1) * chunk)
        out[a - start: b - start] = rows[a - c * chunk: b - c * chunk]
    return out


def _world():
    """mpi4py's COMM_WORLD when launched by mpiexec with more than one rank, else None."""
    if not any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                                         "PMIX_RANK", "SLURM_PROCID", "MPI_LOCALNRANKS")):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def bench_forward(hidden=None, batch=None, seq_len=4096, input_size=None, layers=1,
                  cell="classic", dt=1.0, dtype="float32", levels=3, cf=4, relax="FCF", iters=2,
                  skip=True, repeat=3, seed=0, model=True, out=None):
    """Serial forward vs MGRIT forward, on one process or distributed under mpiexec.

    On one process: the serial `gru_forward` time, MGRIT's total time, time per iteration and per
    phase (relax / residual / restrict / coarsest / correct, from ``info.phase_times``), and the
    cost of one fine F-relaxation sweep per fine step compared with a serial step
    (``frelax_vs_serial_step``: below 1 means batching over intervals pays). Under
    ``mpiexec -n P`` every rank holds only its rows of x (`TimeSlice`), rank 0 also times the
    serial forward (the others wait), and rank 0 prints one summary line per size with the
    slowest rank's times (``mgrit_s``: the median over the timed runs of the slowest rank's
    wall time; ``comm_s`` and ``frelax_sweep_s`` are maxima over ranks), the speedup and the
    efficiency. Every record carries the accuracy of that speed: ``rel_error_vs_serial``
    (``||y - y_serial|| / ||y_serial||`` on the same inputs; ``h_T_rel_error_vs_serial`` the
    final states'), ``final_residual`` and ``relative_residual`` (final over first measured).
    On one rank ``speedup`` is the gain of batching over intervals, not time parallelism
    (``speedup_kind`` says which; ``efficiency`` is None there). ``phase_s``, ``phase_per_iter_s`` and ``mgrit_per_iter_s`` are rank 0's (the
    final F-relaxation after the last cycle included in ``phase_s``); ``per_rank`` lists every
    rank's own times and communication time. ``latency_s`` is measured between ranks 0 and 1
    under mpiexec, assumed (20 µs, ``latency_measured`` false) on one process. ``out`` writes
    the same records as a JSON list.

    Parameters
    ----------
    hidden, batch : int, optional
        H and B; default: both of (64, 256) and both of (1, 32).
    seq_len : int
        T (default 4096).
    levels, cf, relax, iters, skip
        MGRIT options; ``iters`` cycles with ``tol = 0`` (TorchBraid's forward default is 2).
    repeat : int
        Timed runs (median); one warm-up run first.
    model : bool
        Measure the batched step cost ``a + b n`` and add the performance model's prediction
        (`mgrit_gru.perfmodel.predict`) for this P next to the measurement.
    out : str, optional
        Path of a JSON file for the records (rank 0 writes it).

    Yields
    ------
    dict
        One record per (H, B) on rank 0 (nothing on other ranks).
    """
    import json

    from ..mgrit.comm import as_comm
    from ..problems import GRUForwardProblem
    from ..solve import TimeSlice, input_rows, mgrit_forward

    world = _world()
    comm = as_comm(world)
    P, rank = comm.size, comm.rank
    dtype = np.dtype(dtype)
    hiddens = (64, 256) if hidden is None else (hidden,)
    batches = (1, 32) if batch is None else (batch,)
    opts = dict(cell=cell, dt=dt, levels=levels, cf=cf, relax=relax, max_iter=iters, tol=0.0,
                skip=skip)
    records = []
    for H in hiddens:
        for B in batches:
            I = H if input_size is None else input_size
            params = init_gru(I, H, layers, seed=seed, dtype=dtype)
            # --- serial baseline, on rank 0 only (one core), others wait -------------------
            serial_s = None
            if rank == 0:
                x_full = _x_rows(seed, 0, seq_len, B, I, dtype)
                serial_s = _median_time(lambda: gru_forward(params, x_full, cell=cell, dt=dt),
                                        repeat)
                del x_full
            serial_s = comm.bcast(serial_s)
            # --- MGRIT, each rank with its own rows of x ------------------------------------
            a, b = input_rows(seq_len, world, levels=levels, cf=cf)
            xs = TimeSlice(_x_rows(seed, a, b, B, I, dtype), a, seq_len)
            runs = []
            for i in range(repeat + 1):                     # first run: warm-up
                if world is not None:
                    world.Barrier()
                t0 = time.perf_counter()
                _, _, info = mgrit_forward(params, xs, comm=world, gather="local", **opts)
                wall = time.perf_counter() - t0
                if i:
                    runs.append((comm.allreduce_max(wall), wall, info))
            runs.sort(key=lambda r: r[0])
            mgrit_s = float(np.median([r[0] for r in runs]))    # median of the slowest rank's
            # --- the accuracy of that speed: one more solve, y on rank 0, against serial ------
            y, h_T, _ = mgrit_forward(params, xs, comm=world, gather="root", **opts)
            y_err = h_err = None
            if rank == 0:
                y_ref, h_ref, _ = gru_forward(params, _x_rows(seed, 0, seq_len, B, I, dtype),
                                              cell=cell, dt=dt)
                y_err, h_err = _rel_error(y, y_ref), _rel_error(h_T, h_ref)
            _, own_s, info = runs[(len(runs) - 1) // 2]     # details: the (lower) median run
            solver = info.solver
            n_cycles = len(info.cycle_times)
            # --- one fine F-relaxation sweep vs serial steps ------------------------------------
            lv0 = solver.levels[0]
            n_f = sum(solver._points(0, k)[1] for k in range(1, lv0.cf)) if lv0.cf else 0
            frelax_s = _median_time(lambda: solver.f_relax(0), repeat)
            frelax_s = comm.allreduce_max(frelax_s)
            n_f_max = comm.allreduce_max(n_f)
            serial_step = serial_s / seq_len
            rank_rec = {"rank": rank, "points": [lv0.lo, lv0.hi], "wall_s": own_s,
                        "cycle_s": info.cycle_times, "phase_s": info.phase_times,
                        "level_s": info.level_times, "comm_s": info.comm_time}
            per_rank = world.gather(rank_rec, root=0) if world is not None else [rank_rec]
            rec = {"bench": "forward", "ranks": P, "seq_len": seq_len, "batch": B, "hidden": H,
                   "input": I, "layers": layers, "cell": cell, "dt": dt, "dtype": dtype.name,
                   "levels": len(solver.levels), "cf": solver.hier.cfs, "relax": relax,
                   "iters": iters, "skip": skip, "repeat": repeat,
                   "serial_s": serial_s, "serial_us_per_step": 1e6 * serial_step,
                   "mgrit_s": mgrit_s, "mgrit_per_iter_s": float(np.mean(info.cycle_times)),
                   "cycles": n_cycles, "final_residual": info.final_residual,
                   "relative_residual": _relative_residual(info),
                   "rel_error_vs_serial": y_err, "h_T_rel_error_vs_serial": h_err,
                   "speedup": serial_s / mgrit_s,
                   "speedup_kind": _SPEEDUP_KIND[P > 1],
                   "efficiency": serial_s / mgrit_s / P if P > 1 else None,
                   "phase_s": info.phase_times,
                   "phase_per_iter_s": {k: v / max(n_cycles, 1)
                                        for k, v in info.phase_times.items()},
                   "comm_s": comm.allreduce_max(info.comm_time),
                   "frelax_sweep_s": frelax_s,
                   "frelax_us_per_fine_step": 1e6 * frelax_s / max(n_f_max, 1),
                   "frelax_vs_serial_step": frelax_s / max(n_f_max, 1) / serial_step}
            if model:
                from .perfmodel import measure_latency, measure_step_cost, predict
                n_max = max(n_f_max // max(lv0.cf - 1, 1), 1)   # intervals per sweep call
                ns = sorted({1, 2, 4, 8, 16, 64, 256, n_max} - {n for n in (256,) if n > n_max})
                cost, samples = measure_step_cost(params, B, cell=cell, repeat=repeat, ns=ns)
                ccost, _ = measure_step_cost(params, B, level=1, repeat=repeat,
                                             ns=sorted({1, 4, 16, 64,
                                                        max(n_max // solver.hier.cfs[0], 1)}))
                setup = _median_time(lambda: GRUForwardProblem(
                    params, xs.x, np.zeros((layers, B, H), dtype), seq_len, cell), repeat)
                state_bytes = layers * B * H * dtype.itemsize
                lat = measure_latency(world, state_bytes) if world is not None else 20e-6
                rec["latency_measured"] = world is not None  # one rank: assumed (no messages)
                pred = predict(seq_len, P, step_cost=cost, coarse_step_cost=ccost,
                               serial_step=serial_step, cf=cf, levels=levels, relax=relax,
                               iters=iters, skip=skip, latency=lat, state_bytes=state_bytes,
                               proj_per_step=comm.allreduce_max(setup / xs.x.shape[0]))
                rec.update({"step_cost_a_s": cost.a, "step_cost_b_s": cost.b,
                            "coarse_step_cost_a_s": ccost.a, "coarse_step_cost_b_s": ccost.b,
                            "step_cost_samples": samples, "setup_per_step_s": pred.options[
                                "proj_per_step"], "latency_s": lat, "model_mgrit_s": pred.time,
                            "model_speedup": pred.speedup, "model_phase_s": pred.phases})
            rec.update(_machine())
            rec["per_rank"] = per_rank
            if rank == 0:
                records.append(rec)
                yield rec
    if out is not None and rank == 0:
        with atomic_write(out) as f:
            json.dump(records, f, indent=1)


def bench_train_step(hidden=256, batch=32, seq_len=4096, input_size=None, layers=1,
                     cell="classic", dt=1.0, dtype="float32", levels=3, cf=4, relax="FCF",
                     iters=2, bwd_iters=1, skip=True, conv_tol=1e-5, conv_max_iter=30, repeat=3,
                     seed=0):
    """Forward + backward (one training step's gradient) by serial BPTT and by MGRIT.

    Records: ``"bptt"`` (`gru_forward` + `gru_backward`, one process), ``"mgrit"`` with
    the paper's inexact budget (``iters`` forward and ``bwd_iters`` backward cycles, tol 0;
    Moon & Cyr: 2 and 1), with ``skip`` also ``"mgrit-no-bwd-skip"`` (the same budget, the
    backward solve without skip: its one cycle then relaxes on the fine grid) and
    ``"mgrit-converged"`` (both solves to a relative residual of ``conv_tol``). The loss is a
    random cotangent on every output. Under ``mpiexec -n P`` the MGRIT runs are distributed
    (each rank holds only its rows of x and dy; times are the slowest rank's) and rank 0 alone
    times BPTT (the others wait) and prints.

    Parameters
    ----------
    hidden, batch, seq_len : int
        H, B, T (defaults 256, 32, 4096).
    levels, cf, relax, iters, bwd_iters, skip
        MGRIT options of both solves (paper: 3 levels, cf 4, FCF, 2 / 1 iterations, skip).
    conv_tol, conv_max_iter
        The converged runs: relative tolerance and most cycles.
    repeat : int
        Timed runs (median); one warm-up run first.

    Yields
    ------
    dict
        On rank 0: per method ``forward_s``, ``backward_s``, ``train_step_s`` (median of whole
        forward+backward runs; the backward computes the parameter gradients, not dx, as
        training does), ``speedup_vs_bptt``, the cycles and final residuals of both
        solves, and ``grad_error``: the parameter gradients' relative 2-norm error against BPTT.
    """
    from ..mgrit.comm import as_comm
    from ..solve import TimeSlice, input_rows, mgrit_backward, mgrit_forward

    world = _world()
    comm = as_comm(world)
    P, rank = comm.size, comm.rank
    conv_tol = positive_float(conv_tol, "conv_tol")          # before the timings, not after
    conv_max_iter = positive_int(conv_max_iter, "conv_max_iter")
    dtype = np.dtype(dtype)
    H, B, T = hidden, batch, seq_len
    I = H if input_size is None else input_size
    params = init_gru(I, H, layers, seed=seed, dtype=dtype)
    common = {"bench": "train-step", "ranks": P, "seq_len": T, "batch": B, "hidden": H,
              "input": I, "layers": layers, "cell": cell, "dt": dt, "dtype": dtype.name,
              "repeat": repeat}
    # --- serial BPTT on rank 0 (the others wait) ---------------------------------------------
    ref, bptt = None, None
    if rank == 0:
        x = _x_rows(seed, 0, T, B, I, dtype)
        dy = _x_rows(seed + 1, 0, T, B, H, dtype)
        runs = []
        for i in range(repeat + 1):                          # first run: warm-up
            t0 = time.perf_counter()
            cache = gru_forward(params, x, cell=cell, dt=dt)[2]
            t1 = time.perf_counter()
            ref = gru_backward(params, cache, dy=dy, input_grad=False)[0]   # as training: no dx
            t2 = time.perf_counter()
            del cache
            if i:
                runs.append((t2 - t0, t1 - t0, t2 - t1))
        total, fwd_s, bwd_s = _median_run(runs)
        bptt = {**common, "method": "bptt", "forward_s": fwd_s, "backward_s": bwd_s,
                "train_step_s": total, "speedup_vs_bptt": 1.0, "grad_error": 0.0}
        del x, dy
    bptt_s = comm.bcast(bptt["train_step_s"] if rank == 0 else None)
    if rank == 0:
        yield {**bptt, **_machine()}
    # --- MGRIT, each rank with its own rows of x and dy --------------------------------------
    a, b = input_rows(T, world, levels=levels, cf=cf)
    xs = TimeSlice(_x_rows(seed, a, b, B, I, dtype), a, T)
    base = dict(levels=levels, cf=cf, relax=relax, comm=world)
    paper_f = dict(max_iter=iters, tol=0.0, skip=skip)
    budgets = [("mgrit", paper_f, dict(max_iter=bwd_iters, tol=0.0, skip=skip))]
    if skip:                                                 # the same budget, backward unskipped
        budgets.append(("mgrit-no-bwd-skip", paper_f, dict(max_iter=bwd_iters, tol=0.0,
                                                           skip=False)))
    conv = dict(max_iter=conv_max_iter, tol=conv_tol, tol_type="relative", skip=skip)
    budgets.append(("mgrit-converged", conv, conv))
    dys = None
    for method, fopts, bopts in budgets:
        runs = []
        for i in range(repeat + 1):
            if world is not None:
                world.Barrier()
            t0 = time.perf_counter()
            _, _, fwd = mgrit_forward(params, xs, cell=cell, dt=dt, gather="local", **base,
                                      **fopts)
            if dys is None:                                  # outputs lo - 2 .. hi - 1
                d0, d1 = fwd.dy_rows
                dys = TimeSlice(_x_rows(seed + 1, d0, d1, B, H, dtype), d0, T)
            t1 = time.perf_counter()
            grads, _, _, bwd = mgrit_backward(params, fwd, dys, gather="local", **base,
                                              input_grad=False, **bopts)   # as training
            t2 = time.perf_counter()
            if i:                                            # keep numbers, not the solves'
                walls = [comm.allreduce_max(t) for t in (t2 - t0, t1 - t0, t2 - t1)]
                summary = dict(fwd_iters=fwd.iterations, bwd_iters=bwd.iterations,
                               fwd_residual=fwd.final_residual,
                               bwd_residual=bwd.final_residual, fwd_converged=fwd.converged,
                               bwd_converged=bwd.converged,
                               comm_s=comm.allreduce_max(fwd.comm_time + bwd.comm_time))
                runs.append((*walls, summary, grads))        # (states and gates: GBs at T=4096)
            del fwd, bwd
        total, fwd_s, bwd_s, summary, grads = _median_run(runs)
        if rank == 0:
            num = sum(float(np.sum((grads[k].astype(np.float64) - ref[k]) ** 2))
                      for k in grads)
            den = sum(float(np.sum(ref[k].astype(np.float64) ** 2)) for k in grads)
            yield {**common, "method": method, "levels": levels, "cf": cf, "relax": relax,
                   "skip": fopts["skip"], "bwd_skip": bopts["skip"], "forward_s": fwd_s,
                   "backward_s": bwd_s, "train_step_s": total,
                   "speedup_vs_bptt": bptt_s / total, **summary,
                   **({"conv_tol": conv_tol, "conv_max_iter": conv_max_iter}
                      if method == "mgrit-converged" else {}),
                   "grad_error": float(np.sqrt(num / den)) if den else float(np.sqrt(num)),
                   **_machine()}


def bench_epoch(seq_len=None, hidden=None, batch=None, layers=None, cell=None, dtype=None,
                repeat=2, seed=0):
    """Seconds per training epoch, serial BPTT vs MGRIT, on the demo task (`train.DEMO`).

    Trains the demo model (synthetic videos; 512 training sequences) for 1 + ``repeat`` epochs
    with each solver and reports the median time of the last ``repeat`` (training only, not the
    test evaluation; the first epoch, which compiles and warms caches, is ``warmup_epoch_s``).
    Under ``mpiexec -n P`` the MGRIT run is distributed over the P ranks (each holds its time
    rows) and the serial run is made by rank 0 alone (the others wait); rank 0 prints.

    Parameters
    ----------
    seq_len, hidden, batch, layers, cell, dtype
        Override the demo's T, H, batch size, layers, cell, dtype.
    repeat : int
        Epochs timed per solver after the warm-up epoch (median reported).
    seed : int

    Yields
    ------
    dict
        Per solver: ``epoch_s`` (median), ``epoch_times``, ``step_s``, ``steps_per_epoch``,
        ``final_test_acc``, ``speedup_vs_serial`` beside ``grad_rel_error`` (the gradient's
        relative error against BPTT at the final weights, first training batch; 0 for
        serial), the last MGRIT residuals.
    """
    from ..training import DEMO, TrainConfig, train

    world = _world()
    rank = 0 if world is None else world.Get_rank()
    P = 1 if world is None else world.Get_size()
    over = {k: v for k, v in dict(seq_len=seq_len, hidden=hidden, batch_size=batch,
                                  layers=layers, cell=cell, dtype=dtype).items() if v is not None}
    cfg = {**DEMO, **over, "epochs": int(repeat) + 1, "seed": seed}   # epoch 1: the warm-up
    records, serial_s = [], None
    for solver in ("serial", "mgrit"):
        comm = None if solver == "serial" else world
        res = None
        if comm is not None or rank == 0:
            res = train(TrainConfig(**{**cfg, "solver": solver}), comm=comm, progress=False,
                        verbose=False, plots=False)
        if world is not None:
            world.Barrier()                                  # others wait for rank 0's serial run
        if rank != 0:
            continue
        warmup_s, times = res.history[0]["seconds"], [r["seconds"] for r in res.history[1:]]
        grad_err = _final_gradient_error(res)
        epoch_s = float(np.median(times))
        serial_s = epoch_s if solver == "serial" else serial_s
        n_steps = res.history[0]["steps"]
        last = res.history[-1]
        records.append({"bench": "epoch", "solver": solver, "ranks": 1 if comm is None else P,
                        "seq_len": res.config.seq_len or 256, "hidden": res.config.hidden,
                        "batch": res.config.batch_size, "layers": res.config.layers,
                        "cell": res.config.cell, "dtype": res.config.dtype,
                        "steps_per_epoch": n_steps, "epochs": len(times),
                        "epoch_s": epoch_s, "epoch_times": times, "warmup_epoch_s": warmup_s,
                        "step_s": epoch_s / n_steps,
                        "speedup_vs_serial": serial_s / epoch_s,
                        "final_test_acc": last["test_acc"], "grad_rel_error": grad_err,
                        "last_fwd_residual": last["last_fwd_residual"],
                        "last_bwd_residual": last["last_bwd_residual"], **_machine()})
    yield from records


def _final_gradient_error(res):
    """The relative error of the run's gradient against BPTT at its final weights, on the
    first training batch (one process: the error does not depend on the ranks)."""
    from ..training.data import batches
    from ..training.datasets import prepare_data
    cfg = res.config
    data = prepare_data(replace(cfg, solver="serial"))
    x, y = next(batches(data.x_train, data.y_train, cfg.batch_size, shuffle=False))
    x = x.astype(cfg.dtype)
    ref_opts = replace(cfg, solver="serial").solver_options()
    return time_to_accuracy.gradient_agreement(res.params, [((x, x), y)], cfg.solver_options(),
                                               ref_opts)[0]


def bench_cuda(seq_len=None, batch=None, hidden=256, input_size=None, layers=1, cell="implicit",
               dtype="float32", levels=3, cf=4, iters=2, bwd_iters=1, relax="FCF", repeat=5,
               seed=0, out=None, seq_lens=(1024, 4096, 16384, 65536), batches=(1, 32),
               torch=True, simulate=False, accuracy_rows=True):
    """One GPU: serial stepping vs MGRIT forward, backward, forward+backward (and cuDNN's
    nn.GRU when PyTorch is importable), T = 1024..65536, B = 1 and 32, H = 256, float32.

    ``seq_len`` / ``batch`` (the CLI's --seq-len, --batch) pick one size instead of the sweep.
    Every MGRIT record has its residual and its error against the serial solution; a short table
    goes to stderr at the end, ``out`` gets the full results as JSON. Raises ValueError without
    a GPU (the CLI exits 2). See `mgrit_gru.cuda.bench`.
    """
    from .bench_cuda import bench_cuda as run                # numba only when asked for
    yield from run(seq_lens=(seq_len,) if seq_len else tuple(seq_lens),
                   batches=(batch,) if batch else tuple(batches), hidden=hidden,
                   input_size=input_size, layers=layers, cell=cell, dtype=dtype, levels=levels,
                   cf=cf, iters=iters, bwd_iters=bwd_iters, relax=relax, repeat=repeat,
                   seed=seed, torch=torch, simulate=simulate, out=out,
                   accuracy_rows=accuracy_rows)


BENCHMARKS = {"gru": bench_gru, "forward": bench_forward,
              "train-step": bench_train_step, "epoch": bench_epoch, "cuda": bench_cuda,
              "time-to-accuracy": time_to_accuracy.bench}
"""Benchmark name -> function yielding result dicts. Extend by adding entries."""


def _flag(name):
    """The command-line flag of a benchmark option."""
    return {"input_size": "--input", "skip": "--no-skip", "model": "--no-model"}.get(
        name, "--" + name.replace("_", "-"))


def run_benchmark(what, **options):
    """Run benchmark `what`, passing the options its function accepts; yield result dicts.

    Options that are ``None`` are dropped, so the function's own defaults apply.

    Raises
    ------
    ValueError
        If `what` is not a key of `BENCHMARKS`, or `check_benchmark` refuses the options.
    """
    fn, given = check_benchmark(what, **options)
    yield from fn(**given)


def check_benchmark(what, **options):
    """The checks `run_benchmark` makes before it starts, on this rank alone (no messages
    between ranks, so that the command line can run them under `agreed` and print a refusal
    once): the benchmark's name, options it does not take, ``repeat``, and for the MGRIT
    benchmarks that the hierarchy fits T on this many ranks.

    Returns
    -------
    (callable, dict)
        The benchmark's function and the options it gets (those that are not None).
    """
    if what not in BENCHMARKS:
        raise ValueError(f"what must be one of {sorted(BENCHMARKS)}, got {what!r}")
    fn = BENCHMARKS[what]
    accepted = inspect.signature(fn).parameters
    given = {k: v for k, v in options.items() if v is not None}
    ignored = sorted(k for k in given if k not in accepted)
    if ignored:                                              # silently dropping them misled users
        raise ValueError(f"bench --what {what} does not take {', '.join(map(_flag, ignored))} "
                         f"(it takes {', '.join(_flag(k) for k in accepted)})")
    repeat = given.get("repeat")
    if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, int)
                               or repeat < 1):
        raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    if what == "forward" and given.get("levels", 3) < 2:
        raise ValueError("bench --what forward needs levels >= 2 (it times an F-relaxation; "
                         "levels = 1 is serial stepping, which it times anyway)")
    if what in ("forward", "train-step"):                    # the levels fit T on these ranks
        opt = {k: given.get(k, accepted[k].default) for k in ("seq_len", "cf", "levels")}
        world = _world()
        Hierarchy(opt["seq_len"], opt["cf"], opt["levels"],
                  rank=0 if world is None else world.Get_rank(),
                  size=1 if world is None else world.Get_size())
    return fn, given
