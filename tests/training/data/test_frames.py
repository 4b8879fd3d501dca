"""Frame folders (`mgrit_gru.training.data.frames`): videos as folders of images, resampled,
projected, cached, and read by time window."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mgrit_gru.training.data import frame_listing, load_frame_folder
from mgrit_gru.training.data import frames as frames_mod


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


# ----------------------------------------------------------------------------------------------
# loading: classes, resampling, colour and size
# ----------------------------------------------------------------------------------------------
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


def test_frames_size_is_height_width_and_rgb_channel_order(tmp_path):
    """size is (height, width), and an RGB frame's features are its pixels row by row, each
    pixel's channels in the order R, G, B."""
    v = tmp_path / "r" / "c" / "v"
    v.mkdir(parents=True)
    a = np.zeros((8, 6, 3), np.uint8)
    a[:4, :, 0] = 255                                        # top half red
    a[:, :, 2] = 100
    Image.fromarray(a).save(v / "f1.png")
    x, _, _ = load_frame_folder(tmp_path / "r", 1, size=(2, 3), grayscale=False, min_classes=1)
    img = x[0, 0].reshape(2, 3, 3)
    assert np.all(img[0, :, 0] > 0.7) and np.all(img[1, :, 0] < 0.3)
    np.testing.assert_allclose(img[..., 2], 100 / 255, atol=0.02)


def test_frames_class_folders_natural_order(tmp_path):
    """Class folders are numbered in natural order: class2 before class10."""
    for c in ("class10", "class2"):
        v = tmp_path / c / "v"
        v.mkdir(parents=True)
        Image.new("L", (2, 2), 5).save(v / "f.png")
    assert load_frame_folder(tmp_path, 1, size=(2, 2))[2] == ["class2", "class10"]


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


def test_an_entry_that_cannot_be_read_is_named_not_skipped(video_root, tmp_path):
    """A link to a missing frame or video, or a folder named like a frame, used to be skipped
    without a word: the data changed unseen (another resampling, a video fewer)."""
    vid = video_root / "run" / "v1"
    os.symlink(tmp_path / "gone.png", vid / "frame11.png")
    with pytest.raises(ValueError, match=f"^{vid / 'frame11.png'}: a link to .*gone.png, which "
                                         "does not exist: restore its target or remove the link"):
        load_frame_folder(video_root, 4)
    os.remove(vid / "frame11.png")
    (vid / "frame11.png").mkdir()
    with pytest.raises(ValueError, match=f"^{vid / 'frame11.png'}: named like a frame image but "
                                         "a folder: rename or remove it"):
        frame_listing(video_root)
    os.rmdir(vid / "frame11.png")
    os.symlink(tmp_path / "elsewhere", video_root / "jump" / "b")
    with pytest.raises(ValueError, match=r"jump/b: a link to .*elsewhere, which does not exist"):
        load_frame_folder(video_root, 4)
    os.remove(video_root / "jump" / "b")
    (vid / "readme.txt").write_text("other files are still ignored")
    assert load_frame_folder(video_root, 4)[0].shape[0] == 3


def test_a_cache_dir_that_is_a_file_is_named(video_root, tmp_path):
    (tmp_path / "afile").write_text("")
    for cache, message in ((tmp_path / "afile", "is a file, not a folder"),
                           (tmp_path / "afile" / "sub", f"is in {tmp_path / 'afile'}, a file, "
                                                        "not a folder")):
        with pytest.raises(ValueError, match=f"^cache_dir {cache} {message}$"):
            load_frame_folder(video_root, 4, cache_dir=cache)


# ----------------------------------------------------------------------------------------------
# the projection
# ----------------------------------------------------------------------------------------------
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


def test_projection_seed_and_scale():
    """The projection is drawn from its seed (another seed, another matrix) and keeps a
    frame's norm on average (scaled by 1 / sqrt(projection_dim))."""
    P7 = frames_mod._projection(400, 50, 7)
    P8 = frames_mod._projection(400, 50, 8)
    assert not np.array_equal(P7, P8)
    v = np.ones(400, np.float32)
    assert np.linalg.norm(v @ P7) / np.linalg.norm(v) == pytest.approx(1.0, rel=0.25)


def test_projection_refuses_sums_float64_cannot_hold_exactly():
    """A projection whose integer sums (pixel times P * 2^20) could pass 2^53, above which
    float64 does not hold every integer, is refused by name; one inside sums exactly."""
    P = np.full((2, 1), 2.0 ** 25)                           # P·2^20 · 255 · 2 pixels > 2^53
    with pytest.raises(ValueError, match="projection_dim: 2 pixel features per frame are too "
                                         "many to project exactly"):
        frames_mod._integer_projection(P)
    Q = frames_mod._integer_projection(np.full((2, 1), 2.0 ** 12))   # 2 · 255 · 2^32 < 2^53
    big = frames_mod._project(np.full((1, 2), 255, np.uint8), Q)
    assert big[0, 0] == 2 ** 13                              # inside: exact


# ----------------------------------------------------------------------------------------------
# the cache
# ----------------------------------------------------------------------------------------------
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


def test_cache_key_depends_on_every_option(tmp_path, monkeypatch):
    """Each option that changes the loaded data (grayscale, size, projection_dim, seed) gets
    its own cache entry."""
    v = tmp_path / "r" / "c" / "v"
    v.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(v / "f.png")
    cache = tmp_path / "cache"
    for kw in ({}, {"grayscale": False}, {"size": (2, 2)}, {"projection_dim": 3},
               {"projection_dim": 3, "seed": 1}):
        load_frame_folder(tmp_path / "r", 2, cache_dir=cache, min_classes=1, **kw)
    assert len(os.listdir(cache)) == 5


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


# ----------------------------------------------------------------------------------------------
# time windows: an MPI rank decodes only its frames
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# the listing a checkpoint records
# ----------------------------------------------------------------------------------------------
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
