"""UCI-HAR as distributed, on a miniature "UCI HAR Dataset" folder written here in the shipped
layout: nine channel files per split under "Inertial Signals", labels 1..6 in y_<split>.txt."""
import numpy as np
import pytest

from mgrit_gru.tools import cli
from mgrit_gru.training import load_checkpoint
from mgrit_gru.training.data import load_uci_har
from _real_data import write_uci_har

T = 8


@pytest.fixture
def har(tmp_path):
    root = tmp_path / "UCI HAR Dataset"
    data = write_uci_har(root, 12, 6, T)
    return root, data["train"], data["test"]


def test_a_split_reads_as_windows_of_the_nine_channels_in_order(har):
    root, (x_tr, y_tr), (x_te, y_te) = har
    x, y = load_uci_har(root, "train", dtype=np.float64)
    assert x.shape == (12, T, 9) and y.dtype == np.int64
    np.testing.assert_allclose(x, x_tr, rtol=1e-7)           # channel c is x[:, :, c]
    assert np.array_equal(y, y_tr - 1)                       # activities 1..6 -> classes 0..5
    x, y = load_uci_har(root, "test", time_window=(2, 5), dtype=np.float64)
    np.testing.assert_allclose(x, x_te[:, 2:5], rtol=1e-7)


@pytest.mark.parametrize("damage,message", [
    (lambda r: (r / "train" / "Inertial Signals" / "body_gyro_y_train.txt").unlink(),
     "body_gyro_y_train.txt: no such file"),
    (lambda r: np.savetxt(r / "train" / "y_train.txt", [1, 2, 7] * 4, fmt="%d"),
     "y_train.txt: labels must be one integer 1..6"),
    (lambda r: np.savetxt(r / "train" / "Inertial Signals" / "total_acc_z_train.txt",
                          np.zeros((11, T))), "total_acc_z_train.txt: 11 rows, but"),
    (lambda r: np.savetxt(r / "train" / "Inertial Signals" / "body_acc_y_train.txt",
                          np.zeros((12, T + 1))), "body_acc_y_train.txt: rows of 9 steps"),
])
def test_a_damaged_file_is_named_with_what_is_wrong(har, damage, message):
    root = har[0]
    damage(root)
    with pytest.raises(ValueError, match=message):
        load_uci_har(root, "train")


def test_train_uses_the_given_split_with_9_inputs_and_6_classes(har, tmp_path, capsys):
    root = har[0]
    out = tmp_path / "run"
    assert cli.main(["train", "--data", f"uci-har:{root}", "--hidden", "4", "--epochs", "1",
                     "--levels", "2", "--cf", "2", "--batch-size", "6", "--out", str(out),
                     "--no-progress"]) == 0
    assert "12 train / 6 test windows of 8 steps x 9 channels, 6 activities" in \
        capsys.readouterr().out
    ck = load_checkpoint(out / "checkpoint.npz")
    assert ck.params["weight_ih_l0"].shape == (12, 9) and ck.params["weight_out"].shape == (6, 4)


@pytest.mark.parametrize("flags,message", [
    (["--seq-len", "16"], "windows have T = 8 steps but seq_len = 16"),
    (["--test-fraction", "0.3"], "--test-fraction (only --data"),
])
def test_options_that_do_not_fit_are_refused(har, tmp_path, capsys, flags, message):
    root = har[0]
    assert cli.main(["train", "--data", f"uci-har:{root}", "--out", str(tmp_path / "r"),
                     *flags]) == 2
    assert message in capsys.readouterr().err
