"""Checkpoints and metrics files (`mgrit_gru.training.checkpoint`): a crash while writing keeps
the old checkpoint, a cut-off metrics line does not block resume, a file that is not a
checkpoint is named as such; a checkpoint changed after it was written, or one that does not
hold what its format and run say, is refused naming the field; the metrics are checked line by
line against it."""
import os
import re
import shutil

import numpy as np
import pytest
from _training_runs import TINY, ckpt_arrays, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli
from mgrit_gru.training.checkpoint import digest

IDENTITY = ("meta.run", "meta.digest")                      # of each run its own


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
    assert all(np.array_equal(a[k], b[k]) for k in b if k not in IDENTITY)   # (two runs)
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


# ----------------------------------------------------------------------------------------------
# checkpoints that prove what they are; metrics checked line by line
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A TINY run of two epochs (3 steps each), made once; each test works on a copy."""
    root = tmp_path_factory.mktemp("ck")
    tiny_run(root, "run", epochs=2)
    return root / "run"


@pytest.fixture
def run(two_epochs, tmp_path):
    shutil.copytree(two_epochs, tmp_path / "run")
    return tmp_path / "run"


def _rewrite(path, change, redigest):
    """Change the checkpoint's arrays with ``change(arrays)``; with ``redigest`` the digest is
    made anew, as by someone who knows the format."""
    arrays = ckpt_arrays(path)
    change(arrays)
    if redigest:
        arrays["meta.digest"] = np.array(digest(arrays))
    np.savez(path, **arrays)


def _refused(run, capsys, message, evaluate=True):
    """--resume (and evaluate) of ``run`` end in one line holding ``message``, exit code 2, and
    change no file."""
    before = {f: (run / f).read_bytes() for f in os.listdir(run)}
    commands = [["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"]]
    if evaluate:
        commands.append(["evaluate", str(run)])
    for args in commands:
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mgrit-gru: error: ")
        assert re.search(message, err), (message, err)
    assert {f: (run / f).read_bytes() for f in os.listdir(run)} == before


def _set(key, value):
    return lambda a: a.__setitem__(key, np.asarray(value))


def _drop(key):
    return lambda a: a.pop(key)


def _edit(key, fn):
    return lambda a: a.__setitem__(key, fn(a[key].copy()))


# one change of each kind of field: a parameter, an optimiser moment and scalar, a step record,
# each meta field, an array removed, an array added
CHANGES = {
    "parameter": _edit("weight_hh_l0", lambda v: v + 1e-12),
    "optimiser moment": _edit("optim.exp_avg.weight_out", lambda v: 2 * v),
    "optimiser step": _set("optim.step", 5),
    "step record": _edit("steps.loss", lambda v: v[::-1]),
    "meta.epoch": _set("meta.epoch", 1),
    "meta.config": _edit("meta.config", lambda v: np.array(str(v).replace('"lr": 0.01',
                                                                          '"lr": 0.1'))),
    "meta.data": _edit("meta.data", lambda v: np.array(str(v).replace('"sequences": 48',
                                                                      '"sequences": 47'))),
    "meta.run": _set("meta.run", "0" * 32),
    "array removed": _drop("optim.exp_avg_sq.bias_out"),
    "array added": _set("extra", [1.0]),
}


# test ids of the cases below
REWRITES = ["no optimiser moment", "no step record", "no parameter", "extra array",
            "parameter dtype", "step records of two lengths", "optimiser step count",
            "negative epoch", "float epoch", "unknown format", "config not JSON",
            "config not an object", "unknown option", "bad option", "data of another model",
            "bad identity", "optimiser type", "another identity"]
DAMAGES = ["deleted", "duplicated", "a line short", "not records", "not text", "a field missing",
           "step count"]


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_a_checkpoint_changed_after_it_was_written_fails_its_digest(run, capsys, kind):
    _rewrite(run / "checkpoint.npz", CHANGES[kind], redigest=False)
    _refused(run, capsys, r"checkpoint.npz: meta.digest is [0-9a-f]{16}\.\.\., but the arrays "
                          r"give [0-9a-f]{16}\.\.\.: the file was changed after it was written")


@pytest.mark.parametrize("change, message, evaluate", [
    (_drop("optim.exp_avg_sq.weight_ih_l0"), r"array 'optim.exp_avg_sq.weight_ih_l0' is "
                                             r"missing: a checkpoint of this config \(adam, 1 "
                                             r"layer\(s\)\) after epoch 2 holds every", True),
    (_drop("steps.fwd_iters"), "array 'steps.fwd_iters' is missing", True),
    (_drop("bias_hh_l0"), "array 'bias_hh_l0' is missing", True),
    (_set("extra", [1.0]), "unexpected array 'extra'", True),
    (_edit("weight_hh_l0", lambda v: v.astype(np.float32)),
     r"array 'weight_hh_l0' is float32 \(18, 6\), expected float64 \(18, 6\)", True),
    (_edit("steps.loss", lambda v: v[:-1]), r"step records .* must be 1-D arrays of one "
                                            r"length", True),
    (_set("optim.step", 5), r"optim.step is 5, expected 6 \(one optimiser step per step", True),
    (_set("meta.epoch", -5), r"meta.epoch is -5, expected an integer >= 1 \(the completed", True),
    (_set("meta.epoch", 2.0), r"meta.epoch is a float64 array of shape \(\), expected an "
                              "integer", True),
    (_set("meta.format", 3), "meta.format is 3: this version reads checkpoint formats 1, 2", True),
    (_set("meta.config", "{"), "meta.config is not valid JSON", True),
    (_set("meta.config", "[1]"), "meta.config holds a JSON list, expected an object", True),
    (_edit("meta.config", lambda v: np.array(str(v).replace('"lr": 0.01', '"lr": 0.01, "x": 1'))),
     r"meta.config: unknown training options \['x'\]", True),
    (_edit("meta.config", lambda v: np.array(str(v).replace('"lr": 0.01', '"lr": -1'))),
     "meta.config: lr must be a finite number > 0, got -1", True),
    (_edit("meta.data", lambda v: np.array(str(v).replace('"F": 16', '"F": 99'))),
     "a model of 16 features and 4 classes, but meta.data records 99 and 4", True),
    (_set("meta.run", "not-an-id"), "meta.run is 'not-an-id', expected 32 hexadecimal", True),
    (_set("optim.type", "SGD"), "checkpoint.npz: optimizer state is for SGD, not Adam", False),
    # consistent in itself, not with the metrics: one run's metrics, another identity
    (_set("meta.run", "0" * 32), r"metrics.jsonl, line 1: run '[0-9a-f]{32}', but .*checkpoint"
                                 r".npz is run 0{32}: the metrics and the checkpoint are of "
                                 "different runs", False),
], ids=REWRITES)
def test_a_rewritten_checkpoint_that_does_not_fit_its_format_or_run_is_refused(
        run, capsys, change, message, evaluate):
    """Someone who recomputes the digest still cannot resume a checkpoint without an optimiser
    moment or a step record (they used to be reset silently), with a negative or rolled-back
    epoch, or with a config or identity of another run."""
    _rewrite(run / "checkpoint.npz", change, redigest=True)
    _refused(run, capsys, message, evaluate)


def test_a_rolled_back_epoch_is_refused_even_with_its_steps_cut_to_match(run, capsys):
    """meta.epoch 2 -> 1 with the step records cut to epoch 1's (and the digest made anew): the
    metrics would pass (epoch 2's line as the one written after the checkpoint), but the
    weights and the optimiser are epoch 2's, and the optimiser's step count says so."""
    def roll_back(a):
        a["meta.epoch"] = np.array(1)
        for k in [k for k in a if k.startswith("steps.")]:
            a[k] = a[k][:3]
    _rewrite(run / "checkpoint.npz", roll_back, redigest=True)
    _refused(run, capsys, r"optim.step is 6, expected 3", evaluate=True)


def test_another_runs_checkpoint_copied_in_is_refused(run, tmp_path, capsys):
    tiny_run(tmp_path, "other", epochs=2, seed=4)            # same options, another run
    shutil.copy(tmp_path / "other" / "checkpoint.npz", run / "checkpoint.npz")
    _refused(run, capsys, r"metrics.jsonl, line 1: run '[0-9a-f]{32}', but .* is run "
                          r"[0-9a-f]{32}: the metrics and the checkpoint are of different runs",
             evaluate=False)
    assert cli.main(["evaluate", str(run)]) == 0             # a whole checkpoint: evaluates


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), r"metrics.jsonl: missing, but .*checkpoint.npz holds 2 epoch\(s\) of "
                           r"run [0-9a-f]{32}: restore the file, or start afresh with "
                           "--overwrite"),
    (lambda p: p.write_text(p.read_text() * 2), r"metrics.jsonl, line 3: epoch 1, expected 3 "
                                                r"\(one line per epoch, in order\)"),
    (lambda p: p.write_text(p.read_text().splitlines(True)[0]),
     r"metrics.jsonl: 1 epoch line\(s\), but .*checkpoint.npz \(meta.epoch\) holds 2 "
     r"epoch\(s\): expected 2 lines, or 3 when the run stopped between"),
    (lambda p: p.write_text("[1, 2, 3]\n"), r"metrics.jsonl, line 1: a JSON list, expected an "
                                            r"epoch record"),
    (lambda p: p.write_bytes(bytes(range(200, 256)) * 3), r"metrics.jsonl: not a metrics file "
                                                          r"\(byte 0 is not UTF-8 text\)"),
    (lambda p: p.write_text(p.read_text().replace('"train_loss"', '"loss"')),
     "metrics.jsonl, line 1: no 'train_loss'"),
    (lambda p: p.write_text(p.read_text().replace('"steps": 6', '"steps": 5')),
     r"metrics.jsonl, line 2: steps 5, but .*checkpoint.npz holds 6 step records"),
], ids=DAMAGES)
def test_metrics_are_checked_line_by_line_against_the_checkpoint(run, capsys, damage, message):
    damage(run / "metrics.jsonl")
    _refused(run, capsys, message, evaluate=False)


def test_a_line_written_after_the_last_checkpoint_is_the_one_repaired_case(two_epochs,
                                                                          tmp_path, capsys):
    """A run stopped between an epoch's metrics line and its checkpoint: --resume drops the
    line (said on the console) and redoes that epoch; the result equals an uninterrupted run.
    The file is rewritten with the next epoch, not before (a refused resume changes nothing)."""
    out = tmp_path / "a"
    tiny_run(tmp_path, "a", epochs=1)
    first = (out / "checkpoint.npz").read_bytes()
    tr.train(out=str(out), resume=True, progress=False, verbose=False, **{**TINY, "epochs": 2})
    (out / "checkpoint.npz").write_bytes(first)              # epoch 2's line, epoch 1's checkpoint
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    with pytest.raises(ValueError, match="hidden"):          # refused: the line stays
        tr.train(out=str(out), resume=True, progress=False, verbose=False,
                 **{**TINY, "epochs": 2, "hidden": 7})
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    res = tr.train(out=str(out), resume=True, progress=False, verbose=True,
                   **{**TINY, "epochs": 2})
    assert ("metrics.jsonl: its line after epoch 1 (written before a checkpoint that never "
            "came) is dropped") in capsys.readouterr().out
    assert [r["epoch"] for r in tr.read_metrics(out)] == [1, 2]
    a, b = ckpt_arrays(out / "checkpoint.npz"), ckpt_arrays(two_epochs / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in b if k not in IDENTITY)
    assert res.run == tr.load_checkpoint(out / "checkpoint.npz").run


def test_the_run_identity_is_kept_by_resume_and_renewed_by_overwrite(tmp_path):
    first = tiny_run(tmp_path, "a", epochs=1)
    resumed = tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
                       **{**TINY, "epochs": 2})
    assert first.run == resumed.run == tr.load_checkpoint(tmp_path / "a" / "checkpoint.npz").run
    assert [r["run"] for r in tr.read_metrics(tmp_path / "a")] == [first.run] * 2
    again = tiny_run(tmp_path, "a", epochs=1, overwrite=True)
    assert again.run != first.run
    assert [r["run"] for r in tr.read_metrics(tmp_path / "a")] == [again.run]
