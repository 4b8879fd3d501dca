"""docs/benchmarks/run_gpu_check.sh calls the package as it is now.

The script only runs on a lent GPU, a few minutes at a time: a renamed argument or a moved
function in one of its Python blocks would cost a whole session. Here each block runs with the
heavy calls replaced by checks that the call binds to the real function's signature (the
production sizes are not run; the kernels and the benchmark logic have their own tests).
"""
import inspect
import re
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "run_gpu_check.sh"


def python_blocks():
    """The ``python3 - ... <<'PY'`` here-documents of the script, in order."""
    return re.findall(r"<<'PY'\n(.*?)\nPY\n", SCRIPT.read_text(), flags=re.S)


def test_the_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_the_script_leaves_at_most_eight_files_under_out():
    """The device tool brings back 8 files from $OUT, no more: on 2026-11-27 the ninth and
    tenth (the small tests' log, the grid-size sweep) were left on the machine."""
    names = set(re.findall(r'(?:"\$OUT/|\["OUT"\] \+ "/)([^"]+)"', SCRIPT.read_text()))
    assert "bench_cuda.json" in names                        # (written from Python)
    assert 0 < len(names) <= 8, sorted(names)


def test_the_script_has_its_three_python_blocks():
    blocks = python_blocks()
    assert len(blocks) == 3
    assert "bench_cuda" in blocks[0] and "cProfile" in blocks[1]
    assert "scan_blocks_sweep" in blocks[2]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_python_block_calls_bind_to_the_api(index, monkeypatch, tmp_path):
    import mgrit_gru.tools.bench_cuda as cb
    import mgrit_gru.solve as solve
    calls = []

    def checked(fn, result):
        sig = inspect.signature(fn)

        def stand_in(*args, **kwargs):
            sig.bind(*args, **kwargs)                        # TypeError on a stale argument
            calls.append(fn.__name__)
            return result
        return stand_in

    monkeypatch.setattr(cb, "bench_cuda", checked(cb.bench_cuda, [{"run": "x"}]))
    monkeypatch.setattr(cb, "scan_blocks_sweep", checked(cb.scan_blocks_sweep, [{"blocks": 1}]))
    monkeypatch.setattr(solve, "mgrit_forward", checked(solve.mgrit_forward, (None,) * 3))
    monkeypatch.setattr(solve, "mgrit_backward", checked(solve.mgrit_backward, (None,) * 4))
    monkeypatch.setenv("OUT", str(tmp_path))
    exec(compile(python_blocks()[index], f"run_gpu_check.sh block {index}", "exec"), {})
    want = [["bench_cuda"], ["mgrit_forward", "mgrit_backward"] * 2,
            ["scan_blocks_sweep"] * 2][index]
    assert calls == want
