"""``mgrit-gru bench --backend cuda``: serial stepping vs MGRIT on one GPU (and cuDNN if present).

For every (T, B): serial forward and forward+backward on the device (`mgrit_gru.cuda.serial`: one
persistent launch for the whole recurrence; for T <= ``per_step_max`` also the naive baseline of
one launch per step, rows ``*_per_step``), MGRIT forward, backward and forward+backward (``backend="cuda"``,
the paper's budget by default: 3 levels, cf 4, 2 forward / 1 backward cycles, FCF), and, when
PyTorch with CUDA is importable, ``torch.nn.GRU`` (cuDNN) forward and forward+backward on the same
sizes. Every MGRIT record states its final residual and its error against the serial solution
(forward: max |y - y_serial| / max |y_serial|; backward: the largest such relative error over the
gradients, dx and dh0 against serial BPTT).

Timing: one warm-up run (compilation), then ``repeat`` runs (fewer when one run is long, at least
one) with ``cuda.synchronize()`` before and after each, median reported. The MGRIT rows time the
public functions, which copy their results to the host at the end (the solver returns every fine
state: ``host_copy_s`` records what that copy alone costs; ``host_io_s`` on the forward+backward
row, what the API's copies of x, y, dy and dx cost on their own: cuDNN's rows pay none).
``mgrit_forward_backward_device`` is the same forward+backward with x and dy already on the
device and y, dx left there (the device-array API of `mgrit_forward` / `mgrit_backward`): the
setting cuDNN's rows are timed in. The final ratio line gives cuDNN / MGRIT for both.
``solver_s`` is the solver's own wall time (the rest of ``seconds`` is set-up and transfers)
and ``phase_s`` its host-clock split by phase (relax, residual, coarsest, ...; launches are
asynchronous, so a phase's device work may be billed to the next phase that waits for it, e.g.
the residual norm). ``phase_device_s``: the same split from one more solve each way with
``MGRIT_GRU_SYNC_TIMERS=1`` (a wait for the GPU at each phase's ends): the device's time per
phase, summed over levels; the table's last lines give it per (T, B).

``launch_us`` (in the JSON, and on stderr first): the host cost of one launch from Python
(`launch_cost`), which multiplied by an MGRIT solve's launch count (forward 36, backward 29 at
the default settings) bounds what the solve costs at small T.

``out``: the JSON file is rewritten after every (T, B), so a run cut short keeps what it measured.
A (T, B) that runs out of GPU memory keeps the rows measured before it, says so on stderr, and
the next (T, B) runs; cuDNN longer than ``TORCH_CHUNK`` steps runs in chunks (it refuses
T = 65536 in one piece), the state carried from one to the next.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time

import numpy as np
from numba import cuda

from ..atomic import atomic_write
from ..gru import init_gru
from ..solve import mgrit_backward, mgrit_forward
from ..cuda.backend import _is_out_of_memory, cuda_available, flush_pending_frees
from ..cuda.serial import gru_backward, gru_forward

TORCH_CHUNK = 16384                  # cuDNN refuses a 65536-step sequence (NOT_SUPPORTED, H200,
                                     # torch 2.11): longer ones run as chunks, the state carried
LONG_RUN_S = 20.0                    # at most about this many seconds of timed runs per row


def _sync():
    cuda.synchronize()


def _timed(fn, repeat, sync=_sync):
    """(median seconds, runs, last result): warm-up once, then up to ``repeat`` timed runs
    (``repeat`` = 0: the warm-up run alone, timed; for the simulator's logic check)."""
    _free_device()
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    warm = time.perf_counter() - t0
    if repeat == 0:
        return warm, 1, out
    reps = max(1, min(repeat, int(LONG_RUN_S // max(warm, 1e-9))))
    times = []
    for _ in range(reps):
        out = None                                           # free the last run's arrays first
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), reps, out


def _free_device():
    """Free what numba has queued for release, so that one row's arrays are not still
    allocated while the next row runs: at T = 16384, B = 32 an MGRIT
    forward+backward alone keeps ~24 (T, B, H) float32 tables (12 GiB) alive at its peak."""
    gc.collect()                                             # results caught in cycles
    flush_pending_frees()


def _out_of_memory(error):
    """True for the device running out of memory: a MemoryError (`solve_scope` turns the
    driver's error into one inside a solve) or numba's CudaAPIError with that code outside."""
    from numba.cuda.cudadrv.driver import CudaAPIError
    return isinstance(error, MemoryError) or (
        isinstance(error, CudaAPIError) and _is_out_of_memory(error))


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _device_name(simulate):
    if simulate:
        return "numba CUDA simulator (CPU): timings meaningless"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def launch_cost(hidden, input_size, dtype, reps=200):
    """Host cost of one kernel launch from Python, in µs: ``reps`` back-to-back launches of a
    one-point `axpby` (5 arguments) and of a one-row `gru_step` (21 arguments), then one
    synchronize. The kernels themselves take a few µs, so this is numba's dispatch and argument
    marshalling: what every MGRIT operation pays once, whatever T is."""
    from ..cuda.backend import CudaGRU
    dtype = np.dtype(dtype)
    gru = CudaGRU(init_gru(input_size, hidden, 1, seed=0, dtype=dtype), "implicit", dtype=dtype)
    u = gru.to_device(np.zeros((1, 1, 1, hidden), dtype))
    out = gru.empty(u.shape)
    t = gru.to_device(np.zeros(1), np.int64)
    gx = gru.to_device(np.zeros((1, 1, 3 * hidden), dtype))
    launches = {"axpby": lambda: gru.axpby(1.0, u, 1.0, u, out),
                "gru_step": lambda: gru.step(u, t, gx, 1.0, out)}
    cost = {}
    for name, launch in launches.items():
        launch()                                             # compile
        _sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            launch()
        _sync()
        cost[name] = 1e6 * (time.perf_counter() - t0) / reps
    return cost


def scan_blocks_sweep(T=4096, B=1, hidden=256, dtype="float32", blocks=(1, 2, 4, 8, 16, 32, 64),
                      repeat=3):
    """µs per step of the persistent forward scan (`CudaGRU.scan`, T steps, B sequences) for each
    grid size in ``blocks`` that fits (at most `CudaGRU.max_scan_blocks`; the default is
    `CudaGRU.scan_blocks`): fewer blocks make the grid barrier cheaper and each block's share of
    the B*H items larger. Each record also states ``max_diff`` against the default grid's
    states: a block count changes which block owns an item, not the item's arithmetic, so it
    must be 0; ``error_vs_numpy`` is the default grid's relative error against NumPy stepping
    (`mgrit_gru.gru.gru_forward`)."""
    from ..gru import gru_forward as numpy_forward
    from ..cuda.backend import CudaGRU
    dtype = np.dtype(dtype)
    H = hidden
    params = init_gru(H, H, 1, seed=0, dtype=dtype)
    gru = CudaGRU(params, "implicit", dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((1, B, H))).astype(dtype)
    gx = gru.project(gru.to_device(x))
    t = gru.to_device(np.arange(T), np.int64)
    us = gru.empty((T + 1, 1, B, H))

    def run(nblk):
        gru.copy(gru.to_device(h0[None]), us[0:1])
        gru.scan(us, t, gx, 1.0, blocks=nblk)
        return us

    default = gru.scan_blocks(B)
    ref = gru.to_host(run(default))
    err = _rel(ref[1:, 0], numpy_forward(params, x, h0, cell="implicit")[0])
    records = []
    for nblk in sorted(set(b for b in blocks if b <= gru.max_scan_blocks()) | {default}):
        sec, reps, out = _timed(lambda: run(nblk), repeat)
        records.append({"bench": "cuda_scan_blocks", "seq_len": T, "batch": B, "hidden": H,
                        "dtype": dtype.name, "blocks": nblk, "default": nblk == default,
                        "us_per_step": 1e6 * sec / T, "repeat": reps,
                        "max_diff": float(np.max(np.abs(gru.to_host(out) - ref))),
                        "error_vs_numpy": err})
    return records


def host_io(x, dy, repeat=3):
    """Seconds the copies the public API needs take on their own (median of ``repeat``): x and
    dy to the device, y and dx back, at the benchmark's sizes. cuDNN's rows have their tensors
    on the device already: this is the part of an MGRIT row that theirs does not pay."""
    times = []
    for _ in range(max(1, repeat)):
        _sync()
        t0 = time.perf_counter()
        d_x, d_dy = cuda.to_device(x), cuda.to_device(dy)
        d_dy.copy_to_host()                                   # y: (T, B, H), like dy
        d_x.copy_to_host()                                    # dx: (T, B, I), like x
        _sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _torch_rows(T, B, H, I, repeat, seed, base):
    """cuDNN nn.GRU forward and forward+backward, or nothing without torch+CUDA: as many
    layers and the same dtype as ``base`` says (the classic cell: cuDNN has no other)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    torch.manual_seed(seed)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[base["dtype"]]
    gru = torch.nn.GRU(I, H, num_layers=base["layers"]).cuda().to(tdtype)
    x = torch.randn(T, B, I, device="cuda", dtype=tdtype)
    dy = torch.randn(T, B, H, device="cuda", dtype=tdtype)
    base = dict(base, cell="classic")
    sync = torch.cuda.synchronize

    starts = range(0, T, TORCH_CHUNK)                        # one chunk up to TORCH_CHUNK steps

    def run():                                               # the chunks in turn, h carried over
        h, ys = None, []
        for c in starts:
            y, h = gru(x[c:c + TORCH_CHUNK], h)
            ys.append(y)
        return ys

    def fwd():
        with torch.no_grad():
            return run()

    def fwd_bwd():
        gru.zero_grad(set_to_none=True)
        torch.autograd.backward(run(), [dy[c:c + TORCH_CHUNK] for c in starts])

    rows = []
    for name, fn in (("torch_forward", fwd), ("torch_forward_backward", fwd_bwd)):
        s, reps, _ = _timed(fn, repeat, sync)
        rows.append(dict(base, run=name, seconds=s, repeat=reps, us_per_step=1e6 * s / T,
                         cudnn=bool(torch.backends.cudnn.enabled), torch=torch.__version__,
                         chunks=len(starts)))
    return rows


def _torch_rows_or_none(T, B, H, I, repeat, seed, base):
    """`_torch_rows`, or [] and a line on stderr if torch fails (out of memory, cuDNN, the
    driver): the baseline's failure must not cost the (T, B)'s MGRIT rows, kept before it."""
    try:
        return _torch_rows(T, B, H, I, repeat, seed, base)
    except Exception as e:                                   # anything torch raises
        print(f"torch rows for (T, B) = {(T, B)} failed: {type(e).__name__}: {e}",
              file=sys.stderr)
        return []
    finally:                                                 # its cached blocks, back to the driver
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()


@contextlib.contextmanager
def synced_timers():
    """MGRIT_GRU_SYNC_TIMERS=1 inside (`CudaVectors.sync_timers`), the old value restored."""
    old = os.environ.get("MGRIT_GRU_SYNC_TIMERS")
    os.environ["MGRIT_GRU_SYNC_TIMERS"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["MGRIT_GRU_SYNC_TIMERS"]
        else:
            os.environ["MGRIT_GRU_SYNC_TIMERS"] = old


def _numba_rows(params, x, dy, cell, fopts, bopts, repeat, per_step_max, base, rows,
                accuracy_rows=True):
    """The serial (persistent and, up to ``per_step_max``, per-step) and MGRIT rows of one
    (T, B), appended to ``rows`` as they are measured (a failure keeps the ones before it). A
    function of its own so that its device arrays (state and gate tables, the solves' levels:
    tens of GB at T = 65536, B = 32) are freed when it returns."""
    T = x.shape[0]
    mg = dict(levels=fopts["levels"], cf=fopts["cf"], relax=fopts["relax"],
              iters=fopts["max_iter"], bwd_iters=bopts["max_iter"])
    # serial stepping: one persistent launch; the per-step baseline on short sequences
    if repeat:
        gru_forward(params, x[:16], cell=cell)               # compile on a short sequence
    s, reps, (y_s, _, _) = _timed(                           # (the cache: device arrays, dropped)
        lambda: gru_forward(params, x, cell=cell), repeat)
    rows.append(dict(base, run="serial_forward", seconds=s, repeat=reps,
                     us_per_step=1e6 * s / T, launches="scan"))

    def serial_fb(launches="scan"):
        c = gru_forward(params, x, cell=cell, launches=launches)[2]
        return gru_backward(params, c, dy, launches=launches)
    s, reps, ref_b = _timed(serial_fb, repeat)
    rows.append(dict(base, run="serial_forward_backward", seconds=s, repeat=reps,
                     us_per_step=1e6 * s / T, launches="scan"))
    if T <= per_step_max:
        s, reps, (y_p, _, _) = _timed(
            lambda: gru_forward(params, x, cell=cell, launches="per_step"), repeat)
        rows.append(dict(base, run="serial_forward_per_step", seconds=s, repeat=reps,
                         us_per_step=1e6 * s / T, launches="per_step",
                         error_vs_serial=_rel(y_p, y_s)))
        s, reps, b_p = _timed(lambda: serial_fb("per_step"), repeat)
        rows.append(dict(base, run="serial_forward_backward_per_step", seconds=s,
                         repeat=reps, us_per_step=1e6 * s / T, launches="per_step",
                         error_vs_serial=max(_rel(b_p[0][k], ref_b[0][k])
                                             for k in ref_b[0])))
    # MGRIT
    s, reps, (y, _, finfo) = _timed(
        lambda: mgrit_forward(params, x, backend="cuda", **fopts), repeat)
    U = finfo.solver.U[0]
    t0 = time.perf_counter()
    finfo.problem.vec.to_host(U[1:])
    host_copy = time.perf_counter() - t0
    f_res, f_err = finfo.final_residual, _rel(y, y_s)
    rows.append(dict(base, run="mgrit_forward", seconds=s, repeat=reps,
                     us_per_step=1e6 * s / T, residual=f_res, error_vs_serial=f_err,
                     host_copy_s=host_copy, solver_s=finfo.wall_time,
                     phase_s=dict(finfo.phase_times), **mg))

    def bwd_err(res):
        g, dx, dh0 = res[:3]
        errs = [_rel(g[k], ref_b[0][k]) for k in g]
        return max(errs + [_rel(dx, ref_b[1]), _rel(dh0, ref_b[2])])
    s, reps, bres = _timed(
        lambda: mgrit_backward(params, finfo, dy, backend="cuda", **bopts), repeat)
    rows.append(dict(base, run="mgrit_backward", seconds=s, repeat=reps,
                     us_per_step=1e6 * s / T, residual=bres[3].final_residual,
                     error_vs_serial=bwd_err(bres), solver_s=bres[3].wall_time,
                     phase_s=dict(bres[3].phase_times), **mg))
    with synced_timers():                                    # where the device time goes
        fi_s = mgrit_forward(params, x, backend="cuda", **fopts)[2]
        bi_s = mgrit_backward(params, fi_s, dy, backend="cuda", **bopts)[3]
    rows[-2]["phase_device_s"] = dict(fi_s.phase_times)      # the mgrit_forward row
    rows[-1]["phase_device_s"] = dict(bi_s.phase_times)      # the mgrit_backward row
    finfo = U = bres = fi_s = bi_s = None                    # these solves, freed before the next

    def mgrit_fb():
        fi = mgrit_forward(params, x, backend="cuda", **fopts)[2]
        return mgrit_backward(params, fi, dy, backend="cuda", **bopts), fi
    s, reps, (bres, fi) = _timed(mgrit_fb, repeat)
    rows.append(dict(base, run="mgrit_forward_backward", seconds=s, repeat=reps,
                     us_per_step=1e6 * s / T, residual=fi.final_residual,
                     residual_backward=bres[3].final_residual,
                     error_vs_serial=bwd_err(bres), host_io_s=host_io(x, dy, repeat), **mg))
    bres = fi = None
    # the same with x and dy already on the device and y, dx left there (cuDNN's setting)
    d_x, d_dy = cuda.to_device(x), cuda.to_device(dy)

    def mgrit_fb_device():
        fi = mgrit_forward(params, d_x, backend="cuda", **fopts)[2]
        return mgrit_backward(params, fi, d_dy, backend="cuda", **bopts), fi
    s, reps, (bres, fi) = _timed(mgrit_fb_device, repeat)
    bres = (bres[0], bres[1].copy_to_host()) + tuple(bres[2:])
    rows.append(dict(base, run="mgrit_forward_backward_device", seconds=s, repeat=reps,
                     us_per_step=1e6 * s / T, residual=fi.final_residual,
                     residual_backward=bres[3].final_residual,
                     error_vs_serial=bwd_err(bres), **mg))
    bres = fi = d_x = d_dy = None
    if not accuracy_rows:
        return
    _accurate_row(params, x, dy, cell, fopts, bopts, repeat, base, rows, bwd_err)
    if cell != "classic":                                    # cuDNN's cell: a like-for-like row
        _classic_row(params, x, dy, fopts, bopts, repeat, base, rows)


# budgets tried, cheapest first, for the row whose gradients are within 1e-2 of serial's:
# (forward iterations, backward iterations, backward skip)
ACCURATE_BUDGETS = ((2, 1, True), (2, 1, False), (3, 2, False), (4, 3, False), (6, 5, False),
                    (8, 8, False), (12, 12, False))
ACCURATE_ERROR = 1e-2


def _accurate_row(params, x, dy, cell, fopts, bopts, repeat, base, rows, bwd_err):
    """MGRIT forward+backward at the cheapest budget of `ACCURATE_BUDGETS` whose error
    against serial is below `ACCURATE_ERROR`: what the speed costs when the gradients must be
    right. No row when none reaches it (a line on stderr says so)."""
    T = x.shape[0]
    for iters, bwd_iters, skip in ACCURATE_BUDGETS:
        f, b = dict(fopts, max_iter=iters), dict(bopts, max_iter=bwd_iters, skip=skip)

        def fb():
            fi = mgrit_forward(params, x, backend="cuda", **f)[2]
            return mgrit_backward(params, fi, dy, backend="cuda", **b), fi
        bres, fi = fb()
        err = bwd_err(bres)
        if err < ACCURATE_ERROR:
            s, reps, (bres, fi) = _timed(fb, repeat)
            rows.append(dict(base, run="mgrit_forward_backward_accurate", seconds=s,
                             repeat=reps, us_per_step=1e6 * s / T, residual=fi.final_residual,
                             residual_backward=bres[3].final_residual,
                             error_vs_serial=bwd_err(bres), levels=f["levels"], cf=f["cf"],
                             relax=f["relax"], iters=iters, bwd_iters=bwd_iters,
                             bwd_skip=skip))
            return
    print(f"T={T}: no budget up to {ACCURATE_BUDGETS[-1][:2]} iterations brought MGRIT's "
          f"gradients within {ACCURATE_ERROR} of serial's", file=sys.stderr)


def _classic_row(params, x, dy, fopts, bopts, repeat, base, rows):
    """MGRIT forward+backward with the classic fine cell (nn.GRU's, which cuDNN runs) and
    its error against serial stepping of that cell: the same-cell comparison."""
    T = x.shape[0]
    f = dict(fopts, cell="classic")
    c = gru_forward(params, x, cell="classic")[2]
    ref = gru_backward(params, c, dy)
    c = None

    def fb():
        fi = mgrit_forward(params, x, backend="cuda", **f)[2]
        return mgrit_backward(params, fi, dy, backend="cuda", **bopts), fi
    s, reps, (bres, fi) = _timed(fb, repeat)
    err = max([_rel(bres[0][k], ref[0][k]) for k in ref[0]]
              + [_rel(bres[1], ref[1]), _rel(bres[2], ref[2])])
    rows.append(dict(base, cell="classic", run="mgrit_forward_backward_classic", seconds=s,
                     repeat=reps, us_per_step=1e6 * s / T, residual=fi.final_residual,
                     residual_backward=bres[3].final_residual, error_vs_serial=err,
                     levels=f["levels"], cf=f["cf"], relax=f["relax"], iters=f["max_iter"],
                     bwd_iters=bopts["max_iter"]))


def bench_cuda(seq_lens=(1024, 4096, 16384, 65536), batches=(1, 32), hidden=256,
               input_size=None, layers=1, cell="implicit", dtype="float32", levels=3, cf=4,
               iters=2, bwd_iters=1, relax="FCF", repeat=5, seed=0, torch=True,
               simulate=False, out=None, per_step_max=1024, pairs=None, deadline_s=None,
               accuracy_rows=True):
    """Yield one record per (T, B, run); see the module docstring.

    ``simulate=True`` runs under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, tiny sizes only:
    it checks the logic, its timings mean nothing; ``repeat=0`` runs each row once). Without a
    GPU (and not simulating) it raises ValueError before doing anything. ``out``: write
    {"device", "options", "records"} as JSON. ``pairs``: an explicit order of (T, B) instead of
    seq_lens x batches (the most wanted first); ``deadline_s``: start no new (T, B) after that
    many seconds (a time-limited GPU run keeps what it finished). ``accuracy_rows``: also
    time MGRIT at the cheapest budget whose gradients are within 1e-2 of serial's, and with
    the classic fine cell (cuDNN's) when ``cell`` is another.
    """
    from numba.cuda import config
    if simulate:
        if not config.ENABLE_CUDASIM:
            raise ValueError("simulate=True needs NUMBA_ENABLE_CUDASIM=1 set before numba loads")
    elif not cuda_available():
        raise ValueError("bench --backend cuda needs a CUDA GPU, and none is usable here "
                         "(no driver/device, or NUMBA_ENABLE_CUDASIM=1 is set)")
    dtype = np.dtype(dtype)
    H = int(hidden)
    I = H if input_size is None else int(input_size)
    device = _device_name(simulate)
    fopts = dict(cell=cell, levels=levels, cf=cf, relax=relax, max_iter=iters, tol=0.0)
    bopts = dict(levels=levels, cf=cf, relax=relax, max_iter=bwd_iters, tol=0.0)
    records = []
    if pairs is None:
        pairs = [(T, B) for T in seq_lens for B in batches]
    launch_us = launch_cost(H, I, dtype, reps=5 if simulate else 200)
    print("host cost per launch: " + ", ".join(f"{k} {v:.1f} µs" for k, v in launch_us.items()),
          file=sys.stderr)
    t_start = time.perf_counter()
    for T, B in pairs:
        if deadline_s is not None and time.perf_counter() - t_start > deadline_s:
            print(f"deadline: (T, B) = {(T, B)} and later not run", file=sys.stderr)
            break
        params = init_gru(I, H, layers, seed=seed, dtype=dtype)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((T, B, I)).astype(dtype)
        dy = rng.standard_normal((T, B, H)).astype(dtype)
        base = dict(bench="cuda", device=device, seq_len=T, batch=B, hidden=H, input=I,
                    layers=layers, cell=cell, dtype=dtype.name)
        rows, failed = [], None
        try:
            _numba_rows(params, x, dy, cell, fopts, bopts, repeat, per_step_max, base, rows,
                        accuracy_rows)
        except Exception as e:                               # the GPU's memory, at big (T, B)
            if not _out_of_memory(e):
                raise
            failed = type(e).__name__
        if failed:                                           # (out of the except: its traceback
            _free_device()                                   # held the arrays)
            print(f"(T, B) = {(T, B)}: out of GPU memory after {len(rows)} rows ({failed}); "
                  "the other (T, B) go on", file=sys.stderr)
        _keep(rows, records, out, device, fopts, bwd_iters, launch_us)
        yield from rows
        if torch and not simulate:                           # after the numba rows are kept
            rows = _torch_rows_or_none(T, B, H, I, repeat, seed, base)
            _keep(rows, records, out, device, fopts, bwd_iters, launch_us)
            yield from rows
    print(table(records), file=sys.stderr)


def _keep(rows, records, out, device, fopts, bwd_iters, launch_us):
    """Append ``rows`` to ``records`` and rewrite ``out`` (atomically) with all of them."""
    records.extend(rows)
    if out is not None and rows:
        _write(out, {"device": device, "options": dict(fopts, bwd_iters=bwd_iters),
                     "launch_us": launch_us, "records": records})


def _write(path, obj):
    """Atomic JSON write (a temporary file, then a rename)."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=1)


def table(records):
    """A short text table: milliseconds per run and (T, B), residual and error of MGRIT rows."""
    lines = [f"{'run':<34}{'T':>7}{'B':>4}{'ms':>11}{'µs/step':>10}{'residual':>11}"
             f"{'err vs serial':>15}"]
    for r in records:
        res = r.get("residual")
        err = r.get("error_vs_serial")
        lines.append(f"{r['run']:<34}{r['seq_len']:>7}{r['batch']:>4}{1e3 * r['seconds']:>11.2f}"
                     f"{r['us_per_step']:>10.2f}"
                     f"{'' if res is None else f'{res:.2e}':>11}"
                     f"{'' if err is None else f'{err:.2e}':>15}")
    by = {(r["seq_len"], r["batch"], r["run"]): r["seconds"] for r in records}
    for (T, B, run), sec in by.items():                      # the target's comparisons, per (T, B)
        if run != "mgrit_forward_backward":
            continue
        io = next((r.get("host_io_s") for r in records if r["seq_len"] == T
                   and r["batch"] == B and r["run"] == run), None)
        parts = [f"T={T} B={B}: MGRIT fwd+bwd {1e3 * sec:.1f} ms"
                 + ("" if io is None else f" (the API's host copies alone: {1e3 * io:.1f} ms)")]
        err = next((r.get("error_vs_serial") for r in records if r["seq_len"] == T
                    and r["batch"] == B and r["run"] == run), None)
        if err is not None:
            parts.append(f"(gradients {err:.1e} off serial's)")
        for other, name in (("torch_forward_backward", "cuDNN fwd+bwd"),
                            ("serial_forward_backward", "serial fwd+bwd")):
            if (T, B, other) in by:
                parts.append(f"{name} / MGRIT = {by[(T, B, other)] / sec:.2f}x")
        for row, name in (("mgrit_forward_backward_accurate", "within 1e-2 of serial"),
                          ("mgrit_forward_backward_classic", "classic cell, as cuDNN")):
            r = next((r for r in records if r["seq_len"] == T and r["batch"] == B
                      and r["run"] == row), None)
            if r is not None and (T, B, "torch_forward_backward") in by:
                parts.append(f"{name}: cuDNN / MGRIT = "
                             f"{by[(T, B, 'torch_forward_backward')] / r['seconds']:.2f}x "
                             f"(error {r['error_vs_serial']:.1e})")
        dev = by.get((T, B, "mgrit_forward_backward_device"))
        if dev is not None:
            parts.append(f"on-device I/O: {1e3 * dev:.1f} ms"
                         + (f", cuDNN / MGRIT = {by[(T, B, 'torch_forward_backward')] / dev:.2f}x"
                            if (T, B, "torch_forward_backward") in by else ""))
        lines.append("  ".join(parts))
    for r in records:                                        # device ms per phase (synced solves)
        if r["run"] in ("mgrit_forward", "mgrit_backward") and r.get("phase_device_s"):
            split = ", ".join(f"{k} {1e3 * v:.1f}" for k, v in r["phase_device_s"].items())
            lines.append(f"T={r['seq_len']} B={r['batch']} {r['run'][6:]}: device ms by phase: "
                         f"{split}")
    return "\n".join(lines)
