"""The run folder (`mgrit_gru.training.runfolder`): what --overwrite and --resume may do to a
run, and that a run resumes only on the data it was trained on (moved, changed, or recorded by
an older version)."""
import json
import os
import shutil

import numpy as np
import pytest
from _training_runs import NPZ_RUN, TINY, ckpt_arrays, tiny_run, write_npz

from mgrit_gru import training as tr
from mgrit_gru.tools import cli
from mgrit_gru.training import loop
from mgrit_gru.training.checkpoint import digest
from mgrit_gru.training.data import frame_listing, npz_checksums


# ----------------------------------------------------------------------------------------------
# overwrite and resume
# ----------------------------------------------------------------------------------------------
def test_refuses_to_overwrite_or_resume_with_other_options(tmp_path):
    tiny_run(tmp_path, "a", epochs=1)
    with pytest.raises(ValueError, match="--resume"):
        tiny_run(tmp_path, "a", epochs=1)
    with pytest.raises(ValueError, match="hidden"):
        tr.train(out=str(tmp_path / "a"), resume=True, progress=False, verbose=False,
                 **{**TINY, "hidden": 7})
    with pytest.raises(ValueError, match="no checkpoint"):
        tr.train(out=str(tmp_path / "b"), resume=True, progress=False, **TINY)


def test_a_refused_or_failed_overwrite_keeps_the_old_run_and_a_fresh_one_replaces_it(tmp_path):
    """--overwrite with options the sequence cannot take (too deep; a relax list of the wrong
    length, once checked only at the first solve) is refused before any file changes; a run
    that fails in its first epoch leaves the old run whole (it used to delete the checkpoint
    and empty the metrics at the start); a run with an epoch replaces checkpoint and metrics
    both, so a later --resume cannot continue the old run under the new metrics."""
    tiny_run(tmp_path, "a", epochs=2)
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


# ----------------------------------------------------------------------------------------------
# the run's data: resumed only on the same data
# ----------------------------------------------------------------------------------------------
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
    write_npz(data)
    assert cli.main(["train", "--data", f"npz:{data}", *NPZ_RUN, "--epochs", "1",
                     "--out", str(out)]) == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    write_npz(data, **change)
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
    write_npz(data)                                         # the same data again: resumes
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert [r["epoch"] for r in tr.read_metrics(out)] == [1, 2]


def test_a_moved_npz_file_resumes_from_its_new_path_and_other_data_is_refused(tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "d.npz")
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
    write_npz(tmp_path / "other.npz", seed=1)              # same shapes, other values
    assert cli.main(["train", "--out", "moved", "--resume", "--epochs", "2",
                     "--data", "npz:other.npz"]) == 2
    assert (f"{tmp_path / 'other.npz'} holds other data than the run was trained on "
            f"({tmp_path / 'd.npz'}): x.npy CRC32") in capsys.readouterr().err
    assert tr.evaluate_checkpoint(ck, data="npz:other.npz")[2] == 24   # other data: all of it
    assert cli.main(["train", "--out", "moved", "--resume", "--epochs", "2",
                     "--data", "npz:d_moved.npz"]) == 0
    assert tr.load_checkpoint(ck).config.data == f"npz:{tmp_path / 'd_moved.npz'}"   # new path
    a, b = ckpt_arrays(ck), ckpt_arrays(tmp_path / "whole" / "checkpoint.npz")
    for k in b:                                              # = the uninterrupted run
        if k not in ("meta.config", "meta.run", "meta.digest"):
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


def test_a_format_1_checkpoint_evaluates_and_resume_says_why_it_cannot(tmp_path, capsys):
    """Checkpoints of earlier versions (format 1: no run identity, no digest, no meta.data, no
    iteration records, num_classes 4 for npz data) load and evaluate as before; --resume
    refuses them, saying why and what to do, and changes no file."""
    write_npz(tmp_path / "d.npz", C=3)
    out = tmp_path / "r"
    assert cli.main(["train", "--data", f"npz:{tmp_path / 'd.npz'}", *NPZ_RUN, "--epochs", "1",
                     "--out", str(out)]) == 0
    ck = tr.load_checkpoint(out / "checkpoint.npz")
    assert ck.config.num_classes == 3 and ck.format == tr.FORMAT == 2   # the data's, not 4
    assert ck.data == {"T": 16, "F": 2, "classes": 3, "sequences": 24,
                       "members": npz_checksums(tmp_path / "d.npz")}
    own = tr.evaluate_checkpoint(out / "checkpoint.npz")
    arrays = ckpt_arrays(out / "checkpoint.npz")            # as an earlier version wrote it
    for k in ("meta.data", "meta.run", "meta.digest", "steps.fwd_iters", "steps.bwd_iters"):
        del arrays[k]
    arrays["meta.format"] = np.array(1)
    arrays["meta.config"] = np.array(json.dumps({**ck.config.to_dict(), "num_classes": 4}))
    np.savez(out / "checkpoint.npz", **arrays)
    old = tr.load_checkpoint(out / "checkpoint.npz")
    assert (old.format, old.run, old.data) == (1, None, None) and "fwd_iters" not in old.steps
    assert tr.evaluate_checkpoint(out / "checkpoint.npz") == own
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"mgrit-gru: error: {out / 'checkpoint.npz'}: meta.format is 1: a checkpoint of an "
        "earlier version, without a run identity or a digest; it can be evaluated but not "
        "resumed (format 2): start the run afresh with --overwrite\n")
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_a_checkpoint_without_a_data_record_resumes_from_its_path_only(tmp_path):
    """`save_checkpoint` without ``data`` writes no meta.data: such a run resumes with nothing
    to compare, and a moved file cannot stand in for its own."""
    write_npz(tmp_path / "d.npz")
    small = dict(hidden=4, levels=2, cf=4, batch_size=8, progress=False, verbose=False)
    out = tmp_path / "r"
    tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(out), epochs=1, **small)
    arrays = ckpt_arrays(out / "checkpoint.npz")
    del arrays["meta.data"]
    arrays["meta.digest"] = np.array(digest(arrays))
    np.savez(out / "checkpoint.npz", **arrays)
    assert tr.load_checkpoint(out / "checkpoint.npz").data is None
    shutil.copytree(out, tmp_path / "copy")
    res = tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(out), resume=True, epochs=2,
                   **small)
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert tr.load_checkpoint(out / "checkpoint.npz").data["T"] == 16   # recorded from now on
    os.rename(tmp_path / "d.npz", tmp_path / "e.npz")
    with pytest.raises(ValueError, match=r"does not record what the data was \(no meta.data\), "
                                         "so it resumes on that path only: put the file back"):
        tr.train(data=f"npz:{tmp_path / 'd.npz'}", out=str(tmp_path / "copy"), resume=True,
                 epochs=2, **small)
    with pytest.raises(ValueError, match="options differ from the checkpoint's: data="):
        tr.train(data=f"npz:{tmp_path / 'e.npz'}", out=str(tmp_path / "copy"), resume=True,
                 epochs=2, **small)
