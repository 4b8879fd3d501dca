""".npz data files (`mgrit_gru.training.data.files`): saving and loading, validation with named
errors, checksums, and time windows (an MPI rank reads only its rows)."""
import io
import os
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from mgrit_gru.training.data import load_npz, moving_objects, npz_checksums, npz_shape, save_npz
from mgrit_gru.training.data.files import _read_rows


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


def test_save_npz_extra_and_atomic(tmp_path, monkeypatch):
    """save_npz stores extra arrays alongside x and y, and writes atomically: a write that fails
    half-way leaves the old file as it was and no temporary file."""
    p = tmp_path / "d.npz"
    save_npz(p, np.zeros((2, 3, 1)), [0, 1], class_names=np.array(["a", "b"]))
    with np.load(p) as f:
        assert list(f["class_names"]) == ["a", "b"]
    before = p.read_bytes()

    def boom(f, **kw):                                       # writes some bytes, then dies
        f.write(b"partial")
        raise RuntimeError("crash")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        save_npz(p, np.ones((2, 3, 1)), [1, 0])
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["d.npz"]


def test_load_npz_accepts_one_feature_per_step(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 5)), y=np.array([0, 1, 1]))
    x, y = load_npz(tmp_path / "d.npz")
    assert x.shape == (3, 5, 1) and y.dtype == np.int64


def test_load_npz_int_x_and_float_y(tmp_path):
    """An integer x loads as float64, and float labels that are whole numbers as int64."""
    np.savez(tmp_path / "d.npz", x=np.arange(6).reshape(2, 3), y=np.array([0.0, 1.0]))
    x, y = load_npz(tmp_path / "d.npz")
    assert x.dtype == np.float64
    assert y.dtype == np.int64
    assert list(y) == [0, 1]


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
    with pytest.raises(ValueError, match=f"^{tmp_path}: a folder, not an .npz file \\(a folder "
                                         "of frame images is data frames:ROOT\\)$"):
        load_npz(tmp_path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        load_npz(junk)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single.npy: is a single-array .npy"):
        load_npz(single)


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
