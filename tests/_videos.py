"""Tiny videos in the formats data sets ship as, written by the tests themselves (PyAV)."""
import os

import numpy as np


def write_avi(path, frames, codec="mpeg4", fps=30):
    """Write uint8 RGB ``frames`` (n, h, w, 3) as an AVI file (MPEG-4 part 2, as HMDB51's
    DivX files; ``codec="ffv1"`` for a lossless one). h and w must be even."""
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p" if codec == "mpeg4" else "yuv444p"
        if codec == "mpeg4":
            s.options = {"qscale": "2"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def gradient_frames(n, seed, h=24, w=32):
    """``n`` frames of a moving coloured gradient: a distinct picture per video and frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    phase = rng.uniform(0, 2 * np.pi, 3)
    out = np.empty((n, h, w, 3), np.uint8)
    for k in range(n):
        for c in range(3):
            out[k, :, :, c] = 127 + 100 * np.sin(xx / 5 + yy / 7 * (c + 1) + phase[c] + 0.6 * k)
    return out


def make_hmdb51(root, marks, lengths=None, splits=(1, 2, 3), splits_dir=None):
    """An HMDB51-format folder: ``marks[class][video]`` = the video's marks in ``splits``; the videos are
    ``<class>/<video>.avi`` (gradient frames, ``lengths[video]`` of them, default 6 + i) and
    ``testTrainMulti_7030_splits/<class>_test_split<k>.txt`` lists "<video> <mark> " lines (the
    release's trailing space included)."""
    root = str(root)
    splits_dir = splits_dir or os.path.join(root, "testTrainMulti_7030_splits")
    os.makedirs(splits_dir, exist_ok=True)
    i = 0
    for cname, videos in marks.items():
        for vname in videos:
            n = (lengths or {}).get(vname, 6 + i)
            write_avi(os.path.join(root, cname, vname), gradient_frames(n, seed=i))
            i += 1
        for i, k in enumerate(splits):
            with open(os.path.join(splits_dir, f"{cname}_test_split{k}.txt"), "w") as f:
                f.writelines(f"{v} {m[i]} \n" for v, m in videos.items())
    return root
