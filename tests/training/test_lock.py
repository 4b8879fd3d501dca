"""A run folder holds one run at a time, whole (`mgrit_gru.training.lock`, `checkpoint.RunWriter`):
a second run on a locked folder is refused at once with the holder named; a killed holder
blocks nothing and its leftovers are tidied; an --overwrite run killed at any moment leaves the
old run or the new one whole, never a mix.

The runs that are stopped or killed are forked processes (POSIX only): a fork starts in
milliseconds, with the test's imports, so a kill lands in the run, not in Python's start-up.
"""
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import replace

import pytest
from _training_runs import TINY, TINY_CLI

from mgrit_gru import training as tr
from mgrit_gru.tools import cli
from mgrit_gru.training import loop
from mgrit_gru.training.lock import LOCK, run_folder_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"),
                                reason="forks the runs it stops")
FORK = multiprocessing.get_context("fork") if hasattr(os, "fork") else None


def _files(folder):
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))}


def _cli_child(args, plots=True):
    if not plots:                                            # the run's writes alone: the
        loop.plot_run = lambda *a, **kw: ()                  # kills land among them
    sys.exit(cli.main(args))


def _paused_child(args, ready, go):
    """``mgrit-gru ARGS``, stopped in its first training step until ``go`` is set."""
    step = loop.train_step

    def paused(*a, **kw):
        ready.set()
        go.wait(60)
        return step(*a, **kw)
    loop.train_step = paused
    _cli_child(args)


def _start_paused(out, extra=()):
    ready, go = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_paused_child, args=(
        ["train", *TINY_CLI, "--out", str(out), "--quiet", *extra], ready, go))
    child.start()
    assert ready.wait(60), "the run did not reach its first step"
    return child, go


def _resumable(out):
    """The checkpoint in ``out``, after checking that it loads (digest and arrays) and that the
    folder allows --resume (lock, metrics line by line, data): a resume with no epoch left."""
    ck = tr.load_checkpoint(out / "checkpoint.npz")
    res = tr.train(replace(ck.config, epochs=ck.epoch), out=str(out), resume=True, plots=False,
                   progress=False, verbose=False)
    assert [r["epoch"] for r in res.history] == list(range(1, ck.epoch + 1))
    assert {r["run"] for r in res.history} == {ck.run} and res.run == ck.run
    return ck


# ----------------------------------------------------------------------------------------------
# one run at a time
# ----------------------------------------------------------------------------------------------
def test_a_second_run_on_a_held_folder_is_refused_at_once_and_the_first_ends_whole(tmp_path,
                                                                                  capsys):
    out = tmp_path / "run"
    first, go = _start_paused(out)
    try:
        before = _files(out)
        for extra in ([], ["--overwrite"], ["--resume"]):
            t0 = time.perf_counter()
            assert cli.main(["train", *TINY_CLI, "--out", str(out), "--quiet", *extra]) == 2
            assert time.perf_counter() - t0 < 10             # refused, not queued
            err = capsys.readouterr().err
            assert err.startswith(f"mgrit-gru: error: {out}: run folder in use by another run "
                                  f"(pid {first.pid} on host {socket.gethostname()} since ")
            assert err.endswith("wait for it to end, or use another out folder\n")
            assert err.count("\n") == 1
        with pytest.raises(ValueError, match=f"pid {first.pid}"):
            tr.train(out=str(out), overwrite=True, progress=False, verbose=False, **TINY)
        assert _files(out) == before                         # the refused runs touched nothing
    finally:
        go.set()
        first.join(60)
    assert first.exitcode == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curves.png", "metrics.jsonl",
                                       "residuals.png"]      # the lock file removed at the end
    assert _resumable(out).epoch == 2


def test_another_thread_of_the_same_process_is_refused(tmp_path):
    held, done = threading.Event(), threading.Event()

    def hold():
        with run_folder_lock(tmp_path / "run"):
            held.set()
            done.wait(30)
    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(ValueError, match="in use by another thread of this process"):
            tr.train(out=str(tmp_path / "run"), progress=False, verbose=False, **TINY)
    finally:
        done.set()
        t.join()
    assert not (tmp_path / "run").exists()                   # made for the lock, then removed


def test_a_killed_holder_blocks_nothing_and_its_leftovers_are_tidied(tmp_path):
    """The OS releases a killed holder's lock; the next run takes it, rewrites the holder, and
    removes the temporary files a killed write leaves (only this package's)."""
    out = tmp_path / "run"
    first, go = _start_paused(out)
    os.kill(first.pid, signal.SIGKILL)
    first.join(60)
    assert (out / LOCK).exists()                             # left behind by the killed run
    (out / ".checkpoint.npz.k2x_9a0b.tmp").write_bytes(b"PK\x03\x04 half")
    (out / ".metrics.jsonl.q7w1e2r3.tmp").write_text('{"epoch": 1')
    (out / ".metrics.next.jsonl").write_text('{"epoch": 1, "run": "0123"}\n')
    (out / "notes.tmp").write_text("mine")                   # not this package's: kept
    assert cli.main(["train", *TINY_CLI, "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curves.png", "metrics.jsonl",
                                       "notes.tmp", "residuals.png"]
    assert _resumable(out).epoch == 2


# ----------------------------------------------------------------------------------------------
# whole or nothing: killed at any moment
# ----------------------------------------------------------------------------------------------
def _killed_at_call(n, count, kw):
    """`train` in a child that ends (as SIGKILL would: no clean-up) before its ``n``-th call of
    a function that makes a write durable or visible (fsync, replace, remove); ``n`` 0 never.
    ``count`` receives the number of calls made."""
    def counted(fn):
        def call(*a, **k):
            count.value += 1
            if count.value == n:
                os._exit(137)
            return fn(*a, **k)
        return call
    for name in ("fsync", "replace", "remove"):
        setattr(os, name, counted(getattr(os, name)))
    tr.train(progress=False, verbose=False, plots=False, **kw)


def test_an_overwrite_killed_before_any_write_step_leaves_a_whole_run(tmp_path):
    """Killed before each fsync, rename and removal of an --overwrite run in turn: the folder
    then holds the old run (its files byte for byte) or the new one, and resumes either."""
    old = tmp_path / "old"
    tr.train(out=str(old), progress=False, verbose=False, plots=False, **{**TINY, "epochs": 1})
    old_run, old_files = tr.load_checkpoint(old / "checkpoint.npz").run, _files(old)
    out = tmp_path / "run"
    kw = dict(out=str(out), overwrite=True, **{**TINY, "seed": 5})
    count = FORK.Value("i", 0)
    shutil.copytree(old, out)
    child = FORK.Process(target=_killed_at_call, args=(0, count, kw))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and count.value >= 8          # staged metrics, checkpoints, ...
    new_runs, calls = set(), count.value
    for n in range(1, calls + 1):
        shutil.rmtree(out)
        shutil.copytree(old, out)
        count.value = 0
        child = FORK.Process(target=_killed_at_call, args=(n, count, kw))
        child.start()
        child.join(60)
        assert child.exitcode == 137, n
        ck = _resumable(out)
        if ck.run == old_run:
            assert _files(out) == old_files, n               # the old run, untouched
        else:
            new_runs.add(ck.run)
    assert new_runs                                          # some kills came after the commit


def test_an_overwrite_killed_at_random_moments_always_leaves_a_loadable_run(tmp_path):
    """SIGKILL at random moments of ``mgrit-gru train --overwrite`` (12 tries, each run over
    the last's folder; no plots, so that the kills land among the epochs' writes): a checkpoint,
    the old or the new, is always there, matches its digest, and the folder resumes."""
    out = tmp_path / "run"
    assert cli.main(["train", *TINY_CLI, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    args = lambda seed: ["train", *TINY_CLI, "--epochs", "3", "--seed", str(seed), "--overwrite",
                         "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    child = FORK.Process(target=_cli_child, args=(args(0), False))
    child.start()
    child.join(60)
    whole = time.perf_counter() - t0                         # a whole run, to aim the kills
    assert child.exitcode == 0
    rng, runs = random.Random(1), [_resumable(out).run]
    for seed in range(1, 13):
        child = FORK.Process(target=_cli_child, args=(args(seed), False))
        child.start()
        time.sleep(rng.uniform(0, whole))
        os.kill(child.pid, signal.SIGKILL)
        child.join(60)
        ck = _resumable(out)
        assert ck.run == runs[-1] or ck.run not in runs      # the last run's, or the new one
        runs.append(ck.run)
