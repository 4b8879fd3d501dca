"""The mgrit-gru command line, in-process through main() and once as the installed script."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mgrit_gru.tools.cli import main


def test_gradcheck_passes_on_the_correct_model(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "x", "h0", "PASS"):
        assert name in out


def test_gradcheck_implicit_two_layers_large_dt(capsys):
    assert main(["gradcheck", "--cell", "implicit", "--layers", "2", "--dt", "4",
                 "--seq-len", "6", "--directions", "4"]) == 0
    assert "weight_hh_l1" in capsys.readouterr().out


def test_gradcheck_fails_when_tolerance_is_impossible(capsys):
    assert main(["gradcheck", "--tol", "0"]) == 1                # finite differences are never exact
    assert "FAIL" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys):
    assert main(["gradcheck", "--layers", "0"]) == 2
    assert "--layers must be >= 1" in capsys.readouterr().err
    assert main(["gradcheck", "--dt", "-1"]) == 2
    assert "dt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                      # argparse rejects unknown cells
        main(["gradcheck", "--cell", "lstm"])
    assert e.value.code == 2
    assert main([]) == 2                                       # no subcommand: help, exit 2


def test_bench_prints_json_lines(capsys):
    assert main(["bench", "--what", "gru", "--hidden", "8", "--batch", "2", "--seq-len", "4",
                 "--repeat", "1", "--dtype", "float64"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(lines[0])
    assert (rec["bench"], rec["hidden"], rec["batch"], rec["seq_len"], rec["dtype"]) == \
        ("gru", 8, 2, 4, "float64")
    assert rec["forward_backward_s"] > 0
    assert rec["forward_backward_us_per_step"] == pytest.approx(1e6 * rec["forward_backward_s"] / 4)


def test_installed_script_help():
    exe = Path(sys.executable).parent / "mgrit-gru"            # the venv's console script
    exe = str(exe) if exe.exists() else shutil.which("mgrit-gru")
    assert exe, "mgrit-gru is not installed (pip install .)"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "gradcheck" in proc.stdout and "bench" in proc.stdout


def test_python_dash_m_is_the_command_with_its_exit_codes(tmp_path):
    """``python -m mgrit_gru`` (docs/cluster.md) runs main() and exits with its code."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "mgrit_gru", *a], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=120)
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("mgrit-gru ")
    bad = run("gradcheck", "--layers", "0")
    assert bad.returncode == 2 and "--layers must be >= 1" in bad.stderr
    failed = run("gradcheck", "--tol", "0")                      # a failing check: exit 1
    assert failed.returncode == 1 and "FAIL" in failed.stdout


@pytest.mark.parametrize("argv, flag", [
    (["gradcheck", "--seq-len", "-3"], "--seq-len must be >= 1, got -3"),
    (["solve", "--batch", "0"], "--batch must be >= 1, got 0"),
    (["bench", "--what", "train-step", "--bwd-iters", "0"], "--bwd-iters must be >= 1"),
    (["bench", "--input", "0"], "--input must be >= 1"),
    (["train", "--out", "never-made", "--epochs", "0"], "--epochs must be >= 1"),
    (["solve", "--seed", "-1"], "--seed must be >= 0"),
])
def test_sizes_and_counts_below_one_are_refused_by_flag_before_any_work(argv, flag, capsys):
    assert main(argv) == 2
    out = capsys.readouterr()
    assert flag in out.err and out.out == ""                 # nothing ran, nothing printed
    assert not os.path.exists("never-made")


@pytest.mark.parametrize("argv, message", [
    (["--data", "mnist"], "mgrit-gru: error: unknown data spec 'mnist': use 'synthetic', "
                          "'event', 'pulse', 'npz:PATH', 'frames:ROOT', 'uci-har:ROOT' or 'hmdb51:ROOT'"),
    (["--seq-len", "0"], "mgrit-gru: error: --seq-len must be >= 1, got 0"),
    (["--fwd-iters", "0"], "mgrit-gru: error: --fwd-iters must be >= 1, got 0"),
    (["--data", "npz:data/x.npz"], "mgrit-gru: error: data/x.npz: 'y' has negative labels "
                                   "(min -1); labels are 0..C-1")])
def test_the_training_guides_example_errors_are_the_real_ones(argv, message, tmp_path, capsys,
                                                              monkeypatch):
    """docs/guide/training.md quotes these four messages; each run makes no folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "x.npz", x=np.zeros((3, 8, 2)), y=np.array([0, -1, 1]))
    assert main(["train", *argv, "--out", "run"]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "run").exists()
    guide = (Path(__file__).parents[2] / "docs" / "guide" / "training.md").read_text()
    assert message.removeprefix("mgrit-gru: error: ") in " ".join(guide.split())


def test_bench_converged_run_options_are_flags(capsys):
    """bench --what train-step named --conv-tol and --conv-max-iter among the flags it takes,
    but the command line had neither."""
    assert main(["bench", "--what", "train-step", "--seq-len", "16", "--hidden", "3",
                 "--batch", "1", "--repeat", "1", "--conv-tol", "1e-3",
                 "--conv-max-iter", "4"]) == 0
    rec = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    conv = [r for r in rec if r["method"] == "mgrit-converged"]
    assert len(conv) == 1 and conv[0]["conv_tol"] == 1e-3 and conv[0]["conv_max_iter"] == 4
    assert conv[0]["fwd_iters"] <= 4
    for bad, message in [(["--conv-tol", "0"], "--conv-tol must be a finite number > 0"),
                         (["--conv-max-iter", "0"], "--conv-max-iter must be >= 1"),
                         (["--conv-tol", "-1"], "--conv-tol must be a finite number > 0"),
                         (["--what", "cuda", "--backend", "numpy"], "--what cuda is the GPU "
                                                                    "benchmark")]:
        argv = ["bench", "--what", "train-step", *bad] if "--what" not in bad else ["bench", *bad]
        assert main(argv) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["solve", "--tol", "-1"], "error: --tol must be a finite number >= 0, got -1.0"),
    (["solve", "--dt", "0"], "error: --dt must be a finite number > 0, got 0.0"),
    (["solve", "--cf", "1"], "error: --cf must be an integer >= 2, got 1"),
    (["gradcheck", "--dt", "-1"], "error: --dt must be a finite number > 0, got -1.0"),
    (["bench", "--what", "forward", "--dt", "-1"], "error: --dt must be a finite number > 0"),
    (["train", "--out", "never-made", "--noise", "-1"],
     "error: --noise must be a finite number >= 0, got -1.0"),
    (["train", "--out", "never-made", "--data", "mnist"], "error: unknown data spec 'mnist'"),
])
def test_errors_from_the_library_name_the_flag_not_the_argument(argv, message, capsys):
    """The library says "tol must be ..." (its argument); on the command line it is --tol."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert not os.path.exists("never-made")
    assert "MGRIT solve:" not in out                         # no header for a refused solve


def test_a_solve_too_deep_for_its_sequence_prints_no_header(capsys):
    assert main(["solve", "--seq-len", "16", "--levels", "4"]) == 2
    out, err = capsys.readouterr()
    assert "--levels 4 with cf=[4, 4, 4] is deeper than T=16 allows" in err and out == ""


@pytest.mark.parametrize("argv", [["solve", "--dt", "2", "--dtyp", "float32"],
                                  ["train", "--out", "never-made", "--lev", "1"]])
def test_abbreviated_flags_are_refused(argv, capsys):
    """solve had no --dt, and argparse read `--dt 0` as --dtype 0: no prefixes of flags."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err                            # the command's usage, not the top's
    assert f"mgrit-gru {argv[0]}: error: unrecognized arguments: {argv[-2]}" in err
    assert f"usage: mgrit-gru {argv[0]} " in err


def test_an_error_another_rank_prints_is_not_printed_again(capsys, monkeypatch):
    """`agreed` marks an error a lower rank also raised (same_as_rank): exit 2, no copy."""
    import mgrit_gru.tools.diagnostics as diag

    def same_as_rank_0(**kw):
        e = ValueError("d.npz: 'x' contains NaN")
        e.same_as_rank = 0
        raise e
    monkeypatch.setattr(diag, "solve_and_report", same_as_rank_0)
    assert main(["solve"]) == 2
    assert capsys.readouterr().err == ""


def test_flag_naming_rules():
    from mgrit_gru.tools.cli import _name_the_flag
    flags = {"lr": "--lr", "backend": "--backend", "input_size": "--input"}
    assert _name_the_flag(ValueError("lr must be > 0"), flags) == "--lr must be > 0"
    assert _name_the_flag(ValueError("input_size must be >= 1"), flags) == "--input must be >= 1"
    assert _name_the_flag(ValueError("backend='cuda' needs a CUDA GPU"), flags) == \
        "--backend cuda needs a CUDA GPU"
    for kept in (ValueError("data/x.npz: no such file"), ValueError("tol must be >= 0"),
                 OSError("lr must be"), ValueError("lr")):          # unknown, not a ValueError,
        assert _name_the_flag(kept, flags) == str(kept)             # nothing after the name


def test_ctrl_c_is_one_line_exit_130_and_a_new_empty_run_folder_goes(tmp_path, capsys,
                                                                     monkeypatch):
    import mgrit_gru.training as tr

    def interrupted(options, out, **kw):
        os.makedirs(out, exist_ok=True)                      # as train does before epoch 1
        raise KeyboardInterrupt
    monkeypatch.setattr(tr, "train_from_options", interrupted)
    assert main(["train", "--out", str(tmp_path / "new")]) == 130
    assert capsys.readouterr().err == ("mgrit-gru: interrupted (--out keeps the last finished "
                                       "epoch, if any: continue with --resume)\n")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()                               # a folder that was there stays
    assert main(["train", "--out", str(tmp_path / "old")]) == 130
    assert (tmp_path / "old").is_dir()


def test_evaluate_takes_a_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--seq-len", "8", "--num-sequences", "16", "--frame-size", "4",
                 "--hidden", "3", "--levels", "2", "--cf", "2", "--epochs", "1",
                 "--no-progress", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    by_folder = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run / "checkpoint.npz"), "--json"]) == 0
    by_file = json.loads(capsys.readouterr().out)
    assert by_folder == by_file and by_file["checkpoint"].endswith("checkpoint.npz")
    assert main(["evaluate", str(tmp_path)]) == 2            # a folder without a checkpoint
    assert "checkpoint.npz: no such checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", ""], "--out is empty"),
    (["plot-scaling", "IMG", "--out", "s.png"], "IMG: not a bench JSON file (not text)"),
])
def test_empty_out_and_a_binary_bench_file_are_named(argv, message, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IMG").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_solve_dt_reaches_mgrit_and_the_serial_reference(capsys):
    """The implicit cell at dt = 4 (stable at large steps): MGRIT matches serial at
    that dt, and the header line says the dt used."""
    assert main(["solve", "--seq-len", "32", "--cell", "implicit", "--dt", "4", "--levels", "2",
                 "--iters", "20", "--tol", "1e-11"]) == 0
    out = capsys.readouterr().out
    assert "cell=implicit dt=4 " in out
    err = float(out.split("max |y - y_serial| = ")[1].split()[0])
    assert err < 1e-9


@pytest.mark.filterwarnings("ignore::RuntimeWarning")       # the overflow is the point
def test_a_diverging_solve_is_a_message_not_a_traceback(capsys):
    """MGRITDivergedError is a FloatingPointError: main caught ValueError and OSError only."""
    assert main(["bench", "--what", "forward", "--seq-len", "16", "--hidden", "4", "--batch",
                 "2", "--repeat", "1", "--dtype", "float32", "--dt", "1e30"]) == 2
    assert "mgrit-gru: error: MGRIT residual became nan" in capsys.readouterr().err


def test_out_of_memory_is_a_message_not_a_traceback(capsys, monkeypatch):
    """numpy's "Unable to allocate ..." or the CUDA solve's MemoryError: exit 2, one line."""
    import mgrit_gru.tools.diagnostics as diag

    def too_big(**kw):
        raise MemoryError("Unable to allocate 64.0 GiB for an array")
    monkeypatch.setattr(diag, "solve_and_report", too_big)
    assert main(["solve", "--seq-len", "16"]) == 2
    assert capsys.readouterr().err == "mgrit-gru: error: Unable to allocate 64.0 GiB for an array\n"


def test_file_problems_exit_2_with_a_message_not_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    # a --plot under a file cannot be written: refused before the solve runs
    assert main(["solve", "--seq-len", "16", "--plot", str(blocker / "s.png")]) == 2
    err = capsys.readouterr()
    assert "--plot" in err.err and "residual history" not in err.out
    assert main(["solve", "--seq-len", "16", "--plot", str(tmp_path / "new" / "s.txt")]) == 2
    err = capsys.readouterr()                                # a file type matplotlib cannot
    assert "not an image file name" in err.err and "residual history" not in err.out
    assert not (tmp_path / "new").exists()                   # refused: no folder left behind
    assert main(["plot-scaling", str(tmp_path / "nothere.json")]) == 2
    assert "nothere.json: cannot read" in capsys.readouterr().err
    assert main(["train", "--out", str(blocker), "--epochs", "1"]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--overwrite"]) == 2
    assert "pass one of them" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["solve", "--seq-len", "16", "--plot", "s.png"],
                                  ["bench", "--what", "gru", "--seq-len", "8", "--hidden", "2"]])
def test_one_process_commands_refuse_to_run_once_per_rank_under_mpiexec(tmp_path, argv):
    """Every rank would run the same whole job (bench --what gru: P contended timings, P JSON
    lines)."""
    pytest.importorskip("mpi4py")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("needs mpiexec")
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mgrit_gru", *argv],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and "runs on one process" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "s.png").exists()
