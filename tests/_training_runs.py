"""What the training tests share: a tiny synthetic run (in Python and on the command line), a
small .npz data file and the options of a quick run on it, and a checkpoint's arrays."""
import numpy as np

from mgrit_gru import training as tr

# a tiny synthetic video run: 4x4 frames, 20 frames, 48 videos (and its like on the command line)
TINY = dict(data="synthetic", seq_len=20, num_sequences=48, frame_size=4, hidden=6,
            batch_size=16, levels=2, cf=4, fwd_iters=2, bwd_iters=1, epochs=2, seed=3,
            dtype="float64")
TINY_CLI = ["--data", "synthetic", "--seq-len", "20", "--num-sequences", "48", "--frame-size",
            "4", "--hidden", "6", "--batch-size", "16", "--levels", "2", "--cf", "4",
            "--epochs", "2", "--seed", "3", "--no-progress"]

# npz runs: a small two-class file, and the options of a quick run on it
NPZ_RUN = ["--hidden", "4", "--levels", "2", "--cf", "4", "--batch-size", "8", "--no-progress",
           "--quiet"]


def ckpt_arrays(path):
    """Every array of a checkpoint file, by name."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def tiny_run(tmp_path, name, **kw):
    """train() the TINY run (with ``kw`` changed) into ``tmp_path / name``, quietly."""
    return tr.train(out=str(tmp_path / name), progress=False, verbose=False, **{**TINY, **kw})


def write_npz(path, N=24, T=16, F=2, C=2, seed=0):
    """An .npz data file of N random sequences (T steps, F features) in C classes."""
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(N, T, F)), y=np.arange(N) % C)
