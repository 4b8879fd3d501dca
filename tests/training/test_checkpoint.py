"""Checkpoints and metrics files (`mgrit_gru.training.checkpoint`): a crash while writing keeps
the old checkpoint, a cut-off metrics line does not block resume, and a file that is not a
checkpoint is named as such."""
import os

import numpy as np
import pytest
from _training_runs import TINY, ckpt_arrays, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli


def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    tiny_run(tmp_path, "a", epochs=1)
    path = tmp_path / "a" / "checkpoint.npz"
    before = ckpt_arrays(path)

    def half_written(f, **arrays):                           # writes some bytes, then dies
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="simulated"):
        tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
                 **{**TINY, "epochs": 2})
    monkeypatch.undo()
    after = ckpt_arrays(path)                               # the old file, intact
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    assert not [f for f in os.listdir(tmp_path / "a") if f.startswith(".")]   # no temporary file
    # the interrupted epoch is redone on resume: the result equals an uninterrupted run
    tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
             **{**TINY, "epochs": 2})
    tiny_run(tmp_path, "b", epochs=2)
    a, b = ckpt_arrays(path), ckpt_arrays(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in b)
    assert [r["epoch"] for r in tr.read_metrics(tmp_path / "a")] == [1, 2]


def test_a_cut_off_metrics_line_does_not_block_resume(tmp_path):
    """A crash during the metrics append leaves half a line after the checkpoint's epochs:
    resume drops it; a bad line elsewhere is an error naming the file and line."""
    tiny_run(tmp_path, "a", epochs=1)
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
