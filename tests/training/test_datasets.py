"""A run's data (`mgrit_gru.training.datasets`): .npz files and frame folders, one class refused
for training (not for evaluation), and the cuda backend refused under MPI before any work."""
import numpy as np
import pytest
from _training_runs import NPZ_RUN, TINY, tiny_run

from mgrit_gru import training as tr
from mgrit_gru.tools import cli


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


class _TwoRanks:
    """What train() asks of a communicator before any message: its size and rank."""

    def Get_size(self):
        return 2

    def Get_rank(self):
        return 0


def test_the_cuda_backend_under_mpi_is_refused_before_any_work(tmp_path):
    """It used to fail at the first step (NotImplementedError tracebacks on every rank), after
    the run folder and its first files were written."""
    tiny_run(tmp_path, "a", epochs=1)
    for call in (lambda: tr.train(out=str(tmp_path / "run"), comm=_TwoRanks(), progress=False,
                                  verbose=False, **{**TINY, "backend": "cuda"}),
                 lambda: tr.evaluate_checkpoint(tmp_path / "a" / "checkpoint.npz",
                                                comm=_TwoRanks(), backend="cuda")):
        with pytest.raises(ValueError, match="--backend cuda runs on one GPU in one process, "
                                             "but this run has 2 MPI ranks"):
            call()
    assert not (tmp_path / "run").exists()


def test_npz_labels_with_a_gap_are_refused_naming_the_missing_ones(tmp_path, capsys):
    """Labels {0, 1, 2, 7} built an 8-class model with 4 outputs no sequence is labelled with,
    without a word; they are refused (not remapped: the labels are the user's meaning)."""
    x = np.random.default_rng(0).normal(size=(24, 8, 2))
    np.savez(tmp_path / "gap.npz", x=x, y=np.array([0, 1, 2, 7] * 6))
    out = tmp_path / "r"
    assert cli.main(["train", "--data", f"npz:{tmp_path / 'gap.npz'}", *NPZ_RUN,
                     "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"mgrit-gru: error: {tmp_path / 'gap.npz'}: labels run to 7 but only 4 distinct values "
        "occur (none is 3, 4, 5, 6); the model would get 8 outputs, 4 of them for classes "
        "without an example. Relabel them 0..K-1 (np.unique(y, return_inverse=True)[1])\n")
    assert not out.exists()


def test_values_beyond_float32_are_named_with_the_file_not_as_nan(tmp_path, capsys):
    """Finite values beyond float32's range became Inf in the float32 batches: "x contains NaN
    or Inf" named neither the file nor --dtype."""
    x = np.random.default_rng(0).normal(size=(24, 8, 2))
    x[3, 2, 1] = 1e39
    np.savez(tmp_path / "big.npz", x=x, y=np.arange(24) % 2)
    out = tmp_path / "r"
    assert cli.main(["train", "--data", f"npz:{tmp_path / 'big.npz'}", "--dtype", "float32",
                     *NPZ_RUN, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"mgrit-gru: error: {tmp_path / 'big.npz'}: 'x' holds values up to 1e+39, beyond the "
        "range of float32 (dtype float32, up to 3.4e+38): rescale the data or train in "
        "float64\n")
    assert not out.exists()
