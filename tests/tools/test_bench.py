"""The benchmarks (`mgrit_gru.tools.bench`): bench --what forward (in-process and under
mpiexec), train-step and epoch, and plot-scaling, at tiny sizes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mgrit_gru.tools.bench import _x_rows
from mgrit_gru.tools.cli import main

KEYS = {"bench", "ranks", "seq_len", "batch", "hidden", "serial_s", "serial_us_per_step",
        "mgrit_s", "mgrit_per_iter_s", "phase_s", "phase_per_iter_s", "comm_s", "speedup",
        "efficiency", "frelax_us_per_fine_step", "frelax_vs_serial_step", "per_rank",
        "model_mgrit_s", "model_speedup", "step_cost_a_s", "step_cost_b_s", "cycles", "dt",
        "latency_s", "latency_measured"}
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
    assert rec["dt"] == 1.0 and rec["latency_measured"] is False   # one rank: assumed
    assert json.loads(out.read_text()) == [rec]


def test_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two(monkeypatch):
    """repeat = 2 used to report the slower run as the 'median' (the serial baseline had a true
    median); the train-step median keeps forward + backward = total."""
    import time

    import mgrit_gru.solve as solve
    from mgrit_gru.tools.bench import _median_run, bench_forward
    runs = [(3.0, 1.0, 2.0, "c"), (1.0, 0.5, 0.5, "a"), (2.0, 1.0, 1.0, "b"), (9.0, 4, 5, "d")]
    assert _median_run(runs) == (2.5, 1.0, 1.5, "b")
    assert _median_run(runs[:3]) == (2.0, 1.0, 1.0, "b")
    # warm-up, 2 timed runs, then the untimed solve that measures the error against serial
    delays, forward = iter([0.0, 0.0, 0.3, 0.0]), solve.mgrit_forward

    def slowed(*args, **kw):
        time.sleep(next(delays))
        return forward(*args, **kw)
    monkeypatch.setattr(solve, "mgrit_forward", slowed)
    (rec,) = bench_forward(hidden=4, batch=1, seq_len=16, levels=2, cf=4, repeat=2, model=False)
    assert 0.1 < rec["mgrit_s"] < 0.25, rec["mgrit_s"]         # ~0.15, not the 0.3 s run


def test_forward_bench_model_with_a_cf_per_level():
    from mgrit_gru.tools.bench import bench_forward
    (rec,) = bench_forward(hidden=4, batch=1, seq_len=64, levels=3, cf=[4, 2], repeat=1)
    assert rec["cf"] == [4, 2] and rec["model_mgrit_s"] > 0


def test_x_rows_is_a_slice_of_the_whole():
    """_x_rows(seed, a, b, ...) is rows a..b-1 of the whole sequence, across chunk borders too:
    each rank makes only its own rows of x, the same as one process would."""
    whole = _x_rows(3, 0, 11, 2, 1, np.float64, chunk=4)
    for a, b in ((3, 9), (5, 6), (8, 11)):
        np.testing.assert_array_equal(_x_rows(3, a, b, 2, 1, np.float64, chunk=4), whole[a:b])


TRAIN_STEP_KEYS = {"bench", "method", "ranks", "seq_len", "batch", "hidden", "dtype",
                   "forward_s", "backward_s", "train_step_s", "speedup_vs_bptt", "grad_error"}


def test_bench_train_step_prints_json_lines(capsys):
    assert main(["bench", "--what", "train-step", "--hidden", "6", "--batch", "2",
                 "--seq-len", "48", "--repeat", "1", "--iters", "2", "--bwd-iters", "1"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["method"] for r in recs] == ["bptt", "mgrit", "mgrit-no-bwd-skip", "mgrit-converged"]
    for r in recs:
        assert TRAIN_STEP_KEYS <= set(r), TRAIN_STEP_KEYS - set(r)
        assert r["bench"] == "train-step" and r["ranks"] == 1 and r["dtype"] == "float32"
        assert r["seq_len"] == 48 and r["hidden"] == 6 and r["batch"] == 2
        assert r["train_step_s"] > 0 and r["forward_s"] > 0 and r["backward_s"] > 0
        # the three times are one run's (the median run's), not medians taken apart
        assert r["forward_s"] + r["backward_s"] == pytest.approx(r["train_step_s"], rel=1e-9)
    paper, noskip, conv = recs[1], recs[2], recs[3]
    assert (paper["fwd_iters"], paper["bwd_iters"]) == (2, 1) == \
        (noskip["fwd_iters"], noskip["bwd_iters"])
    assert (paper["bwd_skip"], noskip["bwd_skip"], noskip["skip"]) == (True, False, True)
    assert not paper["bwd_converged"] and conv["fwd_converged"] and conv["bwd_converged"]
    assert conv["grad_error"] < 1e-3 < paper["grad_error"] < 1
    assert noskip["grad_error"] < paper["grad_error"]          # the fine adjoint sweep pays


def test_epoch_bench_times_epochs_after_a_warm_up(monkeypatch):
    import mgrit_gru.training as tr
    from mgrit_gru.tools.bench import bench_epoch
    monkeypatch.setattr(tr, "DEMO", {**tr.DEMO, "num_sequences": 80})
    recs = list(bench_epoch(seq_len=16, hidden=4, repeat=2))
    assert [r["solver"] for r in recs] == ["serial", "mgrit"]
    for r in recs:
        assert r["epochs"] == 2 and len(r["epoch_times"]) == 2 and r["warmup_epoch_s"] > 0
        assert r["epoch_s"] == pytest.approx(float(np.median(r["epoch_times"])))
    assert recs[1]["speedup_vs_serial"] == pytest.approx(recs[0]["epoch_s"] / recs[1]["epoch_s"])
    assert recs[0]["grad_rel_error"] == 0.0                  # serial is BPTT
    assert 0 < recs[1]["grad_rel_error"] < 10                # MGRIT's speed with its error


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
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "mgrit_gru.tools.cli"]
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


@pytest.mark.skipif(_mpiexec() is None, reason="needs mpiexec")
def test_a_refused_bench_under_mpiexec_is_printed_once():
    """Every rank checks the options alike (`check_benchmark` under `agreed`): one message,
    not one per rank run together on one line."""
    pytest.importorskip("mpi4py")
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mgrit_gru.tools.cli",
                           "bench", "--what", "forward", "--seq-len", "16", "--levels", "6"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("mgrit-gru: error:") == 1, proc.stderr
    assert "is deeper than T=16 allows" in proc.stderr and proc.stdout == ""


def test_plot_scaling_rejects_files_without_forward_records(tmp_path, capsys):
    f = tmp_path / "gru.json"
    f.write_text(json.dumps({"bench": "gru"}) + "\n")
    assert main(["plot-scaling", str(f), "--out", str(tmp_path / "x.png")]) == 2
    assert "no 'bench --what forward' records" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--what", "gru", "--levels", "7"], "bench --what gru does not take --levels"),
    (["--what", "gru", "--backend", "cuda"], "--backend cuda runs the GPU benchmark"),
    (["--what", "gru", "--repeat", "0"], "--repeat must be >= 1, got 0"),
    (["--what", "forward", "--levels", "1", "--seq-len", "16"], "needs levels >= 2"),
    (["--what", "forward", "--levels", "6", "--seq-len", "16"], "is deeper than T=16 allows"),
    (["--what", "train-step", "--seq-len", "16", "--levels", "4"], "is deeper than T=16 allows"),
])
def test_bench_refuses_options_it_would_ignore(capsys, flags, message):
    assert main(["bench", *flags]) == 2
    assert message in capsys.readouterr().err


def _scaling_record(P, T, levels, speedup):
    return {"bench": "forward", "ranks": P, "seq_len": T, "batch": 32, "hidden": 256,
            "levels": levels, "cf": [4] * (levels - 1), "speedup": speedup}


def test_plot_scaling_draws_other_solver_options_as_other_lines(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from mgrit_gru.tools.perfmodel import load_results, plot_scaling
    recs = [_scaling_record(P, 4096, lev, s) for P, lev, s in
            ((1, 3, 0.4), (2, 3, 0.55), (1, 4, 1.3), (2, 4, 1.6))]
    f = tmp_path / "r.json"                                   # one pretty-printed object too
    f.write_text(json.dumps({"records": recs}, indent=1))
    fig = plot_scaling(load_results([str(f)]))
    labels = sorted(l.get_label() for l in fig.axes[0].get_lines())
    assert labels == ["T=4096, B=32, H=256, levels=3, cf=[4, 4], error vs serial not recorded",
                      "T=4096, B=32, H=256, levels=4, cf=[4, 4, 4], error vs serial not "
                      "recorded"]
    ys = {l.get_label(): list(l.get_ydata()) for l in fig.axes[0].get_lines()}
    assert ys[labels[0]] == [0.4, 0.55] and ys[labels[1]] == [1.3, 1.6]   # no zig-zag
    recs = [dict(_scaling_record(P, 4096, 3, s), dt=dt) for P, dt, s in
            ((1, 1.0, 0.4), (2, 1.0, 0.55), (1, 0.1, 0.7), (2, 0.1, 0.9))]
    fig = plot_scaling(recs)                                 # dt changes the solve: two lines
    assert len(fig.axes[0].get_lines()) == 2


def test_plot_scaling_efficiency_and_model_lines():
    """The efficiency panel draws the measured efficiency (speedup / P) and the model's
    (model_speedup / P) as its first two lines."""
    from mgrit_gru.tools.perfmodel import plot_scaling
    recs = [{"bench": "forward", "ranks": P, "seq_len": 64, "batch": 1, "hidden": 8,
             "speedup": s, "model_speedup": m}
            for P, s, m in ((1, 0.5, 0.6), (4, 2.0, 2.4))]
    fig = plot_scaling(recs)
    solid, dashed = fig.axes[2].get_lines()[:2]              # axes[1, 0]: efficiency vs P
    assert list(solid.get_ydata()) == [0.5, 0.5]
    assert list(dashed.get_ydata()) == pytest.approx([0.6, 0.6])
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_plot_scaling_labels_each_line_with_its_largest_error():
    from mgrit_gru.tools.perfmodel import plot_scaling
    recs = [dict(_scaling_record(P, 4096, 3, s), rel_error_vs_serial=e)
            for P, s, e in ((1, 0.4, 2e-3), (2, 0.55, 7e-3))]
    fig = plot_scaling(recs)
    assert fig.axes[0].get_lines()[0].get_label().endswith("error vs serial <= 7.0e-03")
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_plot_scaling_names_the_bad_file(tmp_path, capsys):
    missing = tmp_path / "nothere.json"
    assert main(["plot-scaling", str(missing), "--out", str(tmp_path / "x.png")]) == 2
    assert "nothere.json: cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json\n")
    assert main(["plot-scaling", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "bad.json: not a bench JSON list or JSON lines" in capsys.readouterr().err
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"bench": "forward", "ranks": 1}) + "\n")
    assert main(["plot-scaling", str(short), "--out", str(tmp_path / "x.png")]) == 2
    assert "short.json: a forward record lacks seq_len" in capsys.readouterr().err


def test_forward_records_carry_the_error_of_their_speed():
    """A speed is never shown without its accuracy: the record's error against serial is the
    one the same solve gives here, and on one rank the speedup says it is batching."""
    from mgrit_gru import gru_forward, init_gru, mgrit_forward
    from mgrit_gru.tools.bench import bench_forward
    (rec,) = bench_forward(hidden=5, batch=2, seq_len=64, levels=3, cf=4, iters=1, repeat=1,
                           model=False, dtype="float64", seed=3)
    params = init_gru(5, 5, seed=3)
    x = _x_rows(3, 0, 64, 2, 5, np.float64)
    y_ref, h_ref, _ = gru_forward(params, x)
    y, h, info = mgrit_forward(params, x, levels=3, cf=4, max_iter=1, tol=0.0)
    err = np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref)
    assert err > 1e-4                                        # one cycle: inexact ...
    assert rec["rel_error_vs_serial"] == pytest.approx(err, rel=1e-12)   # ... and said so
    assert rec["h_T_rel_error_vs_serial"] == pytest.approx(
        np.linalg.norm(h - h_ref) / np.linalg.norm(h_ref), rel=1e-12)
    assert rec["final_residual"] == pytest.approx(info.final_residual, rel=1e-12)
    assert rec["speedup_kind"].startswith("batching over intervals on one rank")
    assert rec["efficiency"] is None


def test_plot_scaling_draws_a_single_records_model_point():
    """One record (one P) makes a one-point line: the model is drawn with markers, so its
    point shows beside the measured one."""
    from mgrit_gru.tools.perfmodel import plot_scaling
    recs = [{"bench": "forward", "ranks": 4, "seq_len": 64, "batch": 1, "hidden": 8,
             "speedup": 2.0, "model_speedup": 2.4}]
    fig = plot_scaling(recs)
    for ax in fig.axes:
        measured, model = ax.get_lines()[:2]
        assert measured.get_marker() == "o" and model.get_linestyle() == "--"
        assert model.get_marker() not in (None, "None", "", " ")
        assert len(model.get_xdata()) == 1
    import matplotlib.pyplot as plt
    plt.close(fig)
