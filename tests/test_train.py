"""Training: one step (serial = MGRIT at convergence), learning, checkpoints, resume, CLI, MPI.

Tiny sizes throughout (T <= 24, H <= 8): the whole file runs in well under a minute.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mgrit_gru.tools import cli
from mgrit_gru import training as tr
from mgrit_gru.training import commands, loop
from mgrit_gru.training.data import frame_listing, npz_checksums
from mgrit_gru.training.model import SolverOptions, forward_backward, init_classifier, split_params
from mgrit_gru.training.optim import Adam

# a tiny synthetic video run: 4x4 frames, 20 frames, 48 videos
TINY = dict(data="synthetic", seq_len=20, num_sequences=48, frame_size=4, hidden=6,
            batch_size=16, levels=2, cf=4, fwd_iters=2, bwd_iters=1, epochs=2, seed=3,
            dtype="float64")


def _ckpt_arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _run(tmp_path, name, **kw):
    return tr.train(out=str(tmp_path / name), progress=False, verbose=False, **{**TINY, **kw})


# ----------------------------------------------------------------------------------------------
# model and one step
# ----------------------------------------------------------------------------------------------
def test_flat_params_have_gru_and_head_names():
    p = init_classifier(3, 5, 2, 4, seed=0)
    gru, head = split_params(p)
    assert set(head) == {"weight_out", "bias_out"} and head["weight_out"].shape == (4, 5)
    assert "weight_ih_l1" in gru and gru["weight_hh_l0"] is p["weight_hh_l0"]   # views


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


def test_backward_skip_is_its_own_option_and_costs_accuracy_at_one_iteration():
    """At the paper's budget (2 forward / 1 backward cycle) the backward solve with skip is a
    coarse solve plus interpolation; without skip (bwd_skip=False) it also relaxes on the fine
    grid: the gradient is much closer to BPTT's (docs/theory/backward.md, "Inexact solves")."""
    rng = np.random.default_rng(3)
    T, B, I, H, C = 64, 4, 3, 6, 3
    x, y = rng.standard_normal((T, B, I)), rng.integers(0, C, B)
    p = init_classifier(I, H, 1, C, seed=2)
    ref = forward_backward(p, x, y, SolverOptions(solver="serial")).grads

    def err(**kw):
        g = forward_backward(p, x, y, SolverOptions(levels=3, cf=4, tol=0.0, **kw)).grads
        return (np.sqrt(sum(np.sum((g[k] - ref[k]) ** 2) for k in ref))
                / np.sqrt(sum(np.sum(ref[k] ** 2) for k in ref)))

    with_skip, no_bwd_skip = err(), err(bwd_skip=False)
    assert err(bwd_skip=True) == with_skip                   # None means "as skip"
    assert no_bwd_skip < 0.3 * with_skip, (no_bwd_skip, with_skip)
    assert SolverOptions(skip=False).backward_options.skip is False
    assert SolverOptions(bwd_skip=False).forward_options.skip is True   # forward keeps skip
    with pytest.raises(ValueError, match="bwd_skip must be"):
        SolverOptions(bwd_skip="no")
    with pytest.raises(ValueError, match="skip must be True or False"):
        SolverOptions(skip="False")                          # bool("False") is True


def test_serial_gradients_match_finite_differences_of_the_loss():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 2, 2)), np.array([0, 1])
    p = init_classifier(2, 3, 1, 2, seed=0)
    g = forward_backward(p, x, y, SolverOptions(solver="serial")).grads
    for k in ("weight_hh_l0", "weight_out"):
        i = (1, 2)
        eps = 1e-6
        p[k][i] += eps
        lp = forward_backward(p, x, y, SolverOptions(solver="serial")).loss
        p[k][i] -= 2 * eps
        lm = forward_backward(p, x, y, SolverOptions(solver="serial")).loss
        p[k][i] += eps
        assert abs((lp - lm) / (2 * eps) - g[k][i]) < 1e-7


def test_loss_decreases_on_a_tiny_learnable_task():
    res = tr.train(data="pulse", seq_len=12, num_sequences=128, hidden=8, batch_size=16,
                   levels=2, cf=2, epochs=6, lr=3e-2, seed=0, progress=False, verbose=False)
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert res.history[-1]["train_acc"] > 0.7


# ----------------------------------------------------------------------------------------------
# files: metrics, checkpoints, resume
# ----------------------------------------------------------------------------------------------
def test_metrics_checkpoint_and_plots(tmp_path):
    res = _run(tmp_path, "a")
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
    _run(tmp_path, "a", epochs=1)
    res = tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=True,
                   **{**TINY, "epochs": 1})
    assert "already has 1 epoch(s), --epochs 1: nothing to train" in capsys.readouterr().out
    assert [h["epoch"] for h in res.history] == [1]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    _run(tmp_path, "full", epochs=3)
    _run(tmp_path, "part", epochs=1)
    tr.train(out=str(tmp_path / "part"), resume=True, progress=False, verbose=False,
             **{**TINY, "epochs": 3})
    a = _ckpt_arrays(tmp_path / "full" / "checkpoint.npz")
    b = _ckpt_arrays(tmp_path / "part" / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    ma, mb = tr.read_metrics(tmp_path / "full"), tr.read_metrics(tmp_path / "part")
    strip = lambda rs: [{k: v for k, v in r.items() if "seconds" not in k} for r in rs]
    assert strip(ma) == strip(mb)


def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    _run(tmp_path, "a", epochs=1)
    path = tmp_path / "a" / "checkpoint.npz"
    before = _ckpt_arrays(path)

    def half_written(f, **arrays):                           # writes some bytes, then dies
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="simulated"):
        tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
                 **{**TINY, "epochs": 2})
    monkeypatch.undo()
    after = _ckpt_arrays(path)                               # the old file, intact
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    assert not [f for f in os.listdir(tmp_path / "a") if f.startswith(".")]   # no temporary file
    # the interrupted epoch is redone on resume: the result equals an uninterrupted run
    tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
             **{**TINY, "epochs": 2})
    _run(tmp_path, "b", epochs=2)
    a, b = _ckpt_arrays(path), _ckpt_arrays(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in b)
    assert [r["epoch"] for r in tr.read_metrics(tmp_path / "a")] == [1, 2]


def test_a_cut_off_metrics_line_does_not_block_resume(tmp_path):
    """A crash during the metrics append leaves half a line after the checkpoint's epochs:
    resume drops it; a bad line elsewhere is an error naming the file and line."""
    _run(tmp_path, "a", epochs=1)
    path = tmp_path / "a" / "metrics.jsonl"
    good = path.read_text()
    path.write_text(good + '{"epoch": 2, "train_lo')
    assert [r["epoch"] for r in tr.read_metrics(tmp_path / "a")] == [1]
    tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
             **{**TINY, "epochs": 2})
    assert [r["epoch"] for r in tr.read_metrics(tmp_path / "a")] == [1, 2]
    path.write_text('{"epoch": 1, "train_lo\n' + good)
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: not a JSON record"):
        tr.read_metrics(tmp_path / "a")


def test_a_refused_or_failed_overwrite_keeps_the_old_run_and_a_fresh_one_replaces_it(tmp_path):
    """--overwrite with options the sequence cannot take (too deep; a relax list of the wrong
    length, once checked only at the first solve) is refused before any file changes; a run
    that fails in its first epoch leaves the old run whole (it used to delete the checkpoint
    and empty the metrics at the start); a run with an epoch replaces checkpoint and metrics
    both, so a later --resume cannot continue the old run under the new metrics."""
    _run(tmp_path, "a", epochs=2)
    out = tmp_path / "a"
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    for bad, message in [(dict(levels=3, cf=8), "deeper than"),
                         (dict(levels=3, relax="FCF,F"), r"relax has 2 entries, expected one "
                                                         r"per level \(3\)"),
                         (dict(levels=2, cf="4,2"), "cf has 2 entries; 2 levels need 1")]:
        with pytest.raises(ValueError, match=message):
            tr.train(out=str(out), overwrite=True, progress=False, verbose=False,
                     **{**TINY, **bad})
        assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before

    def crash(*a, **kw):
        raise RuntimeError("crash in epoch 1 (simulated)")
    orig, loop.train_step = loop.train_step, crash
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            tr.train(out=str(out), overwrite=True, progress=False, verbose=False, **TINY)
    finally:
        loop.train_step = orig
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before

    calls = [0]
    n_train = len(tr.prepare_data(tr.TrainConfig(**TINY)).y_train)
    per_epoch = -(-n_train // TINY["batch_size"])           # batches (steps) per epoch

    def crash_in_epoch_2(*a, **kw):
        calls[0] += 1
        if calls[0] > per_epoch:
            raise RuntimeError("crash in epoch 2 (simulated)")
        return orig(*a, **kw)
    loop.train_step = crash_in_epoch_2
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            tr.train(out=str(out), overwrite=True, progress=False, verbose=False,
                     **{**TINY, "seed": 4})
    finally:
        loop.train_step = orig
    assert [r["epoch"] for r in tr.read_metrics(out)] == [1]   # the new run's epoch alone
    ck = tr.load_checkpoint(out / "checkpoint.npz")
    assert ck.epoch == 1 and ck.config.seed == 4


def test_a_run_on_a_relative_data_path_resumes_and_evaluates_from_anywhere(tmp_path,
                                                                          monkeypatch):
    """The checkpoint stores the data's absolute path: from another directory `npz:d.npz` was
    not found, and giving the absolute path was refused as a different data set."""
    (tmp_path / "a").mkdir()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a" / "d.npz", x=rng.normal(size=(24, 16, 2)), y=np.arange(24) % 2)
    np.savez(tmp_path / "a" / "e.npz", x=rng.normal(size=(24, 16, 2)), y=np.arange(24) % 2)
    small = dict(hidden=4, levels=2, cf=4, batch_size=8, progress=False, verbose=False)
    monkeypatch.chdir(tmp_path / "a")
    tr.train(data="npz:d.npz", out="run", epochs=1, **small)
    ck = tr.load_checkpoint("run/checkpoint.npz")
    assert ck.config.data == f"npz:{tmp_path / 'a' / 'd.npz'}"
    own = tr.evaluate_checkpoint("run/checkpoint.npz")
    assert tr.evaluate_checkpoint("run/checkpoint.npz", data="npz:d.npz") == own   # own: test
    monkeypatch.chdir(tmp_path)                              # elsewhere
    assert tr.evaluate_checkpoint("a/run/checkpoint.npz") == own
    res = tr.train(data=f"npz:{tmp_path / 'a' / 'd.npz'}", out="a/run", resume=True, epochs=2,
                   **small)
    assert [r["epoch"] for r in res.history] == [1, 2]
    with pytest.raises(ValueError, match=r"a/e.npz holds other data than the run was trained on "
                                         r"\(.*a/d.npz\): x.npy CRC32 [0-9a-f]{8}, 6272 bytes "
                                         r"\(checkpoint: [0-9a-f]{8}, 6272 bytes\)$"):
        tr.train(data="npz:a/e.npz", out="a/run", resume=True, epochs=3, **small)


class _TwoRanks:
    """What train() asks of a communicator before any message: its size and rank."""

    def Get_size(self):
        return 2

    def Get_rank(self):
        return 0


def test_the_cuda_backend_under_mpi_is_refused_before_any_work(tmp_path):
    """It used to fail at the first step (NotImplementedError tracebacks on every rank), after
    the run folder and its first files were written."""
    _run(tmp_path, "a", epochs=1)
    for call in (lambda: tr.train(out=str(tmp_path / "run"), comm=_TwoRanks(), progress=False,
                                  verbose=False, **{**TINY, "backend": "cuda"}),
                 lambda: tr.evaluate_checkpoint(tmp_path / "a" / "checkpoint.npz",
                                                comm=_TwoRanks(), backend="cuda")):
        with pytest.raises(ValueError, match="--backend cuda runs on one GPU in one process, "
                                             "but this run has 2 MPI ranks"):
            call()
    assert not (tmp_path / "run").exists()


def test_numpy_scalar_options_reach_the_checkpoint(tmp_path):
    # a sweep over np.arange hands NumPy scalars: the checkpoint's JSON config must take them
    res = _run(tmp_path, "a", epochs=1, hidden=np.int64(6), lr=np.float32(0.01))
    ck = tr.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    assert ck.config.hidden == 6 and type(ck.config.hidden) is int
    assert ck.config.lr == pytest.approx(0.01) and res.params["weight_hh_l0"].shape == (18, 6)


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
        _run(tmp_path, "a", lr=1e300, clip=0.0, optimizer="sgd", momentum=0.0)
    ck = tmp_path / "a" / "checkpoint.npz"                   # diverged in epoch 1: none written
    assert not ck.exists() or all(np.all(np.isfinite(v)) for v in _ckpt_arrays(ck).values()
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


def test_refuses_to_overwrite_or_resume_with_other_options(tmp_path):
    _run(tmp_path, "a", epochs=1)
    with pytest.raises(ValueError, match="--resume"):
        _run(tmp_path, "a", epochs=1)
    with pytest.raises(ValueError, match="hidden"):
        tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
                 **{**TINY, "hidden": 7})
    with pytest.raises(ValueError, match="no checkpoint"):
        tr.train(out=str(tmp_path / "b"), resume=True, progress=False, **TINY)


def test_npz_and_frame_folder_data(tmp_path):
    from mgrit_gru.training.data import save_npz
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "d.npz", rng.standard_normal((20, 10, 3)), np.arange(20) % 2)
    res = tr.train(data=f"npz:{tmp_path / 'd.npz'}", hidden=4, batch_size=8, levels=2, cf=2,
                   epochs=1, progress=False, verbose=False)
    save_npz(tmp_path / "ids.npz", rng.standard_normal((20, 10, 3)), np.arange(20) * 10**6)
    with pytest.raises(ValueError, match="only 20 distinct values occur"):   # not 19M outputs
        tr.train(data=f"npz:{tmp_path / 'ids.npz'}", hidden=4, epochs=1, progress=False)
    assert res.params["weight_ih_l0"].shape == (12, 3) and res.params["weight_out"].shape[0] == 2
    from PIL import Image
    for c in ("jump", "run"):
        for v in range(3):
            d = tmp_path / "frames" / c / f"v{v}"
            d.mkdir(parents=True)
            for t in range(4):
                Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(d / f"{t}.png")
    res = tr.train(data=f"frames:{tmp_path / 'frames'}", seq_len=8, frame_size=4, hidden=4,
                   batch_size=4, levels=2, cf=2, epochs=1, progress=False, verbose=False)
    assert res.params["weight_ih_l0"].shape == (12, 16)


# npz runs: a small two-class file, and the options of a quick run on it
NPZ_RUN = ["--hidden", "4", "--levels", "2", "--cf", "4", "--batch-size", "8", "--no-progress",
           "--quiet"]


def _write_npz(path, N=24, T=16, F=2, C=2, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(N, T, F)), y=np.arange(N) % C)


def test_data_of_one_class_is_refused_for_training_not_for_evaluation(tmp_path, capsys):
    """One class used to train a 2-output model ("1 classes") to a meaningless accuracy."""
    x = np.random.default_rng(0).normal(size=(40, 8, 3))
    np.savez(tmp_path / "onecls.npz", x=x, y=np.zeros(40, int))
    out = tmp_path / "r"
    assert cli.main(["train", "--data", f"npz:{tmp_path / 'onecls.npz'}", *NPZ_RUN,
                     "--epochs", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"mgrit-gru: error: {tmp_path / 'onecls.npz'}: 'y' has "
                                       "one class (0); a classifier needs labels of at least 2 "
                                       "classes\n")
    assert not out.exists()
    from PIL import Image
    for v in range(2):                                       # frame folders: one class folder
        (tmp_path / "frames" / "run" / f"v{v}").mkdir(parents=True)
        Image.new("L", (4, 4), 10 * v).save(tmp_path / "frames" / "run" / f"v{v}" / "0.png")
    with pytest.raises(ValueError, match="frames: one class folder \\(run\\); a classifier "
                                         "needs at least 2 classes"):
        tr.train(data=f"frames:{tmp_path / 'frames'}", seq_len=2, frame_size=2, hidden=4,
                 levels=2, cf=2, epochs=1, progress=False)
    # a model of two classes evaluated on each class's examples alone: every sequence is
    # predicted as one of the two, so the accuracies add up to 1
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 2)
    tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(out), epochs=1, hidden=4, levels=2,
             cf=4, batch_size=8, progress=False, verbose=False)
    acc = []
    for label in (0, 1):
        np.savez(tmp_path / "cls.npz", x=x, y=np.full(40, label))
        loss, a, n = tr.evaluate_checkpoint(out / "checkpoint.npz",
                                            data=f"npz:{tmp_path / 'cls.npz'}")
        assert n == 40 and np.isfinite(loss)
        acc.append(a)
    assert acc[0] + acc[1] == pytest.approx(1.0)


@pytest.mark.parametrize("change, message", [
    (dict(T=32), "T 32 (checkpoint: 16)"),
    (dict(F=3), "F 3 (checkpoint: 2)"),
    (dict(C=3), "classes 3 (checkpoint: 2)"),
    (dict(N=30), "sequences 30 (checkpoint: 24)"),
    (dict(seed=1), "x.npy CRC32 "),                          # same shapes, other values
])
def test_resume_refuses_an_npz_file_changed_since_the_checkpoint(tmp_path, capsys, change,
                                                                message):
    """A changed T resumed silently (no longer the uninterrupted run); a changed F or class
    count failed with "parameter 'weight_ih_l0' does not fit the model"."""
    data, out = tmp_path / "d.npz", tmp_path / "runs" / "chg"
    _write_npz(data)
    assert cli.main(["train", "--data", f"npz:{data}", *NPZ_RUN, "--epochs", "1",
                     "--out", str(out)]) == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    _write_npz(data, **change)
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the data in {data} no longer matches the checkpoint's: {message}" in err
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before   # untouched
    with pytest.raises(ValueError, match="no longer matches the checkpoint's: .*; its test "
                                         "split is not the run's any more"):
        tr.evaluate_checkpoint(out / "checkpoint.npz")
    if not {"F", "C"} & set(change):                         # (a model of 2 inputs, 2 classes)
        assert tr.evaluate_checkpoint(out / "checkpoint.npz", split="all")[2] == \
            change.get("N", 24)
    _write_npz(data)                                         # the same data again: resumes
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert [r["epoch"] for r in tr.read_metrics(out)] == [1, 2]


def test_a_moved_npz_file_resumes_from_its_new_path_and_other_data_is_refused(tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_npz(tmp_path / "d.npz")
    shutil.copy(tmp_path / "d.npz", tmp_path / "orig.npz")
    for name, epochs in (("moved", "1"), ("whole", "2")):   # the same run, once uninterrupted
        assert cli.main(["train", "--data", "npz:d.npz", *NPZ_RUN, "--epochs", epochs,
                         "--out", name]) == 0
    ck = tmp_path / "moved" / "checkpoint.npz"
    own = tr.evaluate_checkpoint(ck)
    os.rename("d.npz", "d_moved.npz")
    assert cli.main(["train", "--out", "moved", "--resume", "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (
        f"mgrit-gru: error: moved/checkpoint.npz: the run's data file {tmp_path / 'd.npz'} "
        "(recorded in the checkpoint) is missing; if it was moved, pass --data npz:NEWPATH\n")
    with pytest.raises(ValueError, match="data file .*d.npz .* is missing; if it was moved, pass "
                                         "--data npz:NEWPATH"):
        tr.evaluate_checkpoint(ck)
    # evaluate: the moved file is the run's own data (its test split, as before the move)
    assert tr.evaluate_checkpoint(ck, data="npz:d_moved.npz") == own
    _write_npz(tmp_path / "other.npz", seed=1)              # same shapes, other values
    assert cli.main(["train", "--out", "moved", "--resume", "--epochs", "2",
                     "--data", "npz:other.npz"]) == 2
    assert (f"{tmp_path / 'other.npz'} holds other data than the run was trained on "
            f"({tmp_path / 'd.npz'}): x.npy CRC32") in capsys.readouterr().err
    assert tr.evaluate_checkpoint(ck, data="npz:other.npz")[2] == 24   # other data: all of it
    assert cli.main(["train", "--out", "moved", "--resume", "--epochs", "2",
                     "--data", "npz:d_moved.npz"]) == 0
    assert tr.load_checkpoint(ck).config.data == f"npz:{tmp_path / 'd_moved.npz'}"   # new path
    a, b = _ckpt_arrays(ck), _ckpt_arrays(tmp_path / "whole" / "checkpoint.npz")
    for k in b:                                              # = the uninterrupted run
        if k not in ("meta.config",):
            assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    # a recompressed copy holds the same arrays: accepted too (the CRCs are the data's)
    with np.load("orig.npz") as f:
        np.savez_compressed("packed.npz", x=f["x"], y=f["y"])
    assert cli.main(["train", "--out", "moved", "--resume", "--epochs", "3",
                     "--data", "npz:packed.npz"]) == 0


def test_a_moved_frame_folder_is_named_as_the_checkpoints(tmp_path):
    from PIL import Image
    for c in ("jump", "run"):
        for v in range(2):
            d = tmp_path / "frames" / c / f"v{v}"
            d.mkdir(parents=True)
            Image.new("L", (4, 4), 40 * v).save(d / "0.png")
    small = dict(seq_len=2, frame_size=2, hidden=4, levels=2, cf=2, batch_size=2,
                 progress=False, verbose=False)
    tr.train(data=f"frames:{tmp_path / 'frames'}", out=str(tmp_path / "r"), epochs=1, **small)
    os.rename(tmp_path / "frames", tmp_path / "moved")
    with pytest.raises(ValueError) as err:
        tr.train(data=f"frames:{tmp_path / 'frames'}", out=str(tmp_path / "r"), resume=True,
                 epochs=2, **small)
    assert str(err.value) == (f"{tmp_path / 'r' / 'checkpoint.npz'}: the run's data folder "
                              f"{tmp_path / 'frames'} (recorded in the checkpoint) is missing; "
                              "put it (or a link to it) back at that path to resume")


def test_resuming_on_changed_frames_is_refused(tmp_path):
    from PIL import Image
    root = tmp_path / "frames"
    for c in ("jump", "run"):
        for v in range(2):
            d = root / c / f"v{v}"
            d.mkdir(parents=True)
            for k in range(2):
                Image.new("L", (4, 4), 40 * v + k).save(d / f"{k}.png")
    small = dict(data=f"frames:{root}", seq_len=2, frame_size=2, hidden=4, levels=2, cf=2,
                 batch_size=2, progress=False, verbose=False)
    out = tmp_path / "r"
    tr.train(out=str(out), epochs=1, **small)
    ck_path = out / "checkpoint.npz"
    assert tr.load_checkpoint(ck_path).data["listing"] == frame_listing(root)
    os.utime(root / "run" / "v1" / "1.png", (1, 1))          # touched only: the same data
    tr.train(out=str(out), resume=True, epochs=2, **small)
    frame = root / "run" / "v1" / "1.png"
    Image.new("L", (4, 4), 7).save(frame, optimize=False, compress_level=0)   # another size
    assert frame_listing(root) != tr.load_checkpoint(ck_path).data["listing"]
    with pytest.raises(ValueError, match="the data in .*frames no longer matches the "
                                         "checkpoint's: frame files 8, names and sizes"):
        tr.train(out=str(out), resume=True, epochs=3, **small)
    with pytest.raises(ValueError, match="its test split is not the run's any more"):
        tr.evaluate_checkpoint(ck_path)
    assert tr.load_checkpoint(ck_path).epoch == 2            # the refused resume wrote nothing

def test_an_older_checkpoint_without_a_data_record_still_resumes(tmp_path):
    """Checkpoints of earlier versions have no meta.data and num_classes 4 for npz data: they
    load and resume (nothing to compare), and a moved file cannot stand in for theirs."""
    _write_npz(tmp_path / "d.npz", C=3)
    small = dict(hidden=4, levels=2, cf=4, batch_size=8, progress=False, verbose=False)
    out = tmp_path / "r"
    tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(out), epochs=1, **small)
    ck = tr.load_checkpoint(out / "checkpoint.npz")
    assert ck.config.num_classes == 3                        # the data's, not the option's 4
    assert ck.data == {"T": 16, "F": 2, "classes": 3, "sequences": 24,
                       "members": npz_checksums(tmp_path / "d.npz")}
    arrays = _ckpt_arrays(out / "checkpoint.npz")            # as an earlier version wrote it
    del arrays["meta.data"]
    arrays["meta.config"] = np.array(json.dumps({**ck.config.to_dict(), "num_classes": 4}))
    np.savez(out / "checkpoint.npz", **arrays)
    assert tr.load_checkpoint(out / "checkpoint.npz").data is None
    res = tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(out), resume=True, epochs=2,
                   **small)
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert tr.load_checkpoint(out / "checkpoint.npz").data == ck.data   # recorded from now on
    np.savez(out / "checkpoint.npz", **arrays)               # the old one again, file moved
    os.rename(tmp_path / "d.npz", tmp_path / "e.npz")
    with pytest.raises(ValueError, match="does not record what the data was, so it resumes on "
                                         "that path only: put the file back there"):
        tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(out), resume=True, epochs=2, **small)
    with pytest.raises(ValueError, match="options differ from the checkpoint's: data="):
        tr.train(data=f"npz:{tmp_path / 'e.npz'}", out=str(out), resume=True, epochs=2, **small)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
TINY_CLI = ["--data", "synthetic", "--seq-len", "20", "--num-sequences", "48", "--frame-size",
            "4", "--hidden", "6", "--batch-size", "16", "--levels", "2", "--cf", "4",
            "--epochs", "2", "--seed", "3", "--no-progress"]


def test_cli_train_evaluate_and_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", *TINY_CLI, "--epochs", "1", "--out", out]) == 0
    assert cli.main(["train", "--resume", "--epochs", "2", "--out", out, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "resuming" in text and "epoch 2/2" in text and "plots:" in text
    assert cli.main(["evaluate", os.path.join(out, "checkpoint.npz"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    last = tr.read_metrics(out)[-1]
    assert rec["n"] == 10 and abs(rec["accuracy"] - last["test_acc"]) < 1e-12
    assert cli.main(["evaluate", os.path.join(out, "checkpoint.npz"), "--solver", "serial"]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--data", "pulse", "--num-classes", "4"], r"--num-classes \(only --data synthetic\)"),
    (["--projection-dim", "7"], r"--projection-dim \(only --data frames\)"),
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


def test_cli_evaluate_backend_overrides_the_runs(tmp_path, capsys, monkeypatch):
    """A run trained with backend="cuda" evaluates on a machine without a GPU with
    --backend numpy (same numbers as the numpy run it was made from)."""
    from numba.cuda import config
    monkeypatch.setattr(config, "ENABLE_CUDASIM", False)     # a CPU machine: no simulator
    monkeypatch.setattr("mgrit_gru.cuda.backend.cuda_available", lambda: False)
    out = str(tmp_path / "run")
    assert cli.main(["train", *TINY_CLI, "--epochs", "1", "--out", out]) == 0
    path = os.path.join(out, "checkpoint.npz")
    assert cli.main(["evaluate", path, "--json"]) == 0
    want = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    arrays = _ckpt_arrays(path)                              # the same run, stored as cuda's
    cfg = json.loads(str(arrays["meta.config"]))
    arrays["meta.config"] = np.array(json.dumps({**cfg, "backend": "cuda"}, sort_keys=True))
    gpu_path = str(tmp_path / "gpu.npz")
    np.savez(gpu_path, **arrays)
    assert cli.main(["evaluate", gpu_path]) == 2                    # no GPU here
    assert "GPU" in capsys.readouterr().err
    assert cli.main(["evaluate", gpu_path, "--backend", "numpy", "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (got["accuracy"], got["loss"], got["n"]) == (want["accuracy"], want["loss"], want["n"])


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


def test_one_level_run_plots_its_zero_residuals_without_a_warning(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # log axis: "no positive values"
        one_level = {k: v for k, v in TINY.items() if k not in ("cf", "fwd_iters", "bwd_iters")}
        res = tr.train(out=str(tmp_path / "a"), progress=False, verbose=False,
                       **{**one_level, "epochs": 1, "levels": 1})
    assert res.steps["fwd_residual"] and all(r == 0 for r in res.steps["fwd_residual"])
    assert (tmp_path / "a" / "residuals.png").stat().st_size > 1000


def test_python_train_warns_of_keywords_the_run_does_not_use(tmp_path):
    # the command line refuses them; train(**shared, solver=...) in a sweep only hears of them
    with pytest.warns(UserWarning) as record:
        res = _run(tmp_path, "s", epochs=1, solver="serial", momentum=0.5)
    msgs = [str(w.message) for w in record if "does not use" in str(w.message)]
    assert msgs == ["this run does not use momentum (only optimizer='sgd'); levels (only "
                    "solver='mgrit'); cf (only solver='mgrit'); fwd_iters (only solver='mgrit'); "
                    "bwd_iters (only solver='mgrit')"]
    assert res.steps["fwd_residual"] and all(np.isnan(res.steps["fwd_residual"]))   # serial
    with pytest.warns(UserWarning, match=r"projection_dim \(only data='frames:ROOT'\)"):
        tr.train(tr.TrainConfig(**{**TINY, "epochs": 1}), progress=False, verbose=False,
                 projection_dim=3)                         # a config plus keywords: those
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a config alone: nothing to tell
        tr.train(tr.TrainConfig(**{**TINY, "solver": "serial", "epochs": 1}), progress=False,
                 verbose=False)

def test_cli_demo_prints_where_its_plots_are(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(commands, "DEMO", {**commands.DEMO, **TINY, "epochs": 1})
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "curves.png" in out and "residuals.png" in out
    assert (tmp_path / "demo" / "curves.png").is_file()
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0  # reruns


def test_demo_does_not_overwrite_another_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(commands, "DEMO", {**commands.DEMO, **TINY, "epochs": 1})
    _run(tmp_path, "mine", hidden=5)                         # a user's run, not the demo's
    before = _ckpt_arrays(tmp_path / "mine" / "checkpoint.npz")
    assert cli.main(["demo", "--out", str(tmp_path / "mine"), "--no-progress"]) == 2
    assert "not the demo's (its hidden differ)" in capsys.readouterr().err
    after = _ckpt_arrays(tmp_path / "mine" / "checkpoint.npz")
    assert all(np.array_equal(after[k], before[k]) for k in before)


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


def test_cli_evaluate_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert cli.main(["evaluate", str(bad)]) == 2
    assert "not a .npz checkpoint (not a zip archive)" in capsys.readouterr().err
    other = tmp_path / "other.npz"                           # an npz, but not a checkpoint
    np.savez(other, x=np.zeros(3))
    assert cli.main(["evaluate", str(other)]) == 2
    assert "not a mgrit-gru training checkpoint" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "none.npz")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# MPI: two ranks = one process
# ----------------------------------------------------------------------------------------------
def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:                                      # pragma: no cover
        return False
    return _mpiexec() is not None


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason="needs mpiexec and mpi4py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _mpirun(n, args, timeout=120):
    cmd = [_mpiexec(), "-n", str(n), sys.executable, *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout} s:\n{e.stdout}\n{e.stderr}")


@needs_mpi
def test_two_ranks_train_like_one_process(tmp_path):
    one = str(tmp_path / "one")
    assert cli.main(["train", *TINY_CLI, "--out", one]) == 0
    two = str(tmp_path / "two")
    proc = _mpirun(2, ["-m", "mgrit_gru.tools.cli", "train", *TINY_CLI, "--out", two])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("epoch 2/2") == 1               # rank 0 alone prints
    assert "2 rank(s)" in proc.stdout
    a, b = _ckpt_arrays(Path(one) / "checkpoint.npz"), _ckpt_arrays(Path(two) / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype.kind == "f":
            np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-10, err_msg=k)
        else:
            assert np.array_equal(a[k], b[k]), k
    for ra, rb in zip(tr.read_metrics(one), tr.read_metrics(two)):
        for k in ("train_loss", "train_acc", "test_loss", "test_acc", "last_fwd_residual",
                  "last_bwd_residual"):
            assert abs(ra[k] - rb[k]) <= 1e-10, (k, ra[k], rb[k])
        assert rb["ranks"] == 2


@needs_mpi
def test_a_write_error_on_rank_0_ends_every_rank(tmp_path):
    """Rank 0 alone writes the checkpoint; when that fails (here: a folder in its place, as a
    full disk would) the job must end with the error, not leave rank 1 waiting forever."""
    out = tmp_path / "run"
    (out / "checkpoint.npz").mkdir(parents=True)
    proc = _mpirun(2, ["-m", "mgrit_gru.tools.cli", "train", *TINY_CLI, "--out", str(out)],
                   timeout=60)
    assert proc.returncode != 0
    assert "mgrit-gru: error:" in proc.stderr and "checkpoint.npz" in proc.stderr


@needs_mpi
def test_an_error_every_rank_meets_is_printed_once(tmp_path):
    """A bad option (checked alike on every rank), data every rank reads as bad, a run folder
    that does not allow the run, a hierarchy too deep for the data's T: P copies of the
    message became one (`agreed` marks the higher ranks' copies)."""
    bad = tmp_path / "nan.npz"
    x = np.ones((8, 16, 2))
    x[:, 0, 0] = np.nan                                      # step 0: in every rank's rows
    np.savez(bad, x=x, y=np.arange(8) % 2)
    for args, message in ((["--lr", "-1"], "--lr must be a finite number > 0"),
                          (["--data", f"npz:{bad}", "--levels", "2", "--cf", "2"],
                           "'x' contains NaN or Inf"),
                          (["--resume"], "no checkpoint to resume"),         # the run folder
                          (["--seq-len", "16", "--levels", "6"], "is deeper than T=16 allows")):
        proc = _mpirun(2, ["-m", "mgrit_gru.tools.cli", "train", *args, "--out",
                           str(tmp_path / "run")], timeout=60)
        assert proc.returncode != 0
        assert proc.stderr.count("mgrit-gru: error:") == 1, proc.stderr
        assert message in proc.stderr
        assert not (tmp_path / "run").exists()


MPI_SCRIPT = r'''
import json, numpy as np
from mpi4py import MPI
from mgrit_gru import init_gru, mgrit_forward, mgrit_backward
from mgrit_gru.training import TrainConfig, prepare_data
comm = MPI.COMM_WORLD
# each rank holds only its time rows of the data
cfg = TrainConfig(seq_len=64, num_sequences=8, frame_size=4, levels=3, cf=4)
d = prepare_data(cfg, comm)
full = prepare_data(cfg, None)        # the whole data set, to check our rows are its rows
n = d.x_train.shape[1]
same = bool(np.array_equal(d.x_train, full.x_train[:, d.start:d.start + n])
            and np.array_equal(d.x_test, full.x_test[:, d.start:d.start + n])
            and np.array_equal(d.y_train, full.y_train))
# mgrit_backward frees the reversed-rank communicator it makes (MPICH has 2048 context ids)
made = []
class Spy:
    def __init__(self, c): self.c = c
    def __getattr__(self, name): return getattr(self.c, name)
    def Split(self, *a):
        made.append(self.c.Split(*a)); return made[-1]
p = init_gru(2, 3, 1, seed=0)
x = np.random.default_rng(0).standard_normal((16, 1, 2))
for _ in range(3):
    _, hT, info = mgrit_forward(p, x, levels=2, cf=2, max_iter=1, comm=Spy(comm), gather="local")
    mgrit_backward(p, info, dh_T=np.ones_like(hT), levels=2, cf=2, max_iter=1, gather="local")
rows = comm.gather([d.start, d.x_train.shape[1], d.seq_len, same], root=0)
if comm.rank == 0:
    print(json.dumps({"rows": rows, "made": len(made),
                      "freed": all(c == MPI.COMM_NULL for c in made)}))
'''


@needs_mpi
def test_ranks_hold_only_their_rows_and_free_their_communicators(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(MPI_SCRIPT)
    proc = _mpirun(2, [str(script)])
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    (s0, n0, T0, same0), (s1, n1, T1, same1) = rec["rows"]
    assert T0 == T1 == 64 and n0 < 64 and n1 < 64 and s0 == 0 and s1 + n1 == 64
    assert same0 and same1                       # rendered windows = rows of the full data
    assert rec["made"] == 3 and rec["freed"]


NPZ_SCRIPT = r'''
import json, sys, numpy as np
from mpi4py import MPI
from mgrit_gru.training import TrainConfig, prepare_data
comm = MPI.COMM_WORLD
import mgrit_gru.training.data.files as files
read = []                             # the windows streamed from the file
stream = files._read_rows
files._read_rows = lambda zf, a, b: read.append([a, b]) or stream(zf, a, b)
cfg = TrainConfig(data="npz:" + sys.argv[1], levels=3, cf=4)
d = prepare_data(cfg, comm)           # only this rank's time rows are read from the file
mine = list(read)
full = prepare_data(cfg, None)
n = d.x_train.shape[1]
same = bool(np.array_equal(d.x_train, full.x_train[:, d.start:d.start + n])
            and np.array_equal(d.x_test, full.x_test[:, d.start:d.start + n])
            and np.array_equal(d.y_train, full.y_train) and d.x_train.flags.c_contiguous)
rows = comm.gather([d.start, n, d.seq_len, same, mine], root=0)
if comm.rank == 0:
    print(json.dumps({"rows": rows, "whole_read": read[len(mine):]}))
'''


@needs_mpi
def test_ranks_read_only_their_rows_of_an_npz_file(tmp_path):
    from mgrit_gru.training.data import save_npz
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "d.npz", rng.standard_normal((10, 64, 3)), np.arange(10) % 2)
    script = tmp_path / "npz_ranks.py"
    script.write_text(NPZ_SCRIPT)
    proc = _mpirun(2, [str(script), str(tmp_path / "d.npz")])
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    (s0, n0, T0, same0, read0), (s1, n1, T1, same1, read1) = rec["rows"]
    assert T0 == T1 == 64 and n0 < 64 and n1 < 64 and s0 == 0 and s1 + n1 == 64
    assert same0 and same1
    assert read0 == [[s0, s0 + n0]] and read1 == [[s1, s1 + n1]]   # streamed, not loaded whole
    assert rec["whole_read"] == []                                 # one process: np.load


@needs_mpi
def test_a_nan_in_one_ranks_rows_ends_every_rank_and_touches_no_file(tmp_path):
    """Each rank checks only the rows it reads: a NaN that rank 1 alone sees must end the job
    (not leave rank 0 waiting in the solver) and name its step in the file, once. Rank 0 must
    not go on meanwhile: with --overwrite it used to delete the old run's checkpoint and empty
    its metrics before rank 1's abort reached it."""
    x = np.random.default_rng(0).standard_normal((12, 64, 3))
    np.savez(tmp_path / "good.npz", x=x, y=np.arange(12) % 2)
    x[3, 60, 1] = np.nan                                     # the last rows: rank 1's alone
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(12) % 2)
    run = tmp_path / "run"
    args = ["--hidden", "4", "--levels", "2", "--cf", "4", "--epochs", "1", "--out", str(run),
            "--no-progress"]
    assert cli.main(["train", "--data", f"npz:{tmp_path / 'good.npz'}", *args]) == 0
    before = {f: (run / f).read_bytes() for f in ("checkpoint.npz", "metrics.jsonl")}
    proc = _mpirun(2, ["-m", "mgrit_gru", "train", "--data", f"npz:{tmp_path / 'nan.npz'}",
                       *args, "--overwrite"], timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("contains NaN or Inf (first at sequence 3, step 60, feature "
                             "1)") == 1, proc.stderr
    assert {f: (run / f).read_bytes() for f in before} == before


FRAMES_SCRIPT = r'''
import json, sys, numpy as np
from mpi4py import MPI
import mgrit_gru.training.data.frames as frames
from mgrit_gru.training import TrainConfig, prepare_data
comm = MPI.COMM_WORLD
decoded = []                          # the frame files this rank decodes
decode = frames._decode_frame
frames._decode_frame = lambda p, *a: decoded.append(p) or decode(p, *a)
cache = None if sys.argv[2] == "none" else sys.argv[2]
cfg = TrainConfig(data="frames:" + sys.argv[1], seq_len=40, frame_size=4, levels=3, cf=4,
                  test_fraction=0.25, cache_dir=cache)
d = prepare_data(cfg, comm)
mine = len(decoded)
comm.Barrier()
full = prepare_data(TrainConfig.from_dict(dict(cfg.to_dict(), cache_dir=None)), None)
n = d.x_train.shape[1]
same = bool(np.array_equal(d.x_train, full.x_train[:, d.start:d.start + n])
            and np.array_equal(d.x_test, full.x_test[:, d.start:d.start + n])
            and np.array_equal(d.y_train, full.y_train))
rows = comm.gather([d.start, n, same, mine], root=0)
if comm.rank == 0:
    print(json.dumps({"rows": rows, "all": len(decoded) - mine}))
'''


@needs_mpi
@pytest.mark.parametrize("cached", [False, True])
def test_ranks_decode_only_their_frames(tmp_path, cached):
    """Frame folders under MPI: without a cache each rank decodes only its steps' frames; with
    one, rank 0 decodes the whole set once (to write the entry) and rank 1 none (its rows of the
    entry). Either way the rows equal those of the one-process data."""
    from PIL import Image
    root = tmp_path / "videos"
    for c in range(2):
        for v in range(4):
            folder = root / f"class{c}" / f"v{v}"
            folder.mkdir(parents=True)
            for k in range(40):
                Image.new("L", (4, 4), (37 * k + 11 * v + 90 * c) % 256).save(
                    folder / f"f{k:03d}.png")
    script = tmp_path / "frames_ranks.py"
    script.write_text(FRAMES_SCRIPT)
    proc = _mpirun(2, [str(script), str(root), str(tmp_path / "cache") if cached else "none"])
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    (s0, n0, same0, dec0), (s1, n1, same1, dec1) = rec["rows"]
    assert same0 and same1 and s0 == 0 and s1 + n1 == 40 and n0 < 40 and n1 < 40
    everything = rec["all"]                                   # the one-process load: 8 x 40
    assert everything == 8 * 40
    if cached:
        assert dec0 == everything and dec1 == 0
    else:
        assert dec0 == 8 * n0 and dec1 == 8 * n1


@needs_mpi
def test_a_frame_rank_0_cannot_decode_for_the_cache_ends_every_rank(tmp_path):
    """With --cache-dir rank 0 alone decodes (the others wait for the entry): a frame it cannot
    read stops every rank at once, with the file named once, and writes no run folder."""
    from PIL import Image
    for v in range(2):
        folder = tmp_path / "videos" / f"class{v}" / "v0"
        folder.mkdir(parents=True)
        for k in range(16):
            Image.new("L", (4, 4), 16 * k).save(folder / f"f{k:03d}.png")
    (tmp_path / "videos" / "class1" / "v0" / "f009.png").write_bytes(b"not a png")
    proc = _mpirun(2, ["-m", "mgrit_gru", "train", "--data", f"frames:{tmp_path / 'videos'}",
                       "--seq-len", "16", "--frame-size", "4", "--hidden", "4", "--levels", "2",
                       "--cf", "4", "--epochs", "1", "--test-fraction", "0.5",
                       "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                       "--no-progress"], timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("mgrit-gru: error:") == 1, proc.stderr
    assert "f009.png: cannot read image" in proc.stderr
    assert not (tmp_path / "run").exists()
