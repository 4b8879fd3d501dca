"""HMDB51 as distributed: class folders of .avi videos and the official train/test splits.

Layout after unpacking the release (the data docs give the steps)::

    root/
      brush_hair/                          one folder per class (51), classes in natural order
        April_09_brush_hair_u_nm_np1_ba_goo_0.avi
        ...
      testTrainMulti_7030_splits/          the split archive's folder (or ``splits_dir=``)
        brush_hair_test_split1.txt         "<video>.avi <id>" per line, for splits 1, 2, 3:
        ...                                1 = train, 2 = test, 0 = in neither

Split k trains on the videos marked 1 in ``<class>_test_split<k>.txt`` and tests on those marked
2 (70 and 30 per class in the release: 3,570 and 1,530 videos); videos marked 0, and videos a
split file does not name, are left out.

Videos are decoded in process by PyAV (its wheels bundle FFmpeg: the ``video`` extra,
``pip install "mgrit_gru[video]"``). Each video is resampled uniformly in time to ``seq_len``
frames exactly as `load_frame_folder` does (output step t shows decoded frame
``floor((t + 0.5) · n_frames / seq_len)``), and its frames become features as there: pixels
resized to ``size`` in [0, 1], a random projection of them, or an image network's features
(`OnnxFeatures`). A time window (an MPI rank's steps) resizes and featurises only its own
frames; the compressed stream is still decoded to its end, which is how the number of frames
is known and a truncated file is caught (decoding costs a fraction of a millisecond per frame;
the features cost far more). With ``cache_dir`` the features of the split's videos are stored
once, keyed by the videos' names, sizes and times, their split marks and the options.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from ...checks import check_time_window, int_choice, optional_import, positive_int
from .files import atomic_savez
from .frames import (Featurizer, _bar, _check_cache_dir, _entries, _natural_key, _resize,
                     check_frame_options, read_cache, resample_indices)

SPLITS_FOLDER = "testTrainMulti_7030_splits"
VIDEO_EXTENSIONS = (".avi",)
CACHE_VERSION = 1                                            # bump when the decoding changes
# a decoder may drop frames that were never coded (N-VOPs of packed DivX streams): a video
# counts as truncated only when it decodes fewer than its header's count less this share
SHORTFALL = 0.05


@dataclass
class VideoSplit:
    """One train/test split of a video data set, batch-first (N, T, F) float32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    left_out: int = 0


def _av():
    return optional_import("av", "video", "reading .avi videos (HMDB51)")


# ----------------------------------------------------------------------------------------------
# the files: class folders, videos, split marks
# ----------------------------------------------------------------------------------------------
def _scan(root, splits_dir):
    """``{class: [video file names]}`` in natural order; the splits folder is not a class."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: HMDB51 root does not exist or is not a folder")
    skip = os.path.realpath(splits_dir)                      # split files are not a class
    classes = sorted((e.name for e in _entries(root) if e.is_dir() and e.name != SPLITS_FOLDER
                      and os.path.realpath(e.path) != skip), key=_natural_key)
    if not classes:
        raise ValueError(f"{root}: no class folders (expected root/<class>/<video>.avi)")
    videos = {}
    for c in classes:
        cdir = os.path.join(root, c)
        names = sorted((e.name for e in _entries(cdir) if e.is_file()
                        and os.path.splitext(e.name)[1].lower() in VIDEO_EXTENSIONS),
                       key=_natural_key)
        if not names:
            raise ValueError(f"{cdir}: class folder has no .avi videos")
        videos[c] = names
    return classes, videos


def split_file(splits_dir, class_name, split):
    """The path of class ``class_name``'s marks for split ``split`` (1, 2 or 3)."""
    return os.path.join(splits_dir, f"{class_name}_test_split{split}.txt")


def read_split(path, videos, cdir):
    """``{video: mark}`` from one split file (marks 0, 1, 2); ValueError naming the file and
    line for a malformed line, an unknown mark, a video named twice or not in ``cdir``."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such split file (give the folder of the official "
                         f"splits with --splits, or unpack it to {SPLITS_FOLDER}/ beside the "
                         "class folders)")
    marks, present = {}, set(videos)
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            words = line.split()
            if not words:
                continue
            if len(words) != 2 or words[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}, line {n}: expected '<video>.avi <0|1|2>' (1 = train, "
                                 f"2 = test, 0 = neither), got {line.strip()!r}")
            name, mark = words[0], int(words[1])
            if name in marks:
                raise ValueError(f"{path}, line {n}: {name} is named twice")
            if name not in present:
                raise ValueError(f"{path}, line {n}: names {name}, which is not in {cdir}")
            marks[name] = mark
    return marks


def _split_videos(root, split, splits_dir):
    """``(class_names, [(mark, label, path)] of the videos marked 1 or 2, left_out)``: train
    videos first, then test videos, each in class then natural name order."""
    classes, videos = _scan(root, splits_dir)
    chosen, left_out = [], 0
    for label, c in enumerate(classes):
        cdir = os.path.join(root, c)
        path = split_file(splits_dir, c, split)
        marks = read_split(path, videos[c], cdir)
        if not any(m == 1 for m in marks.values()):
            raise ValueError(f"{path}: class {c} has no training video (no line marked 1) in "
                             f"split {split}")
        left_out += sum(1 for v in videos[c] if marks.get(v, 0) == 0)
        chosen += [(marks[v], label, os.path.join(cdir, v)) for v in videos[c]
                   if marks.get(v, 0) in (1, 2)]
    chosen.sort(key=lambda v: v[0])                          # stable: train, then test
    return classes, chosen, left_out


def hmdb51_listing(root, split=1, splits_dir=None):
    """A digest of the videos of one split: each one's path under ``root``, size and mark.

    What a training checkpoint records of the data (resuming on other videos or other marks is
    refused). Returns ``{"videos": n, "sha256": first 16 hex digits}``.
    """
    root = os.path.abspath(os.fspath(root))
    split = int_choice(split, "split", (1, 2, 3))
    splits_dir = _splits_dir(root, splits_dir)
    _, chosen, _ = _split_videos(root, split, splits_dir)
    h = hashlib.sha256()
    for mark, _, p in chosen:
        h.update(f"{os.path.relpath(p, root)}\0{os.stat(p).st_size}\0{mark}\n".encode())
    return {"videos": len(chosen), "sha256": h.hexdigest()[:16]}


def _splits_dir(root, splits_dir):
    return os.path.join(root, SPLITS_FOLDER) if splits_dir is None else \
        os.path.abspath(os.fspath(splits_dir))


# ----------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------
def decode_video(path):
    """Every frame of the first video stream of ``path`` (PyAV frames, in display order).

    ValueError naming the file: unreadable (not a video, damaged), without a video stream,
    without frames, or truncated (fewer frames than its header lists, beyond `SHORTFALL`).
    """
    av = _av()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            listed = stream.frames                           # the header's count (0: unknown)
            frames = list(container.decode(stream))
    except av.error.FFmpegError as e:                        # (subclasses of ValueError/OSError)
        raise ValueError(f"{path}: cannot read video ({type(e).__name__}: "
                         f"{getattr(e, 'strerror', None) or e})") from None
    if not frames:
        raise ValueError(f"{path}: video has no frames" +
                         (f" (its header lists {listed})" if listed else ""))
    if listed and len(frames) < listed - max(2, SHORTFALL * listed):
        raise ValueError(f"{path}: truncated or damaged: {len(frames)} frames decode of the "
                         f"{listed} its header lists")
    return frames


def _video_features(path, seq_len, steps, feat):
    """Features (steps.stop - steps.start, F) of one video's output steps ``steps``: its frames
    resampled to ``seq_len``; only the frames those steps show are resized and featurised."""
    frames = decode_video(path)
    idx = resample_indices(len(frames), seq_len)[steps]
    used, step_of = np.unique(idx, return_inverse=True)      # each used frame once
    pixels = np.stack([_resize(frames[j].to_image(), feat.size, feat.grayscale).reshape(-1)
                       for j in used])
    return feat(pixels)[step_of]


def _cache_key(root, chosen, options):
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, **options}, sort_keys=True).encode())
    for mark, label, p in chosen:
        st = os.stat(p)
        h.update(f"{mark}\0{label}\0{os.path.relpath(p, root)}\0{st.st_size}\0"
                 f"{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_hmdb51(root, seq_len, split=1, splits_dir=None, size=(16, 16), grayscale=True,
                projection_dim=None, seed=0, features=None, cache_dir=None, progress=False,
                time_window=None):
    """Load one official split of HMDB51 from its .avi files (see the module docstring).

    Parameters
    ----------
    root : str or os.PathLike
        The folder of the 51 class folders.
    seq_len : int
        T: every video is resampled uniformly in time to this many frames.
    split : {1, 2, 3}
        Which official split.
    splits_dir : str or os.PathLike, optional
        The folder of the ``<class>_test_split<k>.txt`` files (default
        ``root/testTrainMulti_7030_splits``).
    size, grayscale, projection_dim, seed, features
        How frames become features, as in `load_frame_folder`.
    cache_dir : str or os.PathLike, optional
        Folder for the features cache (created if needed; written atomically).
    progress : bool, optional
        A progress bar (stderr, when it is a terminal) while the videos are decoded.
    time_window : (int, int), optional
        ``(start, stop)``: only steps start..stop-1 of every video (only their frames are
        featurised; a cache miss computes every step, to write the entry).

    Returns
    -------
    VideoSplit
        ``x_train`` (N_train, T, F) and ``y_train`` of the videos marked 1, ``x_test`` and
        ``y_test`` of those marked 2 (class then natural name order), ``class_names``,
        ``left_out`` (videos marked 0 or not named).

    Raises
    ------
    ImportError
        Without PyAV (or onnxruntime, for ``features``).
    ValueError
        Naming the file and what is wrong: a missing root or split file, a class folder
        without videos, a split line that is malformed or names a missing video, a class
        without a training video, an unreadable, truncated or empty video; bad options.
    """
    root = os.path.abspath(os.fspath(root))
    positive_int(seq_len, "seq_len")
    split = int_choice(split, "split", (1, 2, 3))
    size = check_frame_options(size, projection_dim, features)
    t0, t1 = (0, seq_len) if time_window is None else check_time_window(time_window, seq_len)
    if cache_dir is not None:
        _check_cache_dir(os.fspath(cache_dir))
    _av()
    splits_dir = _splits_dir(root, splits_dir)
    classes, chosen, left_out = _split_videos(root, split, splits_dir)
    feat = Featurizer(size, grayscale, projection_dim, seed, features)
    marks = np.array([m for m, _, _ in chosen])
    n_train = int(np.sum(marks == 1))                        # (train videos come first)

    def result(x, y):                                        # views: the features held once
        return VideoSplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes, left_out)

    cache_path = None
    if cache_dir is not None:
        options = {"seq_len": int(seq_len), "split": int(split), "size": list(size),
                   "grayscale": bool(grayscale), "seed": int(seed),
                   "projection_dim": None if projection_dim is None else int(projection_dim),
                   "features": feat.record()}
        cache_path = os.path.join(os.fspath(cache_dir),
                                  f"hmdb51-{_cache_key(root, chosen, options)}.npz")
        cached = read_cache(cache_path, t0, t1)
        if cached is not None:
            return result(cached["x"], cached["y"])
    d0, d1 = (0, seq_len) if cache_path is not None else (t0, t1)   # the steps to compute
    x = np.empty((len(chosen), d1 - d0, feat.dim), np.float32)
    y = np.array([label for _, label, _ in chosen], np.int64)
    for i, (_, _, path) in enumerate(_bar(chosen, progress)):
        x[i] = _video_features(path, seq_len, slice(d0, d1), feat)
    if cache_path is not None:
        atomic_savez(cache_path, x=x, y=y, marks=marks, class_names=np.array(classes))
        x = np.ascontiguousarray(x[:, t0:t1])                # (no copy without a window)
    return result(x, y)
