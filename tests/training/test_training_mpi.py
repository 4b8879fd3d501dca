"""Training under a real MPI launcher: two ranks train like one process, each rank reads or
decodes only its time rows of the data, and an error on any rank ends every rank, said once.

Skipped where no ``mpiexec`` (or mpi4py) is installed; every launch has a timeout.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _training_runs import TINY_CLI, ckpt_arrays

from mgrit_gru import training as tr
from mgrit_gru.tools import cli


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


# ----------------------------------------------------------------------------------------------
# two ranks = one process; an error on any rank ends every rank
# ----------------------------------------------------------------------------------------------
@needs_mpi
def test_two_ranks_train_like_one_process(tmp_path):
    one = str(tmp_path / "one")
    assert cli.main(["train", *TINY_CLI, "--out", one]) == 0
    two = str(tmp_path / "two")
    proc = _mpirun(2, ["-m", "mgrit_gru.tools.cli", "train", *TINY_CLI, "--out", two])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("epoch 2/2") == 1               # rank 0 alone prints
    assert "2 rank(s)" in proc.stdout
    a, b = ckpt_arrays(Path(one) / "checkpoint.npz"), ckpt_arrays(Path(two) / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        if k in ("meta.run", "meta.digest"):                # two runs: two identities
            continue
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


def _mpmd(*commands, timeout=60):
    """``mpiexec -n 1 python -m mgrit_gru A : -n 1 python -m mgrit_gru B ...`` (MPMD)."""
    cmd = [_mpiexec()]
    for i, args in enumerate(commands):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable, "-m", "mgrit_gru", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout} s:\n{e.stdout}\n{e.stderr}")


@needs_mpi
def test_ranks_started_with_other_options_or_commands_are_refused_once(tmp_path):
    """An MPMD launch whose ranks got another --lr trained two different models with exit 0
    (only the solver options were compared); train on one rank and evaluate on the other ended
    in a TypeError traceback. Both are refused before any file is read or written."""
    run = tmp_path / "run"
    train = ["train", *TINY_CLI, "--out", str(run), "--quiet"]
    proc = _mpmd(train, [*train, "--lr", "0.1"])
    assert proc.returncode != 0
    assert proc.stderr.count("mgrit-gru: error:") == 1, proc.stderr
    assert ("mgrit-gru: error: the MPI ranks of train differ in their options: --lr (rank 0: "
            "None, rank 1: 0.1): start every rank with the same options") in proc.stderr
    assert "Traceback" not in proc.stderr and not run.exists()
    assert cli.main([*train, "--epochs", "1"]) == 0          # a run to evaluate
    before = {f: (run / f).read_bytes() for f in os.listdir(run)}
    proc = _mpmd([*train, "--resume"], ["evaluate", str(run)])
    assert proc.returncode != 0
    assert proc.stderr.count("mgrit-gru: error:") == 1, proc.stderr
    assert ("the MPI ranks run different commands (rank 0: 'train', rank 1: 'evaluate')"
            in proc.stderr) and "Traceback" not in proc.stderr
    assert {f: (run / f).read_bytes() for f in os.listdir(run)} == before


# ----------------------------------------------------------------------------------------------
# each rank holds, reads or decodes only its rows
# ----------------------------------------------------------------------------------------------
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
    def __init__(self, c):
        self.c = c

    def __getattr__(self, name):
        return getattr(self.c, name)

    def Split(self, *a):
        made.append(self.c.Split(*a))
        return made[-1]


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


RANKS_SCRIPT = r'''
import json, sys, numpy as np
from mpi4py import MPI
import mgrit_gru.training.data.frames as frames
import mgrit_gru.training.data.hmdb51 as hmdb51
from mgrit_gru.training import TrainConfig, prepare_data
comm = MPI.COMM_WORLD
kind, root, cache = sys.argv[1], sys.argv[2], None if sys.argv[3] == "none" else sys.argv[3]
done = []                  # the frames this rank decodes (frames:) or resizes (hmdb51:)
module, name = (frames, "_decode_frame") if kind == "frames" else (hmdb51, "_resize")
real = getattr(module, name)
setattr(module, name, lambda *a: done.append(1) or real(*a))
cfg = TrainConfig(data=f"{kind}:{root}", seq_len=40, frame_size=4, levels=3, cf=4,
                  test_fraction=0.25, cache_dir=cache)
d = prepare_data(cfg, comm)
mine = len(done)
comm.Barrier()
full = prepare_data(TrainConfig.from_dict(dict(cfg.to_dict(), cache_dir=None)), None)
n = d.x_train.shape[1]
same = bool(np.array_equal(d.x_train, full.x_train[:, d.start:d.start + n])
            and np.array_equal(d.x_test, full.x_test[:, d.start:d.start + n])
            and np.array_equal(d.y_train, full.y_train) and len(d.y_test) > 0)
rows = comm.gather([d.start, n, same, mine], root=0)
if comm.rank == 0:
    print(json.dumps({"rows": rows, "all": len(done) - mine}))
'''


def _ranks_load(tmp_path, kind, root, cached):
    """Run RANKS_SCRIPT on two ranks: ((start, rows, same as one process, frames done) per
    rank, frames the one-process load did)."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    proc = _mpirun(2, [str(script), kind, str(root),
                       str(tmp_path / "cache") if cached else "none"])
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    return rec["rows"], rec["all"]


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
    rows, everything = _ranks_load(tmp_path, "frames", root, cached)
    (s0, n0, same0, dec0), (s1, n1, same1, dec1) = rows
    assert same0 and same1 and s0 == 0 and s1 + n1 == 40 and n0 < 40 and n1 < 40
    assert everything == 8 * 40                              # the one-process load: 8 x 40
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



@needs_mpi
@pytest.mark.parametrize("cached", [False, True])
def test_hmdb51_ranks_featurise_only_their_frames(tmp_path, cached):
    """HMDB51 .avi videos under MPI: without a cache each rank resizes only the frames its own
    steps show; with one, rank 0 does every frame once (to write the entry) and rank 1 none.
    Either way the rows equal those of the one-process data."""
    pytest.importorskip("av")
    from _real_data import make_hmdb51
    marks = {c: {f"{c}{v}.avi": ((1, 1, 2, 2)[v],) for v in range(4)} for c in ("a", "b")}
    lengths = {f"{c}{v}.avi": 40 for c in ("a", "b") for v in range(4)}
    root = make_hmdb51(tmp_path / "hmdb51", marks, lengths=lengths, splits=(1,))
    rows, everything = _ranks_load(tmp_path, "hmdb51", root, cached)
    (s0, n0, same0, dec0), (s1, n1, same1, dec1) = rows
    assert same0 and same1 and s0 == 0 and s1 + n1 == 40 and n0 < 40 and n1 < 40
    assert everything == 8 * 40                 # 40 frames -> 40 steps, one frame each
    if cached:
        assert dec0 == 8 * 40 and dec1 == 0
    else:
        assert dec0 == 8 * n0 and dec1 == 8 * n1
