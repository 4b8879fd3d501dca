"""bench --what forward (in-process and under mpiexec) and plot-scaling, at tiny sizes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mgrit_gru.cli import main

KEYS = {"bench", "ranks", "seq_len", "batch", "hidden", "serial_s", "serial_us_per_step",
        "mgrit_s", "mgrit_per_iter_s", "phase_s", "phase_per_iter_s", "comm_s", "speedup",
        "efficiency", "frelax_us_per_fine_step", "frelax_vs_serial_step", "per_rank",
        "model_mgrit_s", "model_speedup", "step_cost_a_s", "step_cost_b_s", "cycles"}
TINY = ["bench", "--what", "forward", "--seq-len", "64", "--hidden", "8", "--batch", "2",
        "--repeat", "1", "--levels", "2", "--cf", "4", "--iters", "2"]


def test_forward_bench_prints_json_with_the_expected_keys(capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(TINY + ["--relax", "F", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert KEYS <= set(rec)
    assert (rec["bench"], rec["ranks"], rec["seq_len"], rec["batch"], rec["hidden"]) == \
        ("forward", 1, 64, 2, 8)
    assert {"relax", "residual", "restrict", "coarsest", "correct"} <= set(rec["phase_s"])
    assert rec["cycles"] == 2 and rec["mgrit_s"] > 0 and rec["serial_s"] > 0
    assert rec["speedup"] == pytest.approx(rec["serial_s"] / rec["mgrit_s"])
    assert rec["per_rank"][0]["rank"] == 0
    assert json.loads(out.read_text()) == [rec]


def test_forward_bench_defaults_sweep_h_and_b(capsys):
    assert main(["bench", "--what", "forward", "--seq-len", "32", "--repeat", "1",
                 "--levels", "2", "--no-model"]) == 0
    recs = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert sorted((r["hidden"], r["batch"]) for r in recs) == [(64, 1), (64, 32), (256, 1),
                                                                (256, 32)]
    assert all("model_speedup" not in r for r in recs)


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


@pytest.mark.skipif(_mpiexec() is None, reason="needs mpiexec")
def test_forward_bench_under_mpiexec_and_plot_scaling(tmp_path):
    pytest.importorskip("mpi4py")
    script = Path(sys.executable).parent / "mgrit-gru"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "mgrit_gru.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    files = []
    for P in (1, 2):
        f = tmp_path / f"results_P{P}.json"
        proc = subprocess.run([_mpiexec(), "-n", str(P)] + cli + TINY + ["--out", str(f)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1                                   # rank 0 alone prints
        rec = json.loads(lines[0])
        assert rec["ranks"] == P and len(rec["per_rank"]) == P
        assert [r["rank"] for r in rec["per_rank"]] == list(range(P))
        assert all({"wall_s", "phase_s", "comm_s", "cycle_s"} <= set(r) for r in rec["per_rank"])
        if P == 2:
            assert rec["per_rank"][1]["comm_s"] > 0 and rec["latency_s"] > 0
        files.append(str(f))
    png = tmp_path / "scaling.png"
    assert main(["plot-scaling", *files, "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_scaling_rejects_files_without_forward_records(tmp_path, capsys):
    f = tmp_path / "gru.json"
    f.write_text(json.dumps({"bench": "gru"}) + "\n")
    assert main(["plot-scaling", str(f), "--out", str(tmp_path / "x.png")]) == 2
    assert "no 'bench --what forward' records" in capsys.readouterr().err
