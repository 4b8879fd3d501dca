"""Presets fill the options a user leaves out; the run records the resolved values."""
import numpy as np
import pytest

from mgrit_gru.tools import cli
from mgrit_gru.training import TrainConfig, load_checkpoint, train
from mgrit_gru.training.presets import PRESETS, resolve

SMALL = dict(seq_len=32, num_sequences=24, frame_size=4, batch_size=8, epochs=1)


def test_the_torchbraid_preset_is_the_authors_configuration():
    cfg = TrainConfig.with_preset("torchbraid")
    assert (cfg.cell, cfg.dt, cfg.layers, cfg.hidden, cfg.solver) == \
        ("implicit", 1.0, 2, 100, "mgrit")
    opts = cfg.solver_options()
    f, b = opts.forward_options, opts.backward_options
    assert (f.levels, f.cf, f.relax, f.max_iter, f.skip) == (3, 4, "FCF", 2, True)
    assert (b.relax, b.max_iter, b.skip) == (("F", "FCF", "FCF"), 1, True)
    assert f.coarse_input == "inject" and cfg.preset == "torchbraid"


def test_an_explicit_option_overrides_the_preset_and_bwd_relax_follows_levels():
    cfg = TrainConfig.with_preset("torchbraid", hidden=16, levels=4, cf=2)
    assert (cfg.hidden, cfg.levels, cfg.layers) == (16, 4, 2)
    assert cfg.bwd_relax == ["F", "FCF", "FCF", "FCF"]
    assert TrainConfig.with_preset("torchbraid", bwd_relax="FCF").bwd_relax == "FCF"
    assert PRESETS["torchbraid"]["hidden"] == 100            # the table is not changed


def test_an_unknown_preset_is_refused_by_name():
    with pytest.raises(ValueError, match=r"preset must be one of \('torchbraid',\), got 'x'"):
        resolve("x", {})
    with pytest.raises(ValueError, match="preset must be one of"):
        TrainConfig(preset="paper")


def test_bwd_relax_sets_the_backward_solve_alone():
    opts = TrainConfig(levels=3, relax="FCF", bwd_relax="F,FCF,FCF").solver_options()
    assert opts.forward_options.relax == "FCF"
    assert opts.backward_options.relax == ("F", "FCF", "FCF")
    assert TrainConfig().solver_options().backward_options.relax == "FCF"   # None: as relax
    with pytest.raises(ValueError, match=r"relax has 2 entries, expected one per level \(3\)"):
        TrainConfig(levels=3, bwd_relax="F,FCF")


def test_bwd_relax_reaches_the_backward_solve():
    """With backward skip off and one iteration, F and FCF on the adjoint's fine level give
    different gradients: the option is what the backward solve runs with."""
    from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier
    p = init_classifier(3, 4, 1, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((32, 2, 3))
    y = np.array([0, 1])
    g = {r: forward_backward(p, x, y, SolverOptions(levels=3, cf=2, bwd_relax=r, tol=0.0,
                                                    bwd_skip=False)).grads
         for r in ("F,FCF,FCF", "FCF")}
    assert any(not np.array_equal(g["F,FCF,FCF"][k], g["FCF"][k]) for k in g["FCF"])


def test_train_with_a_preset_records_the_resolved_settings(tmp_path):
    res = train(preset="torchbraid", hidden=8, out=str(tmp_path / "run"), progress=False,
                verbose=False, **SMALL)
    cfg = load_checkpoint(tmp_path / "run" / "checkpoint.npz").config
    assert (cfg.cell, cfg.layers, cfg.hidden, cfg.preset) == ("implicit", 2, 8, "torchbraid")
    assert cfg.bwd_relax == ["F", "FCF", "FCF"] and cfg.relax == "FCF"
    assert res.history and res.history[-1]["epoch"] == 1
    with pytest.raises(ValueError, match="give preset with keyword options, not with a config"):
        train(TrainConfig(), preset="torchbraid")


def test_cli_preset_and_an_overriding_flag(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--preset", "torchbraid", "--hidden", "8", "--seq-len", "32",
                     "--num-sequences", "24", "--frame-size", "4", "--batch-size", "8",
                     "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "GRU 2x8 implicit" in header and "relax FCF / bwd F,FCF,FCF" in header
    assert "preset torchbraid" in header
    cfg = load_checkpoint(out / "checkpoint.npz").config
    assert (cfg.cell, cfg.layers, cfg.hidden, cfg.bwd_relax) == \
        ("implicit", 2, 8, ["F", "FCF", "FCF"])
