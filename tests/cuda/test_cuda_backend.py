"""The host side of the CUDA backend (`mgrit_gru.cuda.backend`): device inputs checked by
name, the solve scope (device frees deferred, out of memory named), the scan barrier, what is
refused without a GPU or with several ranks; and the code docs/cuda.md shows.

Runs under numba's CUDA simulator on CPU (tests/conftest.py) with `strict_device_arrays`
(tests/conftest.py): device arrays as strict as real ones, every allocation NaN-poisoned. Tests
marked `real_gpu` need a GPU.
"""
import os
import textwrap

import numpy as np
import pytest
from _cuda_helpers import real_gpu
from _cuda_solve_helpers import SIM, H, I, close, data
from _nosim import run_without_simulator

from mgrit_gru import init_gru
from mgrit_gru.cuda import CudaGRU, cuda_available
from mgrit_gru.solve import mgrit_backward, mgrit_forward

pytestmark = pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py


# ----------------------------------------------------------------------------------------------
# availability, sizes and device inputs
# ----------------------------------------------------------------------------------------------
def test_cuda_available_is_false_under_the_simulator():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        assert cuda_available() is False


def test_hidden_size_limit():
    with pytest.raises(ValueError, match="hidden_size"):
        CudaGRU(init_gru(2, 1025, 1, dtype=np.float32))


def test_device_inputs_are_checked():
    """Wrong dtype, shape or backend of a device input: ValueError naming it."""
    from numba import cuda
    p, x, h0, dy, _ = data(np.float64, 8, 1)
    o = dict(levels=2, cf=2, max_iter=1)
    with pytest.raises(ValueError, match="x is a GPU array: use backend='cuda'"):
        mgrit_forward(p, cuda.to_device(x), **o)
    with pytest.raises(ValueError, match="x is a float32 device array but the parameters are "
                                         "float64"):
        mgrit_forward(p, cuda.to_device(x.astype(np.float32)), backend="cuda", **o)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, \*, 3\)"):
        mgrit_forward(p, cuda.to_device(x[:, :, :2].copy()), backend="cuda", **o)
    with pytest.raises(ValueError, match="x must be a 3-d device array"):
        mgrit_forward(p, cuda.to_device(x[0]), backend="cuda", **o)
    fi = mgrit_forward(p, cuda.to_device(x), backend="cuda", **o)[2]
    with pytest.raises(ValueError, match=r"dy must have shape \(8, 2, 4\)"):
        mgrit_backward(p, fi, cuda.to_device(dy[:7].copy()), backend="cuda", **o)
    with pytest.raises(ValueError, match="x on the device must be C-contiguous"):
        mgrit_forward(p, cuda.to_device(np.concatenate([x, x], axis=2))[:, :, ::2],
                      backend="cuda", **o)
    with pytest.raises(ValueError, match="dy on the device must be C-contiguous"):
        wide = cuda.to_device(np.concatenate([dy, dy], axis=2))
        mgrit_backward(p, fi, wide[:, :, ::2], backend="cuda", **o)
    if SIM:                                                  # a foreign x[::-1] (CuPy): numba
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray   # mis-slices these
        with pytest.raises(ValueError, match="x on the device has a negative stride"):
            mgrit_forward(p, FakeCUDAArray(x[::-1]), backend="cuda", **o)
    for bt in (0, 2.5, True, 4096):                          # 4 bt H itemsize over 48 KiB at 4096
        with pytest.raises(ValueError, match="bt must be an int >= 1"):
            CudaGRU(p, "implicit", bt=bt)
    gru = CudaGRU(p, "implicit")                             # uploads pass device arrays through
    d = cuda.to_device(x)
    assert gru.to_device(d) is d
    with pytest.raises(ValueError, match="a float32 device array where float64 is needed"):
        gru.to_device(cuda.to_device(x.astype(np.float32)))


def test_the_scan_barrier_counter_is_zeroed_on_the_device_not_uploaded(monkeypatch):
    """On a GPU each persistent scan gets its barrier counter zeroed by a device memset of one
    counter kept per CudaGRU: no host-to-device copy (from pageable memory that waits for every
    queued kernel). The GPU side is checked by the real-GPU scans run three times in a row."""
    from numba import cuda
    from numba.cuda import config
    from numba.cuda.cudadrv import driver
    gru = CudaGRU(init_gru(I, H, 1), "classic")
    memsets, uploads = [], []
    monkeypatch.setattr(config, "ENABLE_CUDASIM", False)     # take the GPU branch
    monkeypatch.setattr(cuda, "device_array", lambda shape, dtype: np.full(shape, 5, dtype))
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: uploads.append(a))
    monkeypatch.setattr(driver, "device_memset",
                        lambda dst, val, size: (memsets.append(size), dst.fill(val)))
    first, second = gru._barrier(), gru._barrier()
    assert first is second and first.dtype == np.int64 and first.tolist() == [0]
    assert memsets == [8, 8] and uploads == []


def test_backend_mismatch_and_ranks_are_refused():
    p, x, h0, dy, _ = data(np.float64, 4, 1)
    _, _, fi = mgrit_forward(p, x, levels=1)
    with pytest.raises(ValueError, match="backend='cuda' but fwd was solved with backend='numpy'"):
        mgrit_backward(p, fi, dy, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        mgrit_forward(p, x, backend="tpu")
    from mgrit_gru.solve import get_backend
    with pytest.raises(NotImplementedError, match="one rank"):
        get_backend("cuda").problems(comm_size=2)


NO_GPU_SCRIPT = textwrap.dedent("""
    import numpy as np
    import mgrit_gru as mg
    from mgrit_gru.cuda import cuda_available
    p = mg.init_gru(3, 4, 1)
    x = np.zeros((8, 1, 3))
    for run in (lambda: mg.mgrit_forward(p, x, backend="cuda", levels=2, cf=2),
                lambda: mg.gru_forward(p, x, backend="cuda")):
        try:
            run()
            print("RAN")
        except ValueError as e:
            print("ValueError:", e)
    print("GPU" if cuda_available() else "NOGPU")
""")


def test_backend_cuda_without_a_gpu_says_so():
    """Outside the simulator and without a GPU, backend='cuda' is a ValueError that says how to
    use the simulator, not a driver traceback (with a GPU: it runs)."""
    out = run_without_simulator(NO_GPU_SCRIPT).stdout
    if "NOGPU" in out:
        assert out.count("ValueError: backend='cuda' needs a CUDA GPU") == 2, out
        assert "NUMBA_ENABLE_CUDASIM=1" in out
    else:
        assert out.count("RAN") == 2, out


# ----------------------------------------------------------------------------------------------
# the solve scope: device frees deferred, out of memory named
# ----------------------------------------------------------------------------------------------
def test_cuda_solves_defer_device_frees(monkeypatch):
    """Both MGRIT solves of the cuda backend run inside numba's defer_cleanup (a device free
    mid-solve would synchronise and stall the launches), the numpy backend's do not."""
    import contextlib

    from numba import cuda
    depth = []

    @contextlib.contextmanager
    def recording():
        depth.append("in")
        yield

    monkeypatch.setattr(cuda, "defer_cleanup", recording)
    p, x, h0, dy, _ = data(np.float64, 8, 1)
    fi = mgrit_forward(p, x, h0, levels=2, cf=2, max_iter=1)[2]
    mgrit_backward(p, fi, dy, levels=2, cf=2, max_iter=1)
    assert depth == []
    fi = mgrit_forward(p, x, h0, levels=2, cf=2, max_iter=1, backend="cuda")[2]
    mgrit_backward(p, fi, dy, levels=2, cf=2, max_iter=1, backend="cuda")
    assert depth == ["in", "in"]


class _Pending:
    """Stands in for numba's queue of pending frees: counts flushes."""

    def __init__(self):
        self.cleared = 0

    def clear(self):
        self.cleared += 1


@pytest.mark.parametrize("code, becomes", [
    (2, MemoryError),                                        # numba's ctypes binding: an int
    (type("CUresult", (), {"value": 2, "name": "CUDA_ERROR_OUT_OF_MEMORY"})(), MemoryError),
    (700, "CudaAPIError"),                                   # an illegal address stays itself
])
def test_solve_scope_flushes_queued_frees_first_and_names_out_of_memory(monkeypatch, code,
                                                                        becomes):
    """Arrays released before a solve are freed on entry (not held through it), and an
    out-of-memory error inside it (numba cannot free and retry under defer_cleanup) is a
    MemoryError saying what to make smaller."""
    from numba import cuda
    from numba.cuda.cudadrv.driver import CudaAPIError

    from mgrit_gru.cuda.backend import solve_scope
    ctx = type("Ctx", (), {})()
    ctx.deallocations, ctx.memory_manager = _Pending(), type("MM", (), {})()
    ctx.memory_manager.deallocations = _Pending()
    ctx.get_memory_info = lambda: (0.5 * 2**30, 80 * 2**30)
    monkeypatch.setattr(cuda, "current_context", lambda: ctx)
    seen = []
    error = CudaAPIError(2, "out of memory")
    error.code = code
    with pytest.raises(Exception) as exc:
        with solve_scope():
            seen.append((ctx.deallocations.cleared, ctx.memory_manager.deallocations.cleared))
            raise error
    assert seen == [(1, 1)]                                  # both queues flushed before the body
    if becomes is MemoryError:
        assert type(exc.value) is MemoryError and exc.value.__cause__ is error
        assert "0.50 of 80.00 GiB free" in str(exc.value) and "smaller batch" in str(exc.value)
    else:
        assert exc.value is error


@real_gpu
def test_real_gpu_solve_scope_frees_what_was_released_before_it():
    from numba import cuda

    from mgrit_gru.cuda.backend import flush_pending_frees, solve_scope
    pending = cuda.current_context().memory_manager.deallocations
    flush_pending_frees()                                    # an empty queue to start from
    for _ in range(3):                                       # fewer than numba's batch of 10
        cuda.device_array(1 << 20, dtype=np.float32)         # released at once: queued
    assert len(pending) >= 3
    with solve_scope():
        assert len(pending) == 0
        cuda.device_array(1 << 20, dtype=np.float32)         # released inside: kept queued
        assert len(pending) == 1


# ----------------------------------------------------------------------------------------------
# docs/cuda.md
# ----------------------------------------------------------------------------------------------
def test_docs_cuda_page_code_runs():
    """The Python blocks of docs/cuda.md run as shown (here under the simulator), in order,
    in one namespace (the second block uses the first one's data)."""
    import re
    from pathlib import Path
    page = Path(__file__).resolve().parents[2] / "docs" / "cuda.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) >= 2
    ns = {"__name__": "__snippet__"}
    for code in blocks:
        exec(compile(code, "docs/cuda.md:python", "exec"), ns)
    assert ns["d_dx"].shape == ns["x"].shape and ns["dh0"].shape == (1, 2, 8)
    # and the numbers are the NumPy backend's (float32: 1e-5 relative)
    p, x, dy = ns["params"], ns["x"], ns["dy"]
    y_n, _, fi_n = mgrit_forward(p, x, cell="implicit", max_iter=2, tol=0)
    g_n, dx_n, dh0_n, _ = mgrit_backward(p, fi_n, dy, max_iter=1, tol=0)
    close(ns["d_y"].copy_to_host(), y_n, np.float32, "y")
    close(ns["d_dx"].copy_to_host(), dx_n, np.float32, "dx")
    close(ns["dh0"], dh0_n, np.float32, "dh0")
    for k in g_n:
        close(ns["grads"][k], g_n[k], np.float32, k)
