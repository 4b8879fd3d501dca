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
import platform
import time

import numpy as np

from .gru import gru_backward, gru_forward, init_gru


def _median_time(fn, repeat):
    """Median wall time of ``fn()`` over `repeat` runs, after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


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
        H, B, T (defaults: the issue's reference size 256, 32, 1024).
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


BENCHMARKS = {"gru": bench_gru}
"""Benchmark name -> function yielding result dicts. Extend by adding entries."""


def run_benchmark(what, **options):
    """Run benchmark `what`, passing the options its function accepts; yield result dicts.

    Options that are ``None`` are dropped, so the function's own defaults apply.

    Raises
    ------
    ValueError
        If `what` is not a key of `BENCHMARKS`.
    """
    if what not in BENCHMARKS:
        raise ValueError(f"what must be one of {sorted(BENCHMARKS)}, got {what!r}")
    fn = BENCHMARKS[what]
    accepted = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in options.items() if v is not None and k in accepted}
    yield from fn(**kwargs)
