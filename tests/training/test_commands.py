"""The train, evaluate and demo commands (`mgrit_gru.training.commands`), on the command line."""
import json
import os

import numpy as np
import pytest
from _training_runs import TINY, TINY_CLI, ckpt_arrays, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli
from mgrit_gru.training import commands
from mgrit_gru.training.checkpoint import digest


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

    # the CUDA modules choose their loads by ENABLE_CUDASIM when first imported: import them
    # under the simulator first, or a later simulator test in this process gets GPU-only loads
    import mgrit_gru.cuda.backend  # noqa: F401
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
    arrays["meta.digest"] = np.array(digest(arrays))        # a checkpoint as cuda's run wrote it
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


def _frames(root):
    from PIL import Image
    for c in ("a", "b"):
        (root / c / "v0").mkdir(parents=True)
        Image.new("L", (4, 4), 9).save(root / c / "v0" / "0.png")
    return root


@pytest.mark.parametrize("case", ["npz folder", "cache-dir file", "hidden too large"])
def test_cli_errors_are_one_line_naming_the_file_or_flag_and_leave_no_folder(tmp_path, capsys,
                                                                          case):
    """These ended in "no such file", "[Errno 17] File exists" or numpy's allocation error
    (no flag named, and an empty run folder left behind)."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    small = ["--hidden", "4", "--levels", "2", "--cf", "2", "--no-progress", "--quiet"]
    args, message = {
        "npz folder": (["--data", f"npz:{tmp_path / 'folder'}", *small],
                       f"{tmp_path / 'folder'}: a folder, not an .npz file"),
        "cache-dir file": (["--data", f"frames:{_frames(tmp_path / 'frames')}", "--seq-len", "2",
                            "--frame-size", "2", "--cache-dir", str(tmp_path / "afile"), *small],
                           f"--cache-dir {tmp_path / 'afile'} is a file, not a folder"),
        "hidden too large": ([*TINY_CLI, "--hidden", "100000"],
                             "--hidden 100000 (with layers 1): the model's 3e+10 parameters "
                             "need 894 GiB "),
    }[case]
    assert cli.main(["train", *args, "--out", str(tmp_path / "runs" / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mgrit-gru: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()                  # no folder left behind


def test_train_refuses_resume_with_overwrite(tmp_path):
    with pytest.raises(ValueError, match="resume continues the run in out and overwrite starts "
                                         "it afresh: pass one of them"):
        tr.train(out=str(tmp_path / "r"), resume=True, overwrite=True, **TINY)
    assert not (tmp_path / "r").exists()
