"""Data: synthetic tasks (determinism, and that the video task needs memory), batching, .npz
validation and time windows, frame-folder loading with its cache."""
import io
import os
import subprocess
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from mgrit_gru.training.data import (batches, frame_listing, load_frame_folder, load_npz, moving_objects,
                            noisy_sum_sign, npz_checksums, npz_shape, pulse_order, save_npz,
                            train_test_split)
from mgrit_gru.training.data import frames as frames_mod
from mgrit_gru.training.data.files import _read_rows


# ----------------------------------------------------------------------------------------------
# moving_objects
# ----------------------------------------------------------------------------------------------
def test_moving_objects_shapes_dtypes_determinism():
    x, y = moving_objects(8, 20, frame_size=12, num_classes=3, seed=5)
    assert x.shape == (8, 20, 144) and x.dtype == np.float32
    assert y.shape == (8,) and y.dtype == np.int64
    assert sorted(np.bincount(y, minlength=3)) == [2, 3, 3]  # balanced classes
    x2, y2 = moving_objects(8, 20, frame_size=12, num_classes=3, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = moving_objects(8, 20, frame_size=12, num_classes=3, seed=6)
    assert not np.array_equal(x, x3)
    x64, y64 = moving_objects(8, 20, frame_size=12, num_classes=3, seed=5, dtype=np.float64)
    assert x64.dtype == np.float64
    np.testing.assert_array_equal(y64, y)


def test_moving_objects_frames_are_a_blob_in_unit_range():
    x, _ = moving_objects(4, 6, noise=0.0)
    assert x.min() >= 0 and 0.9 < x.max() <= 1.0             # peak ~1, nothing negative
    assert np.all(x.max(axis=2) > 0.5)                       # every frame shows the blob
    long_x, _ = moving_objects(2, 4096)                      # long sequences are supported
    assert long_x.shape == (2, 4096, 256)


@pytest.mark.parametrize("kwargs, name", [({"n": 0}, "n"), ({"seq_len": -1}, "seq_len"),
                                          ({"num_classes": 1}, "num_classes"),
                                          ({"noise": -0.1}, "noise"), ({"dtype": np.int32}, "dtype")])
def test_moving_objects_bad_arguments(kwargs, name):
    args = {"n": 4, "seq_len": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        moving_objects(**args)


def circular_position(x, S=16):
    """Blob centre per frame on the torus, as angles (..., 2) = (column, row) phases."""
    f = x.reshape(*x.shape[:-1], S, S).astype(np.float64)
    w = np.exp(2j * np.pi * np.arange(S) / S)
    return np.stack([np.angle(f.sum(-2) @ w), np.angle(f.sum(-1) @ w)], axis=-1)


def displacement(x, start=0):
    """Summed wrapped phase steps from frame ``start`` on: the net motion, (N, 2)."""
    phi = circular_position(x[:, start:])
    return np.angle(np.exp(1j * np.diff(phi, axis=1))).sum(axis=1)


def probe_accuracy(features, y, C, n_train):
    """Least-squares linear probe on one-hot labels: test accuracy."""
    A = np.hstack([features, np.ones((len(y), 1))])
    W = np.linalg.lstsq(A[:n_train], np.eye(C)[y[:n_train]], rcond=None)[0]
    return np.mean((A[n_train:] @ W).argmax(1) == y[n_train:])


def test_moving_objects_needs_the_whole_sequence():
    """The class is readable from the motion over the whole sequence, not from the last frame
    and not from the last two frames: an honest check that a model needs memory."""
    x, y = moving_objects(600, 64, seed=1)
    n_train = 400                                            # chance = 0.25
    whole = probe_accuracy(displacement(x), y, 4, n_train)
    last_frame = probe_accuracy(x[:, -1].astype(np.float64), y, 4, n_train)
    last_pair = probe_accuracy(displacement(x, start=62), y, 4, n_train)
    assert whole > 0.95
    assert last_frame < 0.4
    assert last_pair < 0.4                                   # neighbouring frames: jitter wins
    # short videos: a blob started at a fixed place would give the class away here (~0.9)
    x16, y16 = moving_objects(600, 16, seed=2)
    assert probe_accuracy(x16[:, -1].astype(np.float64), y16, 4, n_train) < 0.4
    assert probe_accuracy(displacement(x16), y16, 4, n_train) > 0.7


# ----------------------------------------------------------------------------------------------
# small tasks
# ----------------------------------------------------------------------------------------------
def test_pulse_order_labels():
    x, y = pulse_order(200, 30, noise=0.0, seed=3)
    assert x.shape == (200, 30, 2) and x.dtype == np.float32 and y.dtype == np.int64
    t0, t1 = x[:, :, 0].argmax(1), x[:, :, 1].argmax(1)
    assert np.all(x.sum(axis=1) == 1)                        # one unit pulse per channel
    np.testing.assert_array_equal(y, (t0 < t1).astype(np.int64))
    assert abs(y.mean() - 0.5) < 0.01                        # balanced
    assert np.mean(np.minimum(t0, t1) < 15) > 0.5            # the first pulse is often early
    np.testing.assert_array_equal(pulse_order(200, 30, seed=3)[0], pulse_order(200, 30, seed=3)[0])


def test_noisy_sum_sign_labels():
    x, y = noisy_sum_sign(50, 40, seed=2)
    assert x.shape == (50, 40, 1)
    np.testing.assert_array_equal(y, (x.sum(axis=(1, 2), dtype=np.float64) > 0))


# ----------------------------------------------------------------------------------------------
# splitting and batching
# ----------------------------------------------------------------------------------------------
def test_train_test_split_partitions_deterministically():
    x = np.arange(10, dtype=float).reshape(10, 1, 1)
    y = np.arange(10)
    xtr, ytr, xte, yte = train_test_split(x, y, 0.3, seed=4)
    assert len(yte) == 3 and len(ytr) == 7
    assert sorted(np.concatenate([ytr, yte])) == list(range(10))
    np.testing.assert_array_equal(xte[:, 0, 0], yte)         # x and y stay paired
    np.testing.assert_array_equal(train_test_split(x, y, 0.3, seed=4)[3], yte)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, y, 1.0)


def test_batches_time_major_and_cover_everything():
    x = np.arange(7 * 3 * 2, dtype=float).reshape(7, 3, 2)
    y = np.arange(7)
    got = list(batches(x, y, 3, shuffle=True, seed=0))
    assert [b[0].shape for b in got] == [(3, 3, 2), (3, 3, 2), (3, 1, 2)]
    assert sorted(np.concatenate([b[1] for b in got])) == list(range(7))
    for xb, yb in got:                                       # (T, B, F) with the right sequences
        np.testing.assert_array_equal(xb, x[yb].transpose(1, 0, 2))
        assert xb.flags.c_contiguous
    again = [b[1] for b in batches(x, y, 3, seed=0)]
    assert all(np.array_equal(a, b[1]) for a, b in zip(again, got))
    ordered = np.concatenate([b[1] for b in batches(x, y, 3, shuffle=False)])
    np.testing.assert_array_equal(ordered, y)
    assert len(list(batches(x, y, 3, shuffle=False, drop_last=True))) == 2


# ----------------------------------------------------------------------------------------------
# .npz files
# ----------------------------------------------------------------------------------------------
def test_save_load_npz_round_trip(tmp_path):
    x, y = moving_objects(5, 7, frame_size=4, seed=0)
    path = tmp_path / "sub" / "data.npz"
    save_npz(path, x, y, class_names=np.array(["a", "b", "c", "d"]))
    assert os.listdir(tmp_path / "sub") == ["data.npz"]      # no temporary file left behind
    x2, y2 = load_npz(path)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    x3, _ = load_npz(path, dtype=np.float64)
    assert x3.dtype == np.float64


def test_load_npz_accepts_one_feature_per_step(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 5)), y=np.array([0, 1, 1]))
    x, y = load_npz(tmp_path / "d.npz")
    assert x.shape == (3, 5, 1) and y.dtype == np.int64


GOOD_X = np.zeros((3, 4, 2))
GOOD_Y = np.array([0, 1, 2])


def _nan_x():
    x = GOOD_X.copy()
    x[1, 2, 0] = np.nan
    return x


@pytest.mark.parametrize("arrays, kwargs, message", [
    ({"y": GOOD_Y}, {}, "missing array"),
    ({"x": GOOD_X}, {}, "missing array"),
    ({"x": np.zeros((3, 4, 2, 1)), "y": GOOD_Y}, {}, "shape \\(N, T, F\\)"),
    ({"x": np.zeros(3), "y": GOOD_Y}, {}, "shape \\(N, T, F\\)"),
    ({"x": GOOD_X, "y": GOOD_Y[:, None]}, {}, "'y' must have shape"),
    ({"x": GOOD_X, "y": np.array([0, 1])}, {}, "N = 3 sequences but 'y' has 2"),
    ({"x": _nan_x(), "y": GOOD_Y}, {}, "NaN or Inf .*sequence 1, step 2"),
    ({"x": GOOD_X + np.inf, "y": GOOD_Y}, {}, "NaN or Inf"),
    ({"x": GOOD_X, "y": np.array([0.0, 0.5, 1.0])}, {}, "integer class labels"),
    ({"x": GOOD_X, "y": np.array(["a", "b", "c"])}, {}, "integer class labels"),
    ({"x": GOOD_X, "y": np.array([0, -1, 2])}, {}, "negative"),
    ({"x": GOOD_X, "y": GOOD_Y}, {"num_classes": 2}, "out of range"),
    ({"x": np.zeros((0, 4, 2)), "y": np.zeros(0, int)}, {}, "empty"),
    ({"x": np.zeros((3, 0, 2)), "y": GOOD_Y}, {}, "empty"),
])
def test_load_npz_errors_name_file_and_problem(tmp_path, arrays, kwargs, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_npz(path, **kwargs)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("label", [0, 3])
def test_load_npz_refuses_one_class_unless_asked(tmp_path, label):
    """One class trained a 2-output model to nonsense accuracy; a file of one class's examples
    is still fine to save, and to load for evaluating a model on (min_classes=1)."""
    path = tmp_path / "one.npz"
    x, y = np.zeros((5, 4, 2)), np.full(5, label)
    save_npz(path, x, y)
    with pytest.raises(ValueError) as err:
        load_npz(path)
    assert str(err.value) == (f"{path}: 'y' has one class ({label}); a classifier needs labels "
                              "of at least 2 classes")
    with pytest.raises(ValueError, match="one class"):
        load_npz(path, time_window=(1, 3))                  # (the MPI ranks' way in)
    x2, y2 = load_npz(path, min_classes=1)
    np.testing.assert_array_equal(y2, y)
    np.savez(path, x=x, y=np.array([0, 1, 1, 0, 1]))
    assert load_npz(path)[1].tolist() == [0, 1, 1, 0, 1]     # two classes: the default's least
    with pytest.raises(ValueError, match=r"'y' has only 2 classes \(0, 1\); .* at least 3"):
        load_npz(path, min_classes=3)
    with pytest.raises(ValueError, match="min_classes must be a positive integer, got 0"):
        load_npz(path, min_classes=0)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_checksums_are_the_crc32_of_each_arrays_npy_bytes(tmp_path, save):
    x, y = np.arange(24.0).reshape(2, 3, 4), np.array([0, 1])
    save(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b"]))
    want = {}
    for name, a in (("x.npy", x), ("y.npy", y)):
        buf = io.BytesIO()
        np.save(buf, a)                                      # the bytes np.savez stores
        want[name] = [zlib.crc32(buf.getvalue()), len(buf.getvalue())]
    assert npz_checksums(tmp_path / "d.npz") == want         # compressed or not: the same
    x[1, 2, 3] += 1                                          # one value changed
    save(tmp_path / "d.npz", x=x, y=y)
    got = npz_checksums(tmp_path / "d.npz")
    assert got["y.npy"] == want["y.npy"] and got["x.npy"][0] != want["x.npy"][0]
    with pytest.raises(ValueError, match="no such file"):
        npz_checksums(tmp_path / "none.npz")


def test_load_npz_missing_or_corrupt_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_npz(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        load_npz(junk)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single.npy: is a single-array .npy"):
        load_npz(single)


# ----------------------------------------------------------------------------------------------
# .npz time windows: an MPI rank reads only its rows
# ----------------------------------------------------------------------------------------------
def _x_variants():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 12, 3))
    return {"float64": x, "float32": x.astype(np.float32), "int32 (to float64)":
            rng.integers(-9, 9, (5, 12, 3)).astype(np.int32), "2-D (one feature)": x[:, :, 0],
            "Fortran order (loaded whole)": np.asfortranarray(x)}


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("kind", list(_x_variants()))
def test_load_npz_time_window_is_the_whole_loads_rows(tmp_path, save, kind):
    x = _x_variants()[kind]
    path = tmp_path / "d.npz"
    save(path, x=x, y=np.array([0, 1, 0, 1, 2]))
    whole, y = load_npz(path)
    assert npz_shape(path) == x.shape
    for window in [(0, 12), (0, 1), (11, 12), (3, 8)]:
        part, y_part = load_npz(path, time_window=window)
        assert part.dtype == whole.dtype
        assert part.flags.c_contiguous or window == (0, 12)     # (the whole load: as stored)
        assert np.array_equal(part, whole[:, window[0]:window[1]]), window
        assert np.array_equal(y_part, y)
    part, _ = load_npz(path, time_window=(2, 5), dtype=np.float32)
    assert part.dtype == np.float32 and np.array_equal(part, whole[:, 2:5].astype(np.float32))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_load_npz_time_window_never_holds_the_whole_array(tmp_path, save):
    """numpy reports its buffers to tracemalloc: a window of 1/16 of the rows peaks far below
    the array's size (the whole load peaks above it), and npz_shape reads no data."""
    x = np.random.default_rng(1).standard_normal((32, 1024, 16))   # 4 MiB
    path = tmp_path / "big.npz"
    save(path, x=x, y=np.arange(32) % 2)

    def peak(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak(lambda: load_npz(path)) > x.nbytes
    assert peak(lambda: load_npz(path, time_window=(512, 576))) < x.nbytes / 8
    assert peak(lambda: npz_shape(path)) < x.nbytes / 32      # (a zlib buffer)


class _CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""
    n_read = 0

    def readinto(self, b):
        n = super().readinto(b)
        self.n_read += n or 0
        return n

    def read(self, size=-1):
        data = super().read(size)
        self.n_read += len(data)
        return data


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_time_window_of_a_stored_archive_reads_only_its_rows(tmp_path, save):
    """np.savez stores members uncompressed: the window's rows are reached by seeking in the file
    (Python 3.11's ZipExtFile.seek would read everything it skips), so a window of 64 of 4096
    rows reads about 1/64 of the file; a compressed archive must stream through all of it."""
    x = np.random.default_rng(2).standard_normal((4, 4096, 8))     # 1 MiB
    path = tmp_path / "d.npz"
    save(path, x=x, y=np.arange(4) % 2)
    with _CountingFile(path) as raw, zipfile.ZipFile(raw) as zf:
        before = raw.n_read                                  # (the central directory)
        part = _read_rows(zf, 2048, 2112)
        n_read = raw.n_read - before
    assert np.array_equal(part, x[:, 2048:2112])
    if save is np.savez:
        assert part.nbytes <= n_read < part.nbytes + 4096, n_read
    else:
        assert n_read > os.path.getsize(path) / 2, n_read


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_time_window_of_an_x_shorter_than_its_header_is_an_error(tmp_path, compression):
    """A reader that trusted the header would return misaligned rows (or, seeking in the
    archive's own file, the next member's bytes) as data; the window load reports the short
    member instead, as the whole load does."""
    x = np.arange(2 * 8 * 3, dtype=np.float64).reshape(2, 8, 3)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False,
                                               "shape": (2, 10, 3)})     # says 10 rows, has 8
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("x.npy", head.getvalue() + x.tobytes())
        with zf.open("y.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"short.npz: not a readable .npz file \(x.npy is shorter"):
        load_npz(path, time_window=(1, 3))
    with pytest.raises(ValueError, match=r"short.npz: cannot read"):
        load_npz(path)


def test_load_npz_dtype_is_a_float_dtype_whose_range_holds_x(tmp_path):
    """float16/int/complex were accepted, and a value beyond float32 became Inf after the
    finiteness check had passed."""
    path = tmp_path / "d.npz"
    np.savez(path, x=np.full((2, 4, 1), 1e10), y=np.array([0, 1]))
    assert load_npz(path, dtype=np.float32)[0].dtype == np.float32     # 1e10 fits float32
    np.savez(path, x=np.full((2, 4, 1), 1e40), y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"d.npz: 'x' holds values beyond the range of float32 "
                                         r"\(up to 1e\+40\)"):
        load_npz(path, dtype=np.float32)
    for bad in (np.float16, int, complex, "foo"):
        with pytest.raises(ValueError, match="dtype must be float32 or float64"):
            load_npz(path, dtype=bad)


@pytest.mark.parametrize("make", [lambda s: moving_objects(2, 4, frame_size=4, seed=s),
                                  lambda s: pulse_order(2, 8, seed=s),
                                  lambda s: noisy_sum_sign(2, 8, seed=s),
                                  lambda s: train_test_split(np.zeros((4, 2, 1)),
                                                             np.arange(4) % 2, seed=s)])
@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_data_seeds_are_named(make, seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        make(seed)


@pytest.mark.parametrize("window", [(3, 3), (-1, 4), (0, 13), (5, 2), (1.5, 4), "ab", (1, 2, 3),
                                    None.__class__])
def test_load_npz_bad_time_window_is_named(tmp_path, window):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 12, 1)), y=np.array([0, 1]))
    with pytest.raises(ValueError, match="time_window"):
        load_npz(path, time_window=window)


def test_load_npz_time_window_checks_its_rows_and_names_the_step_in_the_file(tmp_path):
    x = np.zeros((3, 12, 2))
    x[1, 6, 0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"nan.npz: 'x' contains NaN or Inf \(first at "
                                         r"sequence 1, step 6, feature 0\)"):
        load_npz(path, time_window=(4, 8))
    assert load_npz(path, time_window=(7, 12))[0].shape == (3, 5, 2)   # not our rows: not ours
    for arrays, message in [({"x": x[:, :4]}, "missing array"),
                            ({"x": x[:, :4], "y": np.array([0, 1])}, "N = 3 sequences"),
                            ({"x": np.zeros(3), "y": np.array([0, 1, 2])}, "shape \\(N, T, F\\)"),
                            ({"x": x[:, :4], "y": np.array([0.5, 1, 2])}, "integer class")]:
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=message):
            load_npz(path, time_window=(1, 3))
    with pytest.raises(ValueError, match="no such file"):
        npz_shape(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz: not a readable .npz"):
        load_npz(tmp_path / "junk.npz", time_window=(0, 1))


# ----------------------------------------------------------------------------------------------
# frame folders
# ----------------------------------------------------------------------------------------------
def write_video(folder, values, mode="L", names=None):
    """Frames of constant intensity ``values[k]`` (0..255) as 8x6 PNGs."""
    folder.mkdir(parents=True)
    for k, v in enumerate(values):
        name = names[k] if names else f"frame{k + 1}.png"    # frame1 .. frame10: natural order
        Image.new(mode, (6, 8), v if mode == "L" else (v, 0, 255 - v)).save(folder / name)


@pytest.fixture
def video_root(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "run" / "v1", [10 * k for k in range(10)])     # 10 frames
    write_video(root / "run" / "v2", [200, 210])                      # 2 frames
    write_video(root / "jump" / "a", [50, 60, 70, 80])                # 4 frames
    return root


def test_frame_folder_shapes_labels_resampling(video_root):
    x, y, names = load_frame_folder(video_root, seq_len=4, size=(4, 3))
    assert names == ["jump", "run"]                          # sorted class folders
    np.testing.assert_array_equal(y, [0, 1, 1])
    assert x.shape == (3, 4, 12) and x.dtype == np.float32
    level = x.mean(axis=2) * 255                             # constant frames: the intensity
    np.testing.assert_allclose(level[0], [50, 60, 70, 80], atol=1e-3)       # same length
    # 10 -> 4 frames: floor((t + 0.5) * 10 / 4) = 1, 3, 6, 8 (natural order: frame10 is last)
    np.testing.assert_allclose(level[1], [10, 30, 60, 80], atol=1e-3)
    np.testing.assert_allclose(level[2], [200, 200, 210, 210], atol=1e-3)  # 2 -> 4: repeated


def test_frame_folder_rgb_and_projection(video_root):
    x_rgb, _, _ = load_frame_folder(video_root, seq_len=3, size=(4, 3), grayscale=False)
    assert x_rgb.shape == (3, 3, 36)
    x_raw, _, _ = load_frame_folder(video_root, seq_len=3, size=(4, 3))
    x_p, _, _ = load_frame_folder(video_root, seq_len=3, size=(4, 3), projection_dim=5, seed=7)
    assert x_p.shape == (3, 3, 5)
    P = frames_mod._projection(12, 5, 7)
    np.testing.assert_allclose(x_p, x_raw @ P, rtol=1e-6)
    # exact: pixel times P·2^20 summed as Python integers, one correctly rounded division
    # (Python's int / int), then float32: the loader's bits, whatever order its BLAS sums in
    pixels = np.rint(x_raw.astype(np.float64) * 255).astype(np.int64)   # the decoded uint8
    Q = np.rint(P * 2 ** 20).astype(np.int64)
    assert np.array_equal(Q / 2 ** 20, P)                   # P lies on the 2^-20 grid
    want = np.array([[[sum(int(a) * int(b) for a, b in zip(pixels[n, t], Q[:, j])) / (255 * 2 ** 20)
                       for j in range(5)] for t in range(3)] for n in range(3)], np.float32)
    np.testing.assert_array_equal(x_p, want)
    x_p2, _, _ = load_frame_folder(video_root, seq_len=3, size=(4, 3), projection_dim=5, seed=7)
    np.testing.assert_array_equal(x_p, x_p2)                 # fixed by the seed


def test_frame_folder_cache_decodes_once(video_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    x1, y1, n1 = load_frame_folder(video_root, seq_len=5, cache_dir=cache)
    assert len(os.listdir(cache)) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a frame despite the cache")

    monkeypatch.setattr(frames_mod, "_decode_frame", no_decoding)
    x2, y2, n2 = load_frame_folder(video_root, seq_len=5, cache_dir=cache)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert n1 == n2
    with pytest.raises(AssertionError, match="despite"):     # other options: a new entry
        load_frame_folder(video_root, seq_len=6, cache_dir=cache)
    frame = video_root / "jump" / "a" / "frame1.png"
    st = frame.stat()
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # a changed file
    with pytest.raises(AssertionError, match="despite"):
        load_frame_folder(video_root, seq_len=5, cache_dir=cache)


@pytest.mark.parametrize("junk", [b"PK\x03\x04 cut off", b"not a zip file at all"])
def test_an_unreadable_cache_entry_is_decoded_again(video_root, tmp_path, junk):
    """A truncated or foreign cache file: a warning naming it, the videos decoded again, the
    entry rewritten (not a zipfile traceback)."""
    cache = tmp_path / "cache"
    x1, y1, _ = load_frame_folder(video_root, seq_len=5, cache_dir=cache)
    (entry,) = cache.iterdir()
    entry.write_bytes(junk)
    with pytest.warns(UserWarning, match=f"{entry.name}: unreadable cache"):
        x2, y2, _ = load_frame_folder(video_root, seq_len=5, cache_dir=cache)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    with np.load(entry) as f:                                # rewritten whole
        np.testing.assert_array_equal(f["x"], x1)


def test_frame_folder_of_one_class_is_refused_unless_asked(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "run" / "v1", [10, 20])
    write_video(root / "run" / "v2", [30])
    with pytest.raises(ValueError) as err:
        load_frame_folder(root, seq_len=2, size=(2, 2))
    assert str(err.value) == (f"{root}: one class folder (run); a classifier needs at least 2 "
                              "classes (one folder per class)")
    x, y, names = load_frame_folder(root, seq_len=2, size=(2, 2), min_classes=1)
    assert names == ["run"] and y.tolist() == [0, 0] and x.shape == (2, 2, 4)


def test_frame_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_frame_folder(tmp_path / "missing", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        load_frame_folder(tmp_path / "empty", 4)
    root = tmp_path / "r1"
    (root / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="cls: class folder has no video folders"):
        load_frame_folder(root, 4)
    (root / "cls" / "vid").mkdir()
    (root / "cls" / "vid" / "notes.txt").write_text("not a frame")
    with pytest.raises(ValueError, match="vid: video folder has no frame images"):
        load_frame_folder(root, 4)
    root2 = tmp_path / "r2"
    write_video(root2 / "cls" / "vid", [1, 2, 3])
    (root2 / "cls" / "vid" / "frame2.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="frame2.png: cannot read image"):
        load_frame_folder(root2, 3, min_classes=1)
    with pytest.raises(ValueError, match="seq_len"):
        load_frame_folder(root2, 0)


@pytest.mark.parametrize("projection_dim", [None, 5])
def test_frame_folder_time_window_decodes_only_its_frames(video_root, monkeypatch,
                                                          projection_dim):
    opts = dict(seq_len=8, size=(4, 3), projection_dim=projection_dim, seed=2)
    x, y, names = load_frame_folder(video_root, **opts)
    decode = frames_mod._decode_frame
    for window in [(0, 8), (0, 1), (7, 8), (2, 6)]:
        decoded = []
        monkeypatch.setattr(frames_mod, "_decode_frame",
                            lambda p, *a: decoded.append(p) or decode(p, *a))
        xw, yw, nw = load_frame_folder(video_root, time_window=window, **opts)
        assert xw.shape == (3, window[1] - window[0], x.shape[2]) and xw.flags.c_contiguous
        np.testing.assert_array_equal(xw, x[:, window[0]:window[1]])
        assert np.array_equal(yw, y) and nw == names
        # only the source frames of the window's steps, each once
        want = {(v, int(j)) for v in range(3) for j in
                frames_mod.resample_indices((4, 10, 2)[v], 8)[window[0]:window[1]]}
        assert len(decoded) == len(set(decoded)) == len(want), window
    with pytest.raises(ValueError, match="time_window"):
        load_frame_folder(video_root, time_window=(3, 9), **opts)


def test_frame_listing_sees_paths_and_sizes_not_times(video_root):
    base = frame_listing(video_root)
    assert base["frames"] == 10 + 2 + 4 and len(base["sha256"]) == 16
    assert frame_listing(str(video_root) + os.sep) == base  # (the same folder, spelled otherwise)
    f = video_root / "run" / "v2" / "frame1.png"
    os.utime(f, (1, 1))                                      # extracted again: same data
    assert frame_listing(video_root) == base
    data = f.read_bytes()
    f.write_bytes(data + b"\0")                             # rewritten with another size
    assert frame_listing(video_root)["sha256"] != base["sha256"]
    f.write_bytes(data)
    assert frame_listing(video_root) == base
    os.rename(f, f.with_name("frame0.png"))                  # renamed: another order of frames
    assert frame_listing(video_root)["sha256"] != base["sha256"]
    os.rename(f.with_name("frame0.png"), f)
    write_video(video_root / "run" / "v3", [5])              # a video added
    assert frame_listing(video_root)["frames"] == 17
    with pytest.raises(ValueError, match="does not exist"):
        frame_listing(video_root / "nowhere")

@pytest.mark.parametrize("coretype", ["Haswell", "Sandybridge"])
def test_frame_folder_time_window_same_bits_under_other_blas_kernels(video_root, coretype):
    # CI's machine picked another OpenBLAS kernel than ours and a projected window differed from
    # the full load by 1 ulp (a float32 (N, T, F) @ (F, d) sums in another order for another T).
    # Forcing these kernels reproduced that here; each frame is now projected alone, in float64.
    script = ("import sys, numpy as np\n"
              "from mgrit_gru.training.data import load_frame_folder\n"
              "opts = dict(seq_len=8, size=(4, 3), projection_dim=5, seed=2)\n"
              "x = load_frame_folder(sys.argv[1], **opts)[0]\n"
              "for w in [(0, 1), (7, 8), (2, 6), (1, 8)]:\n"
              "    xw = load_frame_folder(sys.argv[1], time_window=w, **opts)[0]\n"
              "    assert np.array_equal(xw, x[:, w[0]:w[1]]), (w, xw - x[:, w[0]:w[1]])\n")
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype)    # (ignored by a BLAS that is not OpenBLAS)
    run = subprocess.run([sys.executable, "-c", script, str(video_root)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_frame_folder_time_window_and_the_cache(video_root, tmp_path, monkeypatch):
    """A windowed miss writes the whole entry (the next runs' ranks read their rows of it); a
    windowed hit decodes nothing and reads only its rows of the cached x."""
    cache = tmp_path / "cache"
    x, y, _ = load_frame_folder(video_root, seq_len=6)
    xw, _, _ = load_frame_folder(video_root, seq_len=6, cache_dir=cache, time_window=(1, 4))
    np.testing.assert_array_equal(xw, x[:, 1:4])
    (entry,) = cache.iterdir()
    with np.load(entry) as f:
        np.testing.assert_array_equal(f["x"], x)                # the whole set, not the window

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a frame despite the cache")
    monkeypatch.setattr(frames_mod, "_decode_frame", no_decoding)
    read = []
    stream = frames_mod._read_rows
    monkeypatch.setattr(frames_mod, "_read_rows", lambda zf, a, b: read.append((a, b)) or
                        stream(zf, a, b))
    xw2, yw2, _ = load_frame_folder(video_root, seq_len=6, cache_dir=cache, time_window=(4, 6))
    np.testing.assert_array_equal(xw2, x[:, 4:6])
    assert np.array_equal(yw2, y) and read == [(4, 6)]


@pytest.mark.parametrize("n, T, window", [(5, 100, (13, 57)), (300, 70, (40, 70)), (4, 9, (0, 1))])
def test_moving_objects_time_window_is_a_slice_of_the_full_data(n, T, window):
    """A rank renders only its frames; they are exactly those rows of the whole data set
    (noise chunks outside the window are drawn and dropped, so the random stream is the same)."""
    x, y = moving_objects(n, T, seed=3)
    xw, yw = moving_objects(n, T, seed=3, time_window=window)
    assert xw.shape == (n, window[1] - window[0], x.shape[2])
    assert np.array_equal(xw, x[:, window[0]:window[1]]) and np.array_equal(yw, y)
    with pytest.raises(ValueError, match="time_window"):
        moving_objects(n, T, seed=3, time_window=(5, T + 1))
    with pytest.raises(ValueError, match="time_window must be a pair of integers"):
        moving_objects(n, T, seed=3, time_window=(0.5, 1))    # int() would have cut it to 0


# tests added after a mutation audit: each one killed a mutant the suite let through


def test_batches_shuffle_changes_order():
    x = np.zeros((20, 1, 1)); y = np.arange(20)
    got = np.concatenate([b for _, b in batches(x, y, 5, seed=0)])
    assert not np.array_equal(got, y)
    assert not np.array_equal(got, np.concatenate([b for _, b in batches(x, y, 5, seed=1)]))


def test_split_rounds_and_keeps_one():
    x = np.zeros((10, 1, 1)); y = np.arange(10)
    assert len(train_test_split(x, y, 0.29)[3]) == 3
    assert len(train_test_split(x, y, 0.01)[3]) == 1
    assert len(train_test_split(x, y, 0.0)[3]) == 0


def test_save_npz_extra_and_atomic(tmp_path, monkeypatch):
    p = tmp_path / "d.npz"
    save_npz(p, np.zeros((2, 3, 1)), [0, 1], class_names=np.array(["a", "b"]))
    with np.load(p) as f:
        assert list(f["class_names"]) == ["a", "b"]
    before = p.read_bytes()
    def boom(f, **kw):
        f.write(b"partial"); raise RuntimeError("crash")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        save_npz(p, np.ones((2, 3, 1)), [1, 0])
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["d.npz"]


def test_load_npz_int_x_and_float_y(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(6).reshape(2, 3), y=np.array([0.0, 1.0]))
    x, y = load_npz(tmp_path / "d.npz")
    assert x.dtype == np.float64 and y.dtype == np.int64 and list(y) == [0, 1]


def test_frames_size_is_height_width_and_rgb_channel_order(tmp_path):
    v = tmp_path / "r" / "c" / "v"; v.mkdir(parents=True)
    a = np.zeros((8, 6, 3), np.uint8); a[:4, :, 0] = 255; a[:, :, 2] = 100   # top half red
    Image.fromarray(a).save(v / "f1.png")
    x, _, _ = load_frame_folder(tmp_path / "r", 1, size=(2, 3), grayscale=False, min_classes=1)
    img = x[0, 0].reshape(2, 3, 3)
    assert np.all(img[0, :, 0] > 0.7) and np.all(img[1, :, 0] < 0.3)
    np.testing.assert_allclose(img[..., 2], 100 / 255, atol=0.02)


def test_frames_class_folders_natural_order(tmp_path):
    for c in ("class10", "class2"):
        v = tmp_path / c / "v"; v.mkdir(parents=True); Image.new("L", (2, 2), 5).save(v / "f.png")
    assert load_frame_folder(tmp_path, 1, size=(2, 2))[2] == ["class2", "class10"]


def test_projection_seed_and_scale():
    P7, P8 = frames_mod._projection(400, 50, 7), frames_mod._projection(400, 50, 8)
    assert not np.array_equal(P7, P8)
    v = np.ones(400, np.float32)
    assert np.linalg.norm(v @ P7) / np.linalg.norm(v) == pytest.approx(1.0, rel=0.25)


def test_projection_refuses_sums_float64_cannot_hold_exactly():
    P = np.full((2, 1), 2.0 ** 25)                           # P·2^20 · 255 · 2 pixels > 2^53
    with pytest.raises(ValueError, match="projection_dim: 2 pixel features per frame are too "
                                         "many to project exactly"):
        frames_mod._integer_projection(P)
    Q = frames_mod._integer_projection(np.full((2, 1), 2.0 ** 12))   # 2 · 255 · 2^32 < 2^53
    big = frames_mod._project(np.full((1, 2), 255, np.uint8), Q)
    assert big[0, 0] == 2 ** 13                              # inside: exact

def test_cache_key_depends_on_every_option(tmp_path, monkeypatch):
    v = tmp_path / "r" / "c" / "v"; v.mkdir(parents=True); Image.new("RGB", (4, 4)).save(v / "f.png")
    cache = tmp_path / "cache"
    for kw in ({}, {"grayscale": False}, {"size": (2, 2)}, {"projection_dim": 3}, {"projection_dim": 3, "seed": 1}):
        load_frame_folder(tmp_path / "r", 2, cache_dir=cache, min_classes=1, **kw)
    assert len(os.listdir(cache)) == 5


def test_moving_objects_class0_moves_right():
    x, y = moving_objects(8, 2, num_classes=4, noise=0.0, walk=0.0, jitter=0.0, speed=2.0, seed=0)
    f = x.reshape(8, 2, 16, 16)
    i = int(np.argmax(y == 0)); j = int(np.argmax(y == 1))
    col = lambda fr: np.angle(fr.sum(0) @ np.exp(2j*np.pi*np.arange(16)/16)) * 16 / (2*np.pi)
    row = lambda fr: np.angle(fr.sum(1) @ np.exp(2j*np.pi*np.arange(16)/16)) * 16 / (2*np.pi)
    d = lambda a, b: (b - a + 8) % 16 - 8
    assert 1.4 < d(col(f[i, 0]), col(f[i, 1])) < 2.6 and abs(d(row(f[i, 0]), row(f[i, 1]))) < 0.1
    assert 1.4 < d(row(f[j, 0]), row(f[j, 1])) < 2.6 and abs(d(col(f[j, 0]), col(f[j, 1]))) < 0.1
