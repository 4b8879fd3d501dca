"""The patch to numba's CUDA simulator (`mgrit_gru.cuda.simulator`): static shared arrays."""
import os

import numpy as np
import pytest


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="simulator only")
def test_simulated_threads_of_a_block_get_one_shared_array(monkeypatch):
    """numba's simulator creates a static ``cuda.shared.array`` on first use without a lock;
    threads of a block arriving together (here: released at once, array creation slowed to
    10 ms) must still all get the same array, or a reduction reads what nobody wrote."""
    import threading
    import time

    from numba.cuda.simulator import kernelapi
    shared = kernelapi.FakeCUDAShared(0)                     # one block's shared memory
    empty = np.empty

    def slow_empty(*args, **kw):
        time.sleep(0.01)
        return empty(*args, **kw)

    monkeypatch.setattr(np, "empty", slow_empty)
    start, got = threading.Barrier(8), []

    def thread():
        start.wait()
        got.append(shared.array((4,), np.float64))          # one line: one array per block
    threads = [threading.Thread(target=thread) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(a is got[0] for a in got)
    other = shared.array((2,), np.float64)                   # another line: another array
    assert other is not got[0] and other.shape == (2,)
