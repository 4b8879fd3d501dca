"""The training loop (`mgrit_gru.training.loop`): one step (serial = MGRIT at convergence),
learning, what an epoch writes, exact resume, a diverging run stopped; also on the GPU backend.

Tiny sizes throughout (T <= 24, H <= 8).
"""
import json
import os

import numpy as np
import pytest
from _cuda_solve_helpers import close
from _training_runs import TINY, TINY_CLI, ckpt_arrays, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli
from mgrit_gru.training import loop
from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier
from mgrit_gru.training.optim import Adam


# ----------------------------------------------------------------------------------------------
# one step, and learning
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,layers", [("classic", 1), ("implicit", 2)])
def test_mgrit_step_at_tight_tolerance_gives_the_serial_update(cell, layers):
    rng = np.random.default_rng(0)
    T, B, I, H, C = 19, 4, 3, 5, 3
    x = rng.standard_normal((T, B, I))
    y = rng.integers(0, C, B)
    p_ser = init_classifier(I, H, layers, C, seed=1)
    p_mg = {k: v.copy() for k, v in p_ser.items()}
    ser = SolverOptions(solver="serial", cell=cell)
    mg = SolverOptions(solver="mgrit", cell=cell, levels=3, cf=2, fwd_iters=50, bwd_iters=50,
                       tol=1e-14)
    opt_s, opt_m = Adam(p_ser, lr=0.05), Adam(p_mg, lr=0.05)
    for _ in range(2):                                       # two steps: Adam state too
        rs = tr.train_step(p_ser, opt_s, x, y, ser, clip=1.0)
        rm = tr.train_step(p_mg, opt_m, x, y, mg, clip=1.0)
        assert rm.fwd_residual < 1e-12 and rm.bwd_residual < 1e-12
        assert abs(rs.loss - rm.loss) < 1e-12
    for k in p_ser:
        np.testing.assert_allclose(p_mg[k], p_ser[k], rtol=0, atol=1e-9, err_msg=k)
    assert not np.array_equal(p_ser["weight_out"], init_classifier(I, H, layers, C, 1)["weight_out"])


def test_loss_decreases_on_a_tiny_learnable_task():
    res = tr.train(data="pulse", seq_len=12, num_sequences=128, hidden=8, batch_size=16,
                   levels=2, cf=2, epochs=6, lr=3e-2, seed=0, progress=False, verbose=False)
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert res.history[-1]["train_acc"] > 0.7


# ----------------------------------------------------------------------------------------------
# what a run writes, and resume
# ----------------------------------------------------------------------------------------------
def test_metrics_checkpoint_and_plots(tmp_path):
    res = tiny_run(tmp_path, "a")
    out = tmp_path / "a"
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curves.png", "metrics.jsonl",
                                       "residuals.png"]   # no temporary files left
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                "last_fwd_residual", "last_bwd_residual"):
        assert key in lines[-1], key
    assert lines[-1]["last_fwd_residual"] > 0 and lines[-1]["last_bwd_residual"] > 0
    ck = tr.load_checkpoint(out / "checkpoint.npz")
    assert ck.epoch == 2 and ck.config.seq_len == 20
    names = set(init_classifier(16, 6, 1, 4))
    assert names <= set(ck.params) and "optim.exp_avg.weight_hh_l0" in ck.optim_state
    assert len(ck.steps["fwd_residual"]) == 2 * 3 == len(res.steps["loss"])
    for k in ck.params:
        np.testing.assert_array_equal(ck.params[k], res.params[k])


def test_resume_with_no_epochs_left_says_so(tmp_path, capsys):
    tiny_run(tmp_path, "a", epochs=1)
    res = tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=True,
                   **{**TINY, "epochs": 1})
    assert "already has 1 epoch(s), --epochs 1: nothing to train" in capsys.readouterr().out
    assert [h["epoch"] for h in res.history] == [1]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    tiny_run(tmp_path, "full", epochs=3)
    tiny_run(tmp_path, "part", epochs=1)
    tr.train(out=str(tmp_path / "part"), resume=True, progress=False, verbose=False,
             **{**TINY, "epochs": 3})
    a = ckpt_arrays(tmp_path / "full" / "checkpoint.npz")
    b = ckpt_arrays(tmp_path / "part" / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:                                              # (two runs: two identities)
        if k not in ("meta.run", "meta.digest"):
            assert a[k].dtype == b[k].dtype and np.array_equal(
                a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    ma, mb = tr.read_metrics(tmp_path / "full"), tr.read_metrics(tmp_path / "part")
    strip = lambda rs: [{k: v for k, v in r.items() if "seconds" not in k and k != "run"}
                        for r in rs]
    assert strip(ma) == strip(mb)


def test_no_test_split_writes_null_and_evaluate_says_which_split(tmp_path, capsys):
    """--test-fraction 0: metrics.jsonl stays strict JSON (null, not NaN), the plots are made,
    and evaluate's default (test) split is refused with the way out instead of 'nan%'."""
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_CLI, "--test-fraction", "0", "--out", str(out)]) == 0
    assert "no test split" in capsys.readouterr().out

    def strict(c):
        raise ValueError(f"{c} is not JSON")
    recs = [json.loads(line, parse_constant=strict)
            for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["test_loss"], r["test_acc"]) for r in recs] == [(None, None)] * 2
    assert (out / "curves.png").stat().st_size > 1000
    path = str(out / "checkpoint.npz")
    assert cli.main(["evaluate", path]) == 2
    assert "test split" in capsys.readouterr().err
    assert cli.main(["evaluate", path, "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 48


# ----------------------------------------------------------------------------------------------
# divergence: stopped before a bad update or checkpoint
# ----------------------------------------------------------------------------------------------
def test_a_non_finite_gradient_stops_before_the_update():
    params = init_classifier(3, 4, 1, 2, seed=0)
    before = {k: v.copy() for k, v in params.items()}
    x = np.ones((5, 2, 3))
    labels = np.array([0, 1])
    opts = SolverOptions(solver="serial")
    good = forward_backward(params, x, labels, opts)

    def inf_grads(*a, **kw):                                 # a finite loss, an Inf gradient
        good.grads["weight_hh_l0"][0, 0] = np.inf
        return good

    opt = Adam(params, lr=0.1)
    for clip in (1.0, 0.0):                                  # with and without clipping
        orig = loop.forward_backward
        loop.forward_backward = inf_grads
        try:
            with pytest.raises(tr.TrainingDivergedError, match="gradient norm became inf"):
                tr.train_step(params, opt, x, labels, opts, clip=clip)
        finally:
            loop.forward_backward = orig
        assert all(np.array_equal(params[k], before[k]) for k in params)   # nothing updated


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")   # on purpose
def test_a_diverging_run_stops_with_a_named_error_and_writes_no_bad_checkpoint(tmp_path):
    with pytest.raises(tr.TrainingDivergedError, match="lower --lr"):
        tiny_run(tmp_path, "a", lr=1e300, clip=0.0, optimizer="sgd", momentum=0.0)
    ck = tmp_path / "a" / "checkpoint.npz"                   # diverged in epoch 1: none written
    assert not ck.exists() or all(np.all(np.isfinite(v)) for v in ckpt_arrays(ck).values()
                                  if v.dtype.kind == "f")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")   # on purpose
def test_an_update_that_overflows_the_dtype_is_a_divergence_not_a_bad_argument():
    """float32 with weight decay 1e40: the gradient is finite, the update is not; the next
    step used to fail with "params['weight_ih_l0'] contains NaN or Inf", as if given bad
    parameters."""
    from mgrit_gru.training.model import SolverOptions, init_classifier
    params = init_classifier(3, 4, 1, 2, seed=0, dtype=np.float32)
    x = np.random.default_rng(0).normal(size=(6, 2, 3)).astype(np.float32)
    opt = tr.make_optimizer(tr.TrainConfig(optimizer="sgd", weight_decay=1e40, momentum=0.0),
                            params)
    with pytest.raises(tr.TrainingDivergedError, match="the optimiser step made 'weight_ih_l0' "
                                                       "NaN or Inf .*lower --lr or --weight-decay"):
        tr.train_step(params, opt, x, np.array([0, 1]), SolverOptions(solver="serial"))


# ----------------------------------------------------------------------------------------------
# the GPU backend
# ----------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("strict_device_arrays")  # see tests/conftest.py
def test_train_one_epoch_on_cuda_equals_numpy(tmp_path):
    """The whole loop (data, batches, solves, Adam, evaluation, checkpoint) with backend='cuda'
    gives the numpy backend's history and parameters (float64)."""
    from mgrit_gru import training as tr
    cfg = dict(data="pulse", seq_len=8, num_sequences=8, hidden=3, batch_size=6,
               levels=2, cf=2, fwd_iters=2, bwd_iters=1, epochs=1, seed=0, test_fraction=0.25,
               dtype="float64")
    runs = {b: tr.train(out=str(tmp_path / b), progress=False, verbose=False, backend=b, **cfg)
            for b in ("numpy", "cuda")}
    hn, hc = runs["numpy"].history[0], runs["cuda"].history[0]
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert abs(hc[key] - hn[key]) <= 1e-10 * max(1.0, abs(hn[key])), key
    for k, v in runs["numpy"].params.items():
        close(runs["cuda"].params[k], v, np.float64, k)
    assert tr.load_checkpoint(tmp_path / "cuda" / "checkpoint.npz").config.backend == "cuda"
