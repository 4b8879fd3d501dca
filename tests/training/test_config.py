"""The training options (`mgrit_gru.training.config`): bad values refused by name, options the
run would not use (refused on the command line, warned of in Python), NumPy scalars."""
import numpy as np
import pytest
from _training_runs import TINY, TINY_CLI, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli


@pytest.mark.parametrize("kw,message", [
    ({"cf": 2.9}, "cf must be an integer"),                  # refused, not truncated to 2
    ({"cf": [4, 2.5]}, "cf must be an integer"),
    ({"dt": None}, "dt must be a finite number > 0, got None"),
    ({"dt": "x"}, "dt must be a finite number > 0"),
    ({"lr": True}, "lr must be a finite number"),
    ({"test_fraction": "a"}, "test_fraction must lie in"),
])
def test_config_refuses_bad_values_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        tr.TrainConfig(**{**TINY, **kw})


@pytest.mark.parametrize("flags,message", [
    (["--data", "mnist"], "unknown data spec 'mnist'"),
    (["--data", "npz:/nonexistent/x.npz"], "/nonexistent/x.npz: no such file"),
    (["--seq-len", "0"], "--seq-len must be >= 1, got 0"),
    (["--fwd-iters", "0"], "--fwd-iters must be >= 1, got 0"),
    (["--bwd-iters", "-1"], "--bwd-iters must be >= 1, got -1"),
    (["--relax", "FCFC"], "error: --relax must be one of ('F', 'FCF'), got 'FCFC'"),
    (["--cf", "1"], "error: --cf must be an integer >= 2, got 1"),
    (["--lr", "-1"], "error: --lr must be a finite number > 0, got -1.0"),
    (["--lr", "0"], "error: --lr must be a finite number > 0, got 0.0"),
    (["--weight-decay", "-1"], "error: --weight-decay must be a finite number >= 0"),
    (["--test-fraction", "1"], "error: --test-fraction must lie in [0, 1)"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--levels", "1", "--cf", "8"], "would not use --cf (only --levels 2 or more"),
    (["--levels", "1", "--relax", "F", "--tol", "0"],
     "; --relax (only --levels 2 or more; one level steps serially); --tol (only"),
])
def test_cli_bad_options_exit_2_with_a_named_error(tmp_path, capsys, flags, message):
    base = TINY_CLI
    if "--data" in flags:                                    # without the synthetic-only ones
        i = TINY_CLI.index("--num-sequences")
        base = TINY_CLI[:i] + TINY_CLI[i + 4:]
        assert "--num-sequences" not in base and "--frame-size" not in base
    assert cli.main(["train", *base, *flags, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_numpy_scalar_options_reach_the_checkpoint(tmp_path):
    # a sweep over np.arange hands NumPy scalars: the checkpoint's JSON config must take them
    res = tiny_run(tmp_path, "a", epochs=1, hidden=np.int64(6), lr=np.float32(0.01))
    ck = tr.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    assert ck.config.hidden == 6 and type(ck.config.hidden) is int
    assert ck.config.lr == pytest.approx(0.01) and res.params["weight_hh_l0"].shape == (18, 6)


# ----------------------------------------------------------------------------------------------
# options the run would not use
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--data", "pulse", "--num-classes", "4"], r"--num-classes \(only --data synthetic or event\)"),
    (["--projection-dim", "7"], r"--projection-dim \(only --data frames or hmdb51\)"),
    (["--momentum", "0.5"], r"--momentum \(only --optimizer sgd\)"),
    (["--solver", "serial", "--levels", "7", "--relax", "F"],
     r"--levels \(only --solver mgrit\); --relax \(only --solver mgrit\)"),
    (["--solver", "serial", "--no-skip"], r"--skip/--no-skip \(only --solver mgrit\)"),
])
def test_cli_train_refuses_options_the_run_would_not_use(tmp_path, capsys, flags, message):
    """As bench: an option the chosen data, solver or optimiser does not take is an error
    (the checkpoint would otherwise record a num_classes the model does not have)."""
    out = tmp_path / "run"
    assert cli.main(["train", "--seq-len", "16", "--epochs", "1", *flags, "--out",
                     str(out)]) == 2
    import re
    assert re.search("this run would not use " + message, capsys.readouterr().err)
    assert not out.exists()
    assert cli.main(["train", *TINY_CLI, "--solver", "serial", "--epochs", "1", "--out",
                     str(out)]) == 2                         # TINY_CLI has --levels, --cf
    capsys.readouterr()
    i = TINY_CLI.index("--levels")
    serial = TINY_CLI[:i] + TINY_CLI[i + 4:]                 # without --levels 2 --cf 4
    assert "--levels" not in serial and "--cf" not in serial and "--seed" in serial
    assert cli.main(["train", *serial, "--solver", "serial", "--epochs", "1", "--out",
                     str(out)]) == 0
    assert cli.main(["evaluate", str(out / "checkpoint.npz"), "--fwd-iters", "3"]) == 2
    assert "--fwd-iters is for MGRIT" in capsys.readouterr().err


def test_python_train_warns_of_keywords_the_run_does_not_use(tmp_path):
    # the command line refuses them; train(**shared, solver=...) in a sweep only hears of them
    with pytest.warns(UserWarning) as record:
        res = tiny_run(tmp_path, "s", epochs=1, solver="serial", momentum=0.5)
    msgs = [str(w.message) for w in record if "does not use" in str(w.message)]
    assert msgs == ["this run does not use momentum (only optimizer='sgd'); levels (only "
                    "solver='mgrit'); cf (only solver='mgrit'); fwd_iters (only solver='mgrit'); "
                    "bwd_iters (only solver='mgrit')"]
    assert res.steps["fwd_residual"] and all(np.isnan(res.steps["fwd_residual"]))   # serial
    with pytest.warns(UserWarning, match=r"projection_dim \(only data='frames:ROOT' or data='hmdb51:ROOT'\)"):
        tr.train(tr.TrainConfig(**{**TINY, "epochs": 1}), progress=False, verbose=False,
                 projection_dim=3)                         # a config plus keywords: those
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a config alone: nothing to tell
        tr.train(tr.TrainConfig(**{**TINY, "solver": "serial", "epochs": 1}), progress=False,
                 verbose=False)


def test_every_solver_option_is_a_training_option_with_the_same_default():
    """TrainConfig stores the solver's options flat (the checkpoint format) and hands them to
    SolverOptions by name: a field added to one must be added to the other, alike."""
    from dataclasses import fields

    from mgrit_gru.training.config import SOLVER_FIELDS
    from mgrit_gru.training.model import SolverOptions
    train = {f.name: f.default for f in fields(tr.TrainConfig)}
    for f in fields(SolverOptions):
        assert f.name in SOLVER_FIELDS and train[f.name] == f.default, f.name
    cfg = tr.TrainConfig(levels=2, cf=8, bwd_relax="F", fwd_rtol=1e-3, cell="implicit")
    opts = cfg.solver_options()
    assert all(getattr(opts, n) == getattr(cfg, n) for n in SOLVER_FIELDS)
