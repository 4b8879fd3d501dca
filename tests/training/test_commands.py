"""The train, evaluate and demo commands (`mgrit_gru.training.commands`), on the command line."""
import json
import os

import numpy as np
from _training_runs import TINY, TINY_CLI, ckpt_arrays, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli
from mgrit_gru.training import commands


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
    arrays = ckpt_arrays(path)                              # the same run, stored as cuda's
    cfg = json.loads(str(arrays["meta.config"]))
    arrays["meta.config"] = np.array(json.dumps({**cfg, "backend": "cuda"}, sort_keys=True))
    gpu_path = str(tmp_path / "gpu.npz")
    np.savez(gpu_path, **arrays)
    assert cli.main(["evaluate", gpu_path]) == 2                    # no GPU here
    assert "GPU" in capsys.readouterr().err
    assert cli.main(["evaluate", gpu_path, "--backend", "numpy", "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (got["accuracy"], got["loss"], got["n"]) == (want["accuracy"], want["loss"], want["n"])


def test_cli_demo_prints_where_its_plots_are(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(commands, "DEMO", {**commands.DEMO, **TINY, "epochs": 1})
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "curves.png" in out and "residuals.png" in out
    assert (tmp_path / "demo" / "curves.png").is_file()
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0  # reruns


def test_demo_does_not_overwrite_another_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(commands, "DEMO", {**commands.DEMO, **TINY, "epochs": 1})
    tiny_run(tmp_path, "mine", hidden=5)                         # a user's run, not the demo's
    before = ckpt_arrays(tmp_path / "mine" / "checkpoint.npz")
    assert cli.main(["demo", "--out", str(tmp_path / "mine"), "--no-progress"]) == 2
    assert "not the demo's (its hidden differ)" in capsys.readouterr().err
    after = ckpt_arrays(tmp_path / "mine" / "checkpoint.npz")
    assert all(np.array_equal(after[k], before[k]) for k in before)
