"""Miniature copies of real data sets in the exact formats they ship as, written by the tests
themselves: HMDB51's .avi class folders and split files (PyAV), a "UCI HAR Dataset" folder."""
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


def write_uci_har(root, n_train=12, n_test=6, T=8, seed=0):
    """A "UCI HAR Dataset" folder: for each split, the nine ``Inertial Signals`` channel files
    (one row of T readings per window) and ``y_<split>.txt`` (activities 1..6). Returns
    ``{split: (x (n, T, 9), y 1..6)}``."""
    from mgrit_gru.training.data.uci_har import CHANNELS
    out = {}
    for k, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        rng = np.random.default_rng(seed + k)
        folder = os.path.join(root, split, "Inertial Signals")
        os.makedirs(folder)
        x = rng.standard_normal((n, T, len(CHANNELS)))
        for c, name in enumerate(CHANNELS):
            np.savetxt(os.path.join(folder, f"{name}_{split}.txt"), x[:, :, c], fmt="%.8e")
        y = 1 + np.arange(n) % 6
        np.savetxt(os.path.join(root, split, f"y_{split}.txt"), y, fmt="%d")
        out[split] = (x, y)
    return out


_rng = np.random.default_rng(7)
TINY_W = _rng.standard_normal((5, 3, 3, 3)).astype(np.float32)   # conv weights (out, in, kh, kw)
TINY_B = _rng.standard_normal(5).astype(np.float32)


def tiny_cnn(path, size=(8, 8), pooled_4d=True):
    """A tiny image network as an ONNX file: Conv(3 -> 5, 3x3, padding 1, weights TINY_W and
    TINY_B) -> ReLU -> GlobalAveragePool [-> Flatten]. ``size=None``: any image size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    h, w = size if size is not None else ("H", "W")
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"])]
    out = helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["N", 5, 1, 1])
    if not pooled_4d:                                        # like a classifier's features
        nodes.append(helper.make_node("Flatten", ["pool"], ["features"]))
        out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 5])
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, h, w])],
        [out], initializer=[numpy_helper.from_array(TINY_W, "W"),
                            numpy_helper.from_array(TINY_B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)
