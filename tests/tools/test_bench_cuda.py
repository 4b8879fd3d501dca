"""The GPU benchmark (`mgrit_gru.tools.bench_cuda`): it refuses to run without a GPU; its logic
on tiny sizes under the simulator, with a stand-in for torch where the cuDNN rows are built.

Runs with `strict_device_arrays` (tests/conftest.py), as the tests of the backend's solves.
"""
import os

import numpy as np
import pytest

from mgrit_gru.cuda import cuda_available

pytestmark = pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py


def test_bench_cuda_refuses_without_gpu(capsys):
    from mgrit_gru.tools.cli import main
    if cuda_available():
        pytest.skip("a GPU is present")
    assert main(["bench", "--what", "cuda", "--seq-len", "8"]) == 2
    assert "GPU" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# the cuDNN baseline, with a stand-in for torch
# ----------------------------------------------------------------------------------------------
def _stub_torch(built):
    """A stand-in for torch that records what the cuDNN rows build and call: no GPU here.
    Tensors are NumPy arrays; the GRU returns (y, h) with h numbered by call, so a test can see
    which state each chunk started from."""
    import types

    class GRU:
        def __init__(self, *args, **kw):
            built.append(("GRU", args, kw))

        def cuda(self):
            return self

        def to(self, dtype):
            built.append(("to", dtype))
            return self

        def zero_grad(self, **kw):
            pass

        def __call__(self, x, h=None):
            built.append(("call", x.shape[0], h))
            return np.zeros(x.shape[:2] + (8,)), len([b for b in built if b[0] == "call"])

    class NoGrad:
        def __enter__(self):
            pass

        def __exit__(self, *a):
            pass

    return types.SimpleNamespace(
        nn=types.SimpleNamespace(GRU=GRU), float32="f32", float64="f64", no_grad=NoGrad,
        cuda=types.SimpleNamespace(is_available=lambda: True, synchronize=lambda: None,
                                   empty_cache=lambda: built.append(("empty_cache",))),
        autograd=types.SimpleNamespace(backward=lambda ys, dys: built.append(
            ("backward", [y.shape[0] for y in ys], [d.shape[0] for d in dys]))),
        manual_seed=lambda s: None, __version__="stub",
        randn=lambda *shape, **kw: (built.append(("randn", shape, kw["dtype"])),
                                    np.zeros(shape))[1],
        backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(enabled=True)))


def test_cudnn_rows_build_the_gru_the_row_says(monkeypatch):
    """The cuDNN baseline has the rows' layers and dtype (it was always one float32 layer),
    and its rows say the classic cell (cuDNN's only one)."""
    import sys

    from mgrit_gru.tools.bench_cuda import _torch_rows
    built = []
    monkeypatch.setitem(sys.modules, "torch", _stub_torch(built))
    base = dict(bench="cuda", layers=3, dtype="float64", hidden=8, input=4, cell="implicit")
    rows = _torch_rows(16, 2, 8, 4, 1, 0, base)
    assert built[:4] == [("GRU", (4, 8), {"num_layers": 3}), ("to", "f64"),
                         ("randn", (16, 2, 4), "f64"), ("randn", (16, 2, 8), "f64")]
    assert [r["run"] for r in rows] == ["torch_forward", "torch_forward_backward"]
    assert all((r["layers"], r["dtype"], r["cell"], r["chunks"]) == (3, "float64", "classic", 1)
               for r in rows)


def test_cudnn_runs_a_long_sequence_as_chunks_carrying_the_state(monkeypatch):
    """cuDNN refuses T = 65536 (CUDNN_STATUS_NOT_SUPPORTED on the H200): a sequence longer than
    TORCH_CHUNK runs as chunks of at most that many steps, each starting from the state the
    last one returned, and the backward gets each chunk's dy; torch's cache is emptied after."""
    import sys

    from mgrit_gru.cuda import bench
    built = []
    monkeypatch.setitem(sys.modules, "torch", _stub_torch(built))
    monkeypatch.setattr(bench, "TORCH_CHUNK", 6)
    rows = bench._torch_rows_or_none(16, 2, 8, 4, 0, 0, dict(dtype="float32", layers=1))
    assert [r["chunks"] for r in rows] == [3, 3]
    calls = [b for b in built if b[0] == "call"]
    assert [c[1] for c in calls] == [6, 6, 4] * 2               # forward, then forward+backward
    assert [c[2] for c in calls] == [None, 1, 2, None, 4, 5]    # h: None, then the last chunk's
    assert ("backward", [6, 6, 4], [6, 6, 4]) in built
    assert built[-1] == ("empty_cache",)


def test_a_failing_cudnn_baseline_costs_only_its_own_rows(monkeypatch, capsys):
    """torch failing (out of memory, a cuDNN or driver error) gives no torch rows and a line
    on stderr, not an exception that would lose the (T, B)'s MGRIT rows."""
    import sys
    import types

    from mgrit_gru.tools.bench_cuda import _torch_rows_or_none

    def oom(*a, **kw):
        raise RuntimeError("CUDA out of memory")
    emptied = []
    torch = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, empty_cache=lambda: emptied.append(1)), manual_seed=oom)
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert _torch_rows_or_none(16, 2, 8, 4, 1, 0, dict(dtype="float32", layers=1)) == []
    assert "(T, B) = (16, 2) failed: RuntimeError: CUDA out of memory" in capsys.readouterr().err
    assert emptied == [1]                                    # what it had cached goes back


# ----------------------------------------------------------------------------------------------
# the benchmark's logic under the simulator
# ----------------------------------------------------------------------------------------------
def test_bench_cuda_logic_under_the_simulator(tmp_path):
    import json

    from numba.cuda import config

    from mgrit_gru.tools.bench import bench_cuda
    from mgrit_gru.tools.bench_cuda import table
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    out = tmp_path / "r.json"
    recs = list(bench_cuda(seq_lens=(4,), batches=(1,), hidden=4, input_size=3, repeat=0,
                           levels=2, cf=2, simulate=True, torch=False, out=str(out),
                           accuracy_rows=False))
    kinds = {r["run"] for r in recs}
    assert {"serial_forward", "serial_forward_backward", "mgrit_forward", "mgrit_backward",
            "mgrit_forward_backward", "serial_forward_per_step",
            "serial_forward_backward_per_step", "mgrit_forward_backward_device"} <= kinds
    by = {r["run"]: r for r in recs}                         # device I/O: the same numbers
    assert by["mgrit_forward_backward_device"]["error_vs_serial"] == \
        by["mgrit_forward_backward"]["error_vs_serial"]
    for r in recs:
        assert r["seconds"] > 0 and r["seq_len"] == 4 and r["hidden"] == 4
        if r["run"].startswith("mgrit"):
            assert np.isfinite(r["residual"]) and np.isfinite(r["error_vs_serial"])
        if r["run"] in ("mgrit_forward", "mgrit_backward"):
            assert 0 < r["solver_s"] <= r["seconds"] and r["phase_s"]
            assert set(r["phase_device_s"]) == set(r["phase_s"])       # a synced solve's split
            assert all(v > 0 for v in r["phase_device_s"].values())
        if r["run"] == "mgrit_forward_backward":
            assert r["host_io_s"] > 0
        if r["run"].endswith("per_step"):                    # the same numbers as the scan
            assert r["error_vs_serial"] < 1e-5
    assert "host copies alone" in table(recs) and "on-device I/O" in table(recs)
    assert "forward: device ms by phase: " in table(recs)
    assert "MGRIT_GRU_SYNC_TIMERS" not in os.environ                # restored after the bench
    saved = json.loads(out.read_text())
    assert saved["records"] == recs
    assert set(saved["launch_us"]) == {"axpby", "gru_step"}
    assert all(v > 0 for v in saved["launch_us"].values())


def test_the_accuracy_rows_say_what_the_speed_costs():
    """Beside the paper's budget the benchmark times the cheapest budget whose gradients are
    within 1e-2 of serial stepping's, and MGRIT with cuDNN's classic cell, whose error is the
    one the NumPy solves give at that budget (recomputed here)."""
    from numba.cuda import config

    from mgrit_gru import gru as ref
    from mgrit_gru import mgrit_backward, mgrit_forward
    from mgrit_gru.tools.bench_cuda import ACCURATE_ERROR, _accurate_row, _classic_row
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    rng = np.random.default_rng(0)
    params = ref.init_gru(3, 4, seed=0)
    x, dy = rng.standard_normal((6, 1, 3)), rng.standard_normal((6, 1, 4))
    fopts = dict(cell="implicit", levels=2, cf=2, relax="F", max_iter=1, tol=0.0)
    bopts = dict(levels=2, cf=2, relax="F", max_iter=1, tol=0.0)
    g_ref = ref.gru_backward(params, ref.gru_forward(params, x, cell="implicit")[2], dy)[0]

    def bwd_err(res):
        return max(float(np.linalg.norm(res[0][k] - g_ref[k]) / np.linalg.norm(g_ref[k]))
                   for k in g_ref)
    rows = []
    _accurate_row(params, x, dy, "implicit", fopts, bopts, 0, {"seq_len": 6}, rows, bwd_err)
    _classic_row(params, x, dy, fopts, bopts, 0, {"seq_len": 6}, rows)
    accurate, classic = rows
    assert accurate["run"] == "mgrit_forward_backward_accurate"
    assert accurate["error_vs_serial"] < ACCURATE_ERROR
    assert classic["cell"] == "classic" and classic["run"] == "mgrit_forward_backward_classic"
    cache = ref.gru_forward(params, x, cell="classic")[2]
    want = ref.gru_backward(params, cache, dy)
    got = mgrit_backward(params, mgrit_forward(params, x, **dict(fopts, cell="classic"))[2], dy,
                         **bopts)
    rel = lambda a, b: np.max(np.abs(a - b)) / np.max(np.abs(b))   # the table's max-norm
    err = max([rel(got[0][k], want[0][k]) for k in want[0]]
              + [rel(got[i], want[i]) for i in (1, 2)])
    assert err > 1e-6                                        # one F-cycle: inexact, and ...
    assert classic["error_vs_serial"] == pytest.approx(err, rel=1e-6)   # ... reported so


def test_a_pair_out_of_gpu_memory_costs_only_its_own_rows(monkeypatch, capsys):
    """A (T, B) that runs out of device memory (T = 65536, B = 32 on a smaller card) keeps the
    rows measured before it and the next (T, B) still runs; any other error is raised."""
    from numba.cuda import config

    from mgrit_gru.cuda import bench
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    real = bench.mgrit_forward

    def forward(params, x, *a, **kw):
        if x.shape[0] == 4:
            raise MemoryError("the GPU ran out of memory during the MGRIT solve")
        return real(params, x, *a, **kw)
    monkeypatch.setattr(bench, "mgrit_forward", forward)
    o = dict(batches=(1,), hidden=4, input_size=3, repeat=0, levels=2, cf=2, simulate=True,
             torch=False, accuracy_rows=False)
    recs = list(bench.bench_cuda(seq_lens=(4, 8), **o))
    runs = {T: [r["run"] for r in recs if r["seq_len"] == T] for T in (4, 8)}
    assert runs[4] == ["serial_forward", "serial_forward_backward", "serial_forward_per_step",
                       "serial_forward_backward_per_step"]
    assert "mgrit_forward_backward_device" in runs[8]
    assert "(T, B) = (4, 1): out of GPU memory after 4 rows" in capsys.readouterr().err

    def broken(*a, **kw):
        raise ValueError("a bug, not the card")
    monkeypatch.setattr(bench, "mgrit_forward", broken)
    with pytest.raises(ValueError, match="a bug"):
        list(bench.bench_cuda(seq_lens=(4,), **o))


def test_the_bench_knows_out_of_memory_from_other_errors():
    from numba.cuda.cudadrv.driver import CudaAPIError

    from mgrit_gru.tools.bench_cuda import _out_of_memory

    def api_error(code):                                     # the driver's error carries .code;
        e = CudaAPIError(code, "m")                          # the simulator's class keeps none
        e.code = code
        return e
    assert _out_of_memory(MemoryError("solve_scope's")) and _out_of_memory(api_error(2))
    assert not _out_of_memory(api_error(700))
    assert not _out_of_memory(ValueError("x"))


def test_scan_blocks_sweep_logic_under_the_simulator():
    """The grid-size sweep of the persistent scan: one record per grid that fits (one block
    under the simulator), its states equal to NumPy stepping and to the default grid's."""
    from numba.cuda import config

    from mgrit_gru.tools.bench_cuda import scan_blocks_sweep
    if not config.ENABLE_CUDASIM:
        pytest.skip("a real GPU run: the simulator is off")
    recs = scan_blocks_sweep(T=5, B=2, hidden=4, dtype="float64", blocks=(1, 2, 4), repeat=0)
    assert [r["blocks"] for r in recs] == [1] and recs[0]["default"]
    assert recs[0]["us_per_step"] > 0 and recs[0]["max_diff"] == 0.0
    assert recs[0]["error_vs_numpy"] < 1e-12
