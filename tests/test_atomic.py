"""Atomic writes: the complete new file or the old one, with an ordinary file's mode."""
import os
import stat

import numpy as np
import pytest

from mgrit_gru.atomic import atomic_write, save_figure
from mgrit_gru.training.data import atomic_savez


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_get_the_umask_mode_not_mkstemps_private_one(tmp_path, umask_022):
    with atomic_write(tmp_path / "a.txt") as f:
        f.write("hello\n")
    atomic_savez(tmp_path / "b.npz", x=np.arange(3))
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    assert _mode(tmp_path / "a.txt") == 0o644 and _mode(tmp_path / "b.npz") == 0o644
    with np.load(tmp_path / "b.npz") as f:
        np.testing.assert_array_equal(f["x"], np.arange(3))


def test_atomic_mode_follows_other_umask(tmp_path):
    """The new file's mode is the umask's (0o600 under umask 0o077), not a fixed one."""
    old = os.umask(0o077)
    try:
        with atomic_write(tmp_path / "o") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "o").st_mode) == 0o600


def test_atomic_temp_in_target_folder_and_synced(tmp_path, monkeypatch):
    """The data goes to a temporary file named after the target in the target's folder (a
    rename within one file system is atomic), fsync'ed once with all of its bytes."""
    seen = []
    real = os.fsync

    def fsync(fd):                                           # the file's size when synced
        seen.append(os.fstat(fd).st_size)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_write(tmp_path / "o.txt") as f:
        f.write("abc")
        assert [n for n in os.listdir(tmp_path) if n.startswith(".o.txt.")]
    assert seen == [3]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_write(path) as f:
            f.write("half of the new")
            raise RuntimeError("crash (simulated)")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_cleans_up_on_keyboardinterrupt(tmp_path):
    """Ctrl-C inside the block (a KeyboardInterrupt, not an Exception) also removes the
    temporary file and creates no target."""
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "o.txt"):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_save_figure_writes_the_format_of_the_extension(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "p.png", dpi=50)
    save_figure(fig, tmp_path / "p.svg")
    plt.close(fig)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "p.svg").read_bytes()[:400]
    assert sorted(os.listdir(tmp_path)) == ["p.png", "p.svg"]


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        with atomic_write("x", "a"):
            pass
