"""Real video data from folders of frame images, laid out like HMDB51 after frame extraction.

Layout::

    root/
      <class name>/                 one folder per class; classes are numbered in natural order
                                    (numbers by value, case ignored: class2 before class10)
        <video name>/               one folder per video
          <frame files>             .png .jpg .jpeg .bmp .gif .tif .tiff, in natural name order
                                    (frame2 before frame10), other files are ignored; a
                                    folder named like a frame, or a link to nothing anywhere
                                    in the tree, is an error naming it (it is not skipped)

(With ffmpeg: ``ffmpeg -i video.avi root/<class>/<video>/%05d.png``.)

Each frame is resized to ``size``, optionally made grayscale, scaled to [0, 1] and flattened;
an optional fixed random projection (a seeded Gaussian matrix) reduces the features to
``projection_dim``, computed exactly before one rounding (`_project`), so a frame's features
have the same bits whichever frames were loaded with it. Every video is resampled uniformly in
time to exactly ``seq_len`` frames: output step t shows source frame
``floor((t + 0.5) · n_frames / seq_len)`` (nearest frame at the centre of each of seq_len equal
time bins; shorter videos repeat frames, longer ones skip frames). Only the frames that are used
are decoded.

With ``cache_dir`` the result is stored as an ``.npz`` named by a hash of the folder listing (every
frame file's path, size and modification time) and of the options, so a second call with the same
data and options decodes nothing, and any change to the files or options decodes afresh.

``time_window=(start, stop)`` returns only output steps start..stop-1 (an MPI rank's rows): only
their frames are decoded, or only their rows are read from the cache. (A cache miss decodes
every step, to write the cache entry, and then returns the window.)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import warnings
import zipfile

import numpy as np

from ...checks import check_time_window, positive_int
from .files import _member, _open_npz, _read_rows, atomic_savez

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
CACHE_VERSION = 2                                            # bump when the decoding changes


def _natural_key(name):
    """Sort key that orders embedded numbers numerically: 'f2.png' < 'f10.png'."""
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def _entries(folder):
    """The visible entries of ``folder``; ValueError naming a link whose target is missing (it
    may have been a video folder or a frame: skipping it would change the data unseen)."""
    entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    for e in entries:
        if e.is_symlink() and not os.path.exists(e.path):
            raise ValueError(f"{e.path}: a link to {os.readlink(e.path)}, which does not exist: "
                             "restore its target or remove the link")
    return entries


def _subdirs(folder):
    """Visible subfolders of ``folder`` in natural order."""
    return sorted((e.name for e in _entries(folder) if e.is_dir()), key=_natural_key)


def _frames(vdir):
    """The frame images of video folder ``vdir`` in natural order; ValueError naming an entry
    named like an image that is not a file (a folder, a device)."""
    frames = []
    for e in _entries(vdir):
        if os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        if not e.is_file():
            what = "a folder" if e.is_dir() else "not a regular file"
            raise ValueError(f"{e.path}: named like a frame image but {what}: rename or remove it")
        frames.append(e.name)
    return sorted(frames, key=_natural_key)


def _scan(root):
    """Walk ``root``; return ``(class_names, videos)`` with videos a list of
    ``(label, video_dir, [frame paths])``. Raises ValueError naming the empty folder, a link
    to nothing, or an entry named like a frame that is not a file."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: frame-folder root does not exist or is not a folder")
    class_names = _subdirs(root)
    if not class_names:
        raise ValueError(f"{root}: no class folders (expected root/<class>/<video>/<frames>)")
    videos = []
    for label, cname in enumerate(class_names):
        cdir = os.path.join(root, cname)
        vnames = _subdirs(cdir)
        if not vnames:
            raise ValueError(f"{cdir}: class folder has no video folders")
        for vname in vnames:
            vdir = os.path.join(cdir, vname)
            frames = _frames(vdir)
            if not frames:
                raise ValueError(f"{vdir}: video folder has no frame images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
            videos.append((label, vdir, [os.path.join(vdir, f) for f in frames]))
    return class_names, videos


def frame_listing(root):
    """A digest of a frame folder's files: every frame's path under ``root`` and its size.

    What a training checkpoint records of a frame folder, so that resuming on frames that were
    added, removed, renamed or rewritten with another size is refused. Modification times are
    left out on purpose (frames extracted again, or copied, are the same data), so a frame
    rewritten in place with the same size is not seen.

    Parameters
    ----------
    root : str or path
        The folder ``root/<class>/<video>/<frames>`` (as `load_frame_folder` takes it).

    Returns
    -------
    dict
        ``{"frames": n, "sha256": hex}``: the number of frame files and the first 16 hex digits
        of the SHA-256 of their relative paths and sizes, in loading order.

    Raises
    ------
    ValueError
        Naming the folder, as `load_frame_folder` does, for a missing or empty tree.
    """
    root = os.path.abspath(os.fspath(root))
    _, videos = _scan(root)
    h, n = hashlib.sha256(), 0
    for _, _, frames in videos:
        for p in frames:
            h.update(f"{os.path.relpath(p, root)}\0{os.stat(p).st_size}\n".encode())
            n += 1
    return {"frames": n, "sha256": h.hexdigest()[:16]}


def resample_indices(n_frames, seq_len):
    """Source frame for each of ``seq_len`` output steps: ``floor((t + 0.5) n_frames / seq_len)``."""
    t = np.arange(seq_len)
    return np.minimum((t + 0.5) * n_frames / seq_len, n_frames - 1).astype(np.int64)


def _resize(im, size, grayscale):
    """A PIL image as uint8 pixels (h, w) or (h, w, 3), resized to ``size`` (bilinear)."""
    from PIL import Image                                    # Pillow: imported only when used

    im = im.convert("L" if grayscale else "RGB")
    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)       # PIL takes (w, h)
    return np.asarray(im, dtype=np.uint8)


def _decode_frame(path, size, grayscale):
    """Decode one image file to a uint8 array (h, w) or (h, w, 3): its resized pixels."""
    from PIL import Image

    with Image.open(path) as im:
        return _resize(im, size, grayscale)


class Featurizer:
    """Frames -> features: pixels in [0, 1], a random projection of them, or an image
    network's features (`OnnxFeatures`). ``size`` and ``grayscale`` say how frames are resized,
    ``raw`` is the number of pixel values per frame, ``dim`` of features."""

    def __init__(self, size, grayscale=True, projection_dim=None, seed=0, features=None):
        self.network = None
        if features is not None:                             # an ONNX file: its size, RGB
            from .features import OnnxFeatures
            self.network = (features if isinstance(features, OnnxFeatures) else
                            OnnxFeatures(features, size=size))
            size, grayscale = self.network.size, False
        self.size, self.grayscale = tuple(size), bool(grayscale)
        self.raw = size[0] * size[1] * (1 if grayscale else 3)
        self.Q = (None if projection_dim is None else
                  _integer_projection(_projection(self.raw, int(projection_dim), seed)))
        self.dim = (self.network.dim if self.network is not None else
                    self.raw if self.Q is None else self.Q.shape[1])

    def __call__(self, pixels):
        """Features (n, dim) float32 of uint8 frames ``pixels`` (n, raw)."""
        if self.network is not None:
            return self.network(pixels.reshape(len(pixels), *self.size, 3))
        if self.Q is not None:
            return _project(pixels, self.Q)
        return pixels.astype(np.float32) / np.float32(255)

    def record(self):
        """What the decoded-frame cache key holds of the feature options."""
        return None if self.network is None else self.network.record()


PROJECTION_GRID = 2.0 ** -20                                  # the projection's entries: k · 2^-20


def _projection(F_in, projection_dim, seed):
    """The fixed Gaussian projection (F_in, d), scaled by 1/√d so norms are kept on average.

    Float64, its entries rounded to multiples of 2^-20 (a change of at most 5e-7: the same
    Gaussian projection to any statistic), so that `_project` sums exactly.
    """
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((F_in, projection_dim)) / math.sqrt(projection_dim)
    return np.rint(P / PROJECTION_GRID) * PROJECTION_GRID


def _integer_projection(P):
    """Q = P · 2^20 (integers held in float64) for `_project`, once per load; ValueError where
    a frame's sum Σ pixel · Q could pass 2^53, above which float64 does not hold every integer."""
    Q = P / PROJECTION_GRID                                  # integers, exactly
    if Q.shape[0] * 255 * np.abs(Q).max(initial=0.0) >= 2.0 ** 53:
        raise ValueError(f"projection_dim: {Q.shape[0]} pixel features per frame are too "
                         "many to project exactly; choose a smaller size")
    return Q


def _project(pixels, Q):
    """Features of frames given as uint8 ``pixels`` (n, F_raw): ``pixels / 255 @ P`` in float32,
    with Q = `_integer_projection` (P).

    Exact before one rounding, hence the same bits for a frame whatever other frames share the
    call (a time window, another BLAS kernel, another summation order): pixels (integers < 2^8)
    times Q (integers) are integers, and so are their sums (below 2^53: checked with Q), where
    float64 holds every integer. Only the scaling by 1 / (255 · 2^20) rounds.
    """
    S = pixels.astype(np.float64) @ Q                        # exact integer sums: any order
    return (S / (255 / PROJECTION_GRID)).astype(np.float32)  # one rounding, then to float32


def _check_cache_dir(cache_dir):
    """ValueError naming ``cache_dir`` where it, or the nearest part of it that exists, is not
    a folder (os.makedirs would say only "File exists")."""
    existing = os.path.abspath(cache_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = ("is a file" if existing == os.path.abspath(cache_dir) else
                f"is in {existing}, a file")
        raise ValueError(f"cache_dir {cache_dir} {what}, not a folder")


def _cache_key(root, videos, options):
    """Hash of the listing (relative path, size, mtime of every frame) and the options."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, **options}, sort_keys=True).encode())
    for label, _, frames in videos:
        for p in frames:
            st = os.stat(p)
            h.update(f"{label}\0{os.path.relpath(p, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def check_frame_options(size, projection_dim, features):
    """``size`` as a (height, width) tuple; ValueError for a bad size or projection_dim, or
    both a projection and a feature network."""
    try:
        size = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive integers (height, width), got {size!r}")
    if projection_dim is not None and (isinstance(projection_dim, bool) or
                                       not isinstance(projection_dim, (int, np.integer))
                                       or projection_dim < 1):
        raise ValueError(f"projection_dim must be a positive integer or None, got {projection_dim!r}")
    if projection_dim is not None and features is not None:
        raise ValueError("projection_dim and features: choose one (a random projection of the "
                         "pixels, or an image network's features)")
    return size


def read_cache(cache_path, t0, t1):
    """The arrays of a decoded-frame cache entry, ``x`` cut to steps t0..t1-1 (only those rows
    read); None where there is no entry, or (with a warning) one that cannot be read."""
    if not os.path.isfile(cache_path):
        return None
    try:
        with _open_npz(cache_path) as zf:
            x = _read_rows(zf, t0, t1)                       # only our rows of the cached x
            if x is None:                                    # (a layout _read_rows leaves)
                x = np.ascontiguousarray(_member(zf, "x")[:, t0:t1])
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy") and n != "x.npy"]
            return {"x": x, **{k: _member(zf, k) for k in names}}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # not ours:
        warnings.warn(f"{cache_path}: unreadable cache ({type(e).__name__}), decoding "
                      "the videos again", stacklevel=3)      # rebuild it
    return None


def _bar(items, progress):
    """``items`` with a progress bar on stderr (when asked, and stderr is a terminal)."""
    from tqdm import tqdm                                    # only while decoding
    return tqdm(items, desc="decoding videos", unit="video",
                disable=None if progress else True, file=sys.stderr, dynamic_ncols=True)


def load_frame_folder(root, seq_len, size=(16, 16), grayscale=True, projection_dim=None, seed=0,
                      cache_dir=None, progress=False, time_window=None, min_classes=2,
                      features=None):
    """Load videos stored as frame folders (``root/<class>/<video>/<frames>``) as (N, T, F).

    Parameters
    ----------
    root : str or os.PathLike
        The data folder (see the module docstring for the layout).
    seq_len : int
        T: every video is resampled uniformly in time to this many frames.
    size : (int, int), optional
        (height, width) each frame is resized to (bilinear).
    grayscale : bool, optional
        Convert to one channel; otherwise RGB (3 channels, flattened as h, w, channel).
    projection_dim : int, optional
        If given, multiply each flattened frame by a fixed (F_raw, projection_dim) Gaussian matrix
        drawn from ``seed`` and scaled by 1/√projection_dim; F becomes projection_dim.
    seed : int, optional
        Seed of the projection matrix (the same seed gives the same features across runs).
    features : str, os.PathLike or OnnxFeatures, optional
        An ONNX image network (`OnnxFeatures`): F becomes its features per frame; frames are
        resized to its input size, in RGB (``size`` is used only where the model takes any
        size; ``grayscale`` is ignored). Not with ``projection_dim``.
    cache_dir : str or os.PathLike, optional
        Folder for the decoded-array cache (created if needed; written atomically).
    progress : bool, optional
        A progress bar (stderr, when it is a terminal) while the videos are decoded.
    time_window : (int, int), optional
        ``(start, stop)``, 0 <= start < stop <= seq_len: return only ``x[:, start:stop]``,
        decoding only those steps' frames, or reading only those rows of the cache (a cache
        miss decodes every step to write the entry).
    min_classes : int, optional
        The fewest class folders accepted: 2 (a classifier learns nothing from one class); 1
        accepts one (its videos get label 0).

    Returns
    -------
    x : ndarray (N, seq_len, F) float32 (N, stop - start, F with ``time_window``)
        F = h·w (grayscale), 3·h·w (RGB), projection_dim or the network's features. Videos in class order, then natural
        name order.
    y : ndarray (N,) int64
        Class index of each video.
    class_names : list of str
        Class folder names in natural order (``class2`` before ``class10``, case ignored);
        ``class_names[y[i]]`` is video i's class.

    Raises
    ------
    ValueError
        Naming the folder or file: root missing, no class folders, a class folder without video
        folders, a video folder without frame images, an unreadable or corrupt image, a link to
        nothing, a folder named like a frame, fewer than ``min_classes`` class folders, a
        ``cache_dir`` that is a file, bad options.
    """
    root = os.path.abspath(os.fspath(root))
    positive_int(seq_len, "seq_len")
    positive_int(min_classes, "min_classes")
    size = check_frame_options(size, projection_dim, features)
    t0, t1 = (0, seq_len) if time_window is None else check_time_window(time_window, seq_len)
    if cache_dir is not None:
        _check_cache_dir(os.fspath(cache_dir))
    class_names, videos = _scan(root)
    if len(class_names) < min_classes:                       # (each folder holds a video)
        which = "one class folder" if len(class_names) == 1 else f"{len(class_names)} folders"
        raise ValueError(f"{root}: {which} ({', '.join(class_names)}); a classifier needs at "
                         f"least {min_classes} classes (one folder per class)")
    feat = Featurizer(size, grayscale, projection_dim, seed, features)
    options = {"seq_len": int(seq_len), "size": list(size), "grayscale": bool(grayscale),
               "projection_dim": None if projection_dim is None else int(projection_dim),
               "seed": int(seed), "features": feat.record()}
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(root, videos, options)
        cache_path = os.path.join(os.fspath(cache_dir), f"frames-{key}.npz")
        cached = read_cache(cache_path, t0, t1)
        if cached is not None:
            return cached["x"], cached["y"], [str(c) for c in cached["class_names"]]

    d0, d1 = (0, seq_len) if cache_path is not None else (t0, t1)   # the steps to decode
    x = np.empty((len(videos), d1 - d0, feat.dim), np.float32)
    y = np.empty(len(videos), np.int64)
    for i, (label, vdir, frames) in enumerate(_bar(videos, progress)):
        idx = resample_indices(len(frames), seq_len)[d0:d1]  # the source frames of those steps
        used, step_of = np.unique(idx, return_inverse=True)  # decode each used frame once
        pixels = np.empty((len(used), feat.raw), np.uint8)
        for u, j in enumerate(used):
            try:
                pixels[u] = _decode_frame(frames[j], feat.size, feat.grayscale).reshape(-1)
            except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt files
                raise ValueError(f"{frames[j]}: cannot read image ({type(e).__name__}: {e})") from None
        x[i] = feat(pixels)[step_of]                         # used frame -> its output steps
        y[i] = label
    if cache_path is not None:
        atomic_savez(cache_path, x=x, y=y, class_names=np.array(class_names))
        x = np.ascontiguousarray(x[:, t0:t1])                # (no copy without a window)
    return x, y, class_names
