"""HMDB51 from its .avi files and official split files (`mgrit_gru.training.data.hmdb51`),
on tiny videos the tests write in the release's layout."""
import os

import numpy as np
import pytest

av = pytest.importorskip("av")

from mgrit_gru.training.data import hmdb51 as hmdb51_mod  # noqa: E402
from mgrit_gru.training.data import load_hmdb51, hmdb51_listing  # noqa: E402
from mgrit_gru.training.data.frames import resample_indices  # noqa: E402

from _real_data import gradient_frames, make_hmdb51, write_avi  # noqa: E402

# marks of (split 1, split 2, split 3) per video: 1 = train, 2 = test, 0 = neither
MARKS = {
    "wave": {"w_a.avi": (1, 2, 1), "w_b.avi": (2, 1, 1), "w_c.avi": (1, 1, 2), "w_d.avi": (0, 1, 2)},
    "run": {"r_1.avi": (1, 1, 1), "r_2.avi": (2, 0, 1), "r_10.avi": (1, 2, 2)},
    "clap": {"c_x.avi": (2, 1, 1), "c_y.avi": (1, 2, 0)},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_hmdb51(tmp_path_factory.mktemp("hmdb") / "hmdb51", MARKS)


def direct(path, seq_len, size=(4, 6)):
    """A video's features read the plain way: decode every frame with PyAV, take frame
    floor((t + 0.5) n / T) for step t, resize it with Pillow (bilinear), grey, / 255."""
    from PIL import Image
    with av.open(str(path)) as c:
        frames = [f.to_image() for f in c.decode(video=0)]
    n = len(frames)
    rows = []
    for t in range(seq_len):
        im = frames[min(int((t + 0.5) * n / seq_len), n - 1)].convert("L")
        rows.append(np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR),
                               np.float32).reshape(-1) / np.float32(255))
    return np.stack(rows)


def expected(root, split, mark):
    """(class index, path) of the videos marked ``mark`` in ``split``, class then name order."""
    classes = ["clap", "run", "wave"]
    names = {"run": ["r_1.avi", "r_2.avi", "r_10.avi"]}      # natural order: r_2 before r_10
    return [(label, os.path.join(root, c, v)) for label, c in enumerate(classes)
            for v in names.get(c, sorted(MARKS[c])) if MARKS[c][v][split - 1] == mark]


# ----------------------------------------------------------------------------------------------
# the splits and the frames
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", [1, 2, 3])
def test_each_split_trains_on_videos_marked_1_and_tests_on_those_marked_2(root, split):
    d = load_hmdb51(root, seq_len=5, split=split, size=(4, 6))
    assert d.class_names == ["clap", "run", "wave"]
    for x, y, mark in ((d.x_train, d.y_train, 1), (d.x_test, d.y_test, 2)):
        want = expected(root, split, mark)
        assert x.shape == (len(want), 5, 24) and x.dtype == np.float32
        np.testing.assert_array_equal(y, [label for label, _ in want])
        for xi, (_, path) in zip(x, want):                   # each one is that very video
            np.testing.assert_array_equal(xi, direct(path, 5))
    n_zero = sum(m[split - 1] == 0 for v in MARKS.values() for m in v.values())
    assert d.left_out == n_zero
    assert d.x_train.base is not None and d.x_train.base is d.x_test.base   # held once


def test_frame_sampling_picks_the_frames_of_the_formula(tmp_path):
    """Lossless video whose frame k is grey level 20 k: 7 frames -> T = 4 shows frames
    floor((t + 0.5) 7 / 4) = 0, 2, 4, 6; 3 frames -> T = 5 shows 0, 0, 1, 2, 2."""
    root = tmp_path / "r"
    for cls, n in (("a", 7), ("b", 3)):
        frames = np.repeat((20 * np.arange(n, dtype=np.uint8))[:, None, None, None], 3, axis=3)
        write_avi(root / cls / "v.avi", np.broadcast_to(frames, (n, 8, 8, 3)), codec="ffv1")
        (root / "testTrainMulti_7030_splits").mkdir(exist_ok=True)
        (root / "testTrainMulti_7030_splits" / f"{cls}_test_split1.txt").write_text("v.avi 1\n")
    d = load_hmdb51(root, seq_len=4, size=(2, 2))
    np.testing.assert_allclose(d.x_train[0].mean(axis=1) * 255, [0, 40, 80, 120], atol=2.5)
    np.testing.assert_array_equal(resample_indices(7, 4), [0, 2, 4, 6])
    d = load_hmdb51(root, seq_len=5, size=(2, 2))
    np.testing.assert_allclose(d.x_train[1].mean(axis=1) * 255, [0, 0, 20, 40, 40], atol=2.5)


def test_time_windows_are_the_whole_load_cut_and_touch_only_their_frames(root, monkeypatch):
    whole = load_hmdb51(root, seq_len=9, size=(4, 6))
    resized = []
    real = hmdb51_mod._resize
    monkeypatch.setattr(hmdb51_mod, "_resize", lambda *a: resized.append(1) or real(*a))
    parts = [load_hmdb51(root, seq_len=9, size=(4, 6), time_window=w)
             for w in ((0, 2), (2, 6), (6, 9))]
    np.testing.assert_array_equal(np.concatenate([p.x_train for p in parts], axis=1),
                                  whole.x_train)
    np.testing.assert_array_equal(np.concatenate([p.x_test for p in parts], axis=1),
                                  whole.x_test)
    # every window resized only the distinct frames its own steps show
    n_frames = [len(hmdb51_mod.decode_video(p)) for _, p in
                expected(root, 1, 1) + expected(root, 1, 2)]
    want = sum(len(np.unique(resample_indices(n, 9)[a:b])) for n in n_frames
               for a, b in ((0, 2), (2, 6), (6, 9)))
    assert len(resized) == want


def test_the_cache_decodes_once_and_serves_windows(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_hmdb51(root, seq_len=6, size=(4, 6), cache_dir=cache)
    assert len(list(cache.glob("hmdb51-*.npz"))) == 1

    def refuse(path):
        raise AssertionError(f"decoded {path} again")
    monkeypatch.setattr(hmdb51_mod, "decode_video", refuse)
    again = load_hmdb51(root, seq_len=6, size=(4, 6), cache_dir=cache)
    part = load_hmdb51(root, seq_len=6, size=(4, 6), cache_dir=cache, time_window=(2, 5))
    for a, b in ((first.x_train, again.x_train), (first.x_test, again.x_test),
                 (first.x_train[:, 2:5], part.x_train), (first.x_test[:, 2:5], part.x_test)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.y_test, part.y_test)
    assert again.class_names == first.class_names
    with pytest.raises(AssertionError, match="decoded"):     # another split: another entry
        load_hmdb51(root, seq_len=6, split=2, size=(4, 6), cache_dir=cache)


def test_a_changed_video_or_mark_is_decoded_afresh(tmp_path):
    root = make_hmdb51(tmp_path / "h", {"a": {"1.avi": (1,), "2.avi": (2,)},
                                       "b": {"3.avi": (1,), "4.avi": (2,)}}, splits=(1,))
    cache = tmp_path / "c"
    load_hmdb51(root, 4, size=(4, 6), cache_dir=cache)
    write_avi(os.path.join(root, "a", "1.avi"), gradient_frames(5, seed=99))
    d = load_hmdb51(root, 4, size=(4, 6), cache_dir=cache)
    np.testing.assert_array_equal(d.x_train[0], direct(os.path.join(root, "a", "1.avi"), 4))
    with open(os.path.join(root, "testTrainMulti_7030_splits", "b_test_split1.txt"), "w") as f:
        f.write("3.avi 2\n4.avi 1\n")
    d = load_hmdb51(root, 4, size=(4, 6), cache_dir=cache)
    np.testing.assert_array_equal(d.x_train[1], direct(os.path.join(root, "b", "4.avi"), 4))
    assert len(list(cache.glob("*.npz"))) == 3


def test_listing_sees_names_sizes_and_marks(tmp_path):
    root = make_hmdb51(tmp_path / "h", {"a": {"1.avi": (1,), "2.avi": (2,)},
                                       "b": {"3.avi": (1,), "4.avi": (0,)}}, splits=(1,))
    before = hmdb51_listing(root, 1)
    assert before["videos"] == 3
    split_b = os.path.join(root, "testTrainMulti_7030_splits", "b_test_split1.txt")
    with open(split_b, "w") as f:
        f.write("3.avi 1\n4.avi 2\n")
    assert hmdb51_listing(root, 1)["videos"] == 4
    both = hmdb51_listing(root, 1)
    with open(split_b, "w") as f:
        f.write("3.avi 2\n4.avi 1\n")                       # the same videos, marks swapped
    swapped = hmdb51_listing(root, 1)
    assert swapped["videos"] == 4 and swapped["sha256"] != both["sha256"]
    with open(os.path.join(root, "a", "1.avi"), "ab") as f:  # a video's size changes
        f.write(b"\0")
    assert hmdb51_listing(root, 1)["sha256"] != swapped["sha256"]


def test_splits_may_live_elsewhere(tmp_path):
    elsewhere = tmp_path / "splits"
    root = make_hmdb51(tmp_path / "h", {"a": {"1.avi": (1,)}, "b": {"2.avi": (1,)}},
                       splits=(2,), splits_dir=str(elsewhere))      # (marks of split 2 only)
    d = load_hmdb51(root, 3, split=2, splits_dir=elsewhere, size=(4, 6))
    assert d.x_train.shape[0] == 2 and d.x_test.shape[0] == 0
    os.makedirs(os.path.join(root, "testTrainMulti_7030_splits"))     # the usual folder too:
    d = load_hmdb51(root, 3, split=2, splits_dir=elsewhere, size=(4, 6))   # still no class
    assert d.class_names == ["a", "b"]
    with pytest.raises(ValueError, match="testTrainMulti_7030_splits/a_test_split2.txt: no such"):
        load_hmdb51(root, 3, split=2, size=(4, 6))


# ----------------------------------------------------------------------------------------------
# bad files: named, with what is wrong
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path):
    return make_hmdb51(tmp_path / "h", {"a": {"1.avi": (1,), "2.avi": (2,)},
                                       "b": {"3.avi": (1,), "4.avi": (2,)}}, splits=(1,))


def _break_video(root, how):
    path = os.path.join(root, "b", "3.avi")
    data = open(path, "rb").read()
    if how == "truncated":                                   # 40 frames, the last ones cut
        write_avi(path, gradient_frames(40, seed=3))
        data = open(path, "rb").read()
        data = data[:int(len(data) * 0.8)]
    elif how == "not a video":
        data = b"this is not a video file\n" * 20
    elif how == "no frames":
        import av
        os.remove(path)
        with av.open(path, "w", format="avi") as c:          # a header, no frame
            s = c.add_stream("mpeg4", rate=30)
            s.width, s.height = 32, 24
            c.start_encoding()
        return path
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("how, message", [
    ("truncated", r"truncated or damaged: \d+ frames decode of the 40 its header lists"),
    ("not a video", "cannot read video"),
    ("no frames", "video has no frames"),
])
def test_a_bad_video_is_named(small, how, message):
    path = _break_video(small, how)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        load_hmdb51(small, 4, size=(4, 6))


def test_a_video_without_a_video_stream_is_named(small):
    path = os.path.join(small, "a", "2.avi")
    os.remove(path)
    with av.open(path, "w", format="avi") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate = 8000
        for p in list(s.encode(f)) + list(s.encode()):
            c.mux(p)
    with pytest.raises(ValueError, match=f"{path}: no video stream"):
        load_hmdb51(small, 4, size=(4, 6))


@pytest.mark.parametrize("lines, message", [
    ("3.avi 1\n5.avi 2\n", r"b_test_split1.txt, line 2: names 5.avi, which is not in .*/b"),
    ("3.avi 1\n3.avi 2\n", "line 2: 3.avi is named twice"),
    ("3.avi 1\n4.avi 3\n", r"line 2: expected '<video>.avi <0\|1\|2>'"),
    ("3.avi\n", "line 1: expected"),
    ("3.avi 2\n4.avi 0\n", "class b has no training video"),
])
def test_a_bad_split_file_is_named_with_the_line(small, lines, message):
    with open(os.path.join(small, "testTrainMulti_7030_splits", "b_test_split1.txt"), "w") as f:
        f.write(lines)
    with pytest.raises(ValueError, match=message):
        load_hmdb51(small, 4, size=(4, 6))


def test_missing_folders_and_files_are_named(small, tmp_path):
    os.remove(os.path.join(small, "testTrainMulti_7030_splits", "a_test_split1.txt"))
    with pytest.raises(ValueError, match="a_test_split1.txt: no such split file"):
        load_hmdb51(small, 4, size=(4, 6))
    with pytest.raises(ValueError, match="does not exist"):
        load_hmdb51(tmp_path / "nowhere", 4)
    os.makedirs(os.path.join(small, "empty"))
    with pytest.raises(ValueError, match="empty: class folder has no .avi videos"):
        load_hmdb51(small, 4, size=(4, 6))


@pytest.mark.parametrize("kwargs, message", [
    (dict(split=4), "split must be one of 1, 2, 3, got 4"),
    (dict(split="1"), "split must be one of 1, 2, 3"),
    (dict(seq_len=0), "seq_len"),
    (dict(size=(0, 3)), "size must be two positive integers"),
    (dict(projection_dim=4, features="m.onnx"), "choose one"),
])
def test_bad_options_are_refused(small, kwargs, message):
    kw = {"seq_len": 4, "size": (4, 6), **kwargs}
    with pytest.raises(ValueError, match=message):
        load_hmdb51(small, **kw)


# ----------------------------------------------------------------------------------------------
# training on it
# ----------------------------------------------------------------------------------------------
def test_train_on_split_1_trains_on_the_videos_marked_1_and_tests_on_those_marked_2(
        root, tmp_path, capsys):
    from mgrit_gru.tools import cli
    from mgrit_gru.training import prepare_data
    from mgrit_gru.training.checkpoint import load_checkpoint
    out = tmp_path / "run"
    assert cli.main(["train", "--data", f"hmdb51:{root}", "--split", "1", "--seq-len", "8",
                     "--frame-size", "4", "--hidden", "4", "--levels", "2", "--cf", "2",
                     "--epochs", "1", "--batch-size", "3", "--out", str(out),
                     "--no-progress"]) == 0
    train, test = expected(root, 1, 1), expected(root, 1, 2)
    assert (f"split 1: {len(train)} train / {len(test)} test videos x 8 frames x 16 features, "
            "3 classes (1 videos in neither)") in capsys.readouterr().out
    ck = load_checkpoint(out / "checkpoint.npz")
    assert ck.params["weight_ih_l0"].shape == (12, 16) and ck.params["weight_out"].shape == (3, 4)
    assert ck.data["sequences"] == len(train) + len(test)
    assert ck.data["listing"] == hmdb51_listing(root, 1)
    d = prepare_data(ck.config)                              # the run's own data, video by video
    for x, y, want in ((d.x_train, d.y_train, train), (d.x_test, d.y_test, test)):
        np.testing.assert_array_equal(y, [label for label, _ in want])
        for xi, (_, path) in zip(x, want):
            np.testing.assert_array_equal(xi, direct(path, 8, size=(4, 4)))
    assert cli.main(["evaluate", str(out / "checkpoint.npz"), "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["n"] == len(test)


@pytest.mark.parametrize("flags, message", [
    (["--test-fraction", "0.3"], "--test-fraction (only --data"),
    (["--split", "2", "--data", "synthetic"], "--split (only --data hmdb51)"),
    ([], "videos need --seq-len"),
])
def test_options_that_do_not_fit_are_refused(root, tmp_path, capsys, flags, message):
    from mgrit_gru.tools import cli
    assert cli.main(["train", "--data", f"hmdb51:{root}", "--out", str(tmp_path / "r"),
                     *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resuming_on_other_marks_is_refused_with_what_changed(tmp_path, capsys):
    from mgrit_gru.tools import cli
    root = make_hmdb51(tmp_path / "h", {"a": {"1.avi": (1,), "2.avi": (2,)},
                                       "b": {"3.avi": (1,), "4.avi": (2,)}}, splits=(1,))
    out = str(tmp_path / "run")
    args = ["train", "--data", f"hmdb51:{root}", "--seq-len", "4", "--frame-size", "4",
            "--hidden", "3", "--levels", "2", "--cf", "2", "--out", out, "--no-progress"]
    assert cli.main([*args, "--epochs", "1"]) == 0
    with open(os.path.join(root, "testTrainMulti_7030_splits", "b_test_split1.txt"), "w") as f:
        f.write("3.avi 2\n4.avi 1\n")                        # the same videos, marks swapped
    capsys.readouterr()
    assert cli.main([*args, "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "videos of the split 4, names and sizes" in err, err


def test_a_bad_video_stops_training_before_any_file_is_written(small, tmp_path, capsys):
    """A truncated video is named, no run folder is made, and an existing run is left as it
    was (its files byte for byte)."""
    from mgrit_gru.tools import cli
    args = ["train", "--data", f"hmdb51:{small}", "--seq-len", "4", "--frame-size", "4",
            "--hidden", "3", "--levels", "2", "--cf", "2", "--epochs", "1", "--no-progress"]
    run = tmp_path / "run"
    assert cli.main([*args, "--out", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    path = _break_video(small, "truncated")
    capsys.readouterr()
    assert cli.main([*args, "--out", str(run), "--overwrite"]) == 2
    assert cli.main([*args, "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{path}: truncated or damaged") == 2, err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("missing, flags, message", [
    ("av", [], 'reading .avi videos (HMDB51) needs av: pip install "mgrit_gru[video]"'),
    ("onnxruntime", ["--features", "m.onnx"],
     'frame features from an ONNX model needs onnxruntime: pip install "mgrit_gru[features]"'),
])
def test_a_missing_extra_is_one_line_that_says_what_to_install(small, tmp_path, capsys,
                                                               monkeypatch, missing, flags,
                                                               message):
    import sys
    from mgrit_gru.tools import cli
    monkeypatch.setitem(sys.modules, missing, None)          # import fails as if not installed
    assert cli.main(["train", "--data", f"hmdb51:{small}", "--seq-len", "4", *flags,
                     "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"mgrit-gru: error: {message}\n"
    assert not (tmp_path / "r").exists()
