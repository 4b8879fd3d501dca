"""Frame features from an ONNX image network (`mgrit_gru.training.data.features`), on a tiny
network the tests build themselves (`tiny_cnn`): conv 3x3 (3 -> 5 channels), ReLU, global
average pool."""
import os

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mgrit_gru.training.data import load_frame_folder  # noqa: E402
from mgrit_gru.training.data.features import IMAGENET_MEAN, IMAGENET_STD, OnnxFeatures  # noqa: E402

from _real_data import TINY_B as B, TINY_W as W, tiny_cnn  # noqa: E402

RNG = np.random.default_rng(7)


def by_hand(images):
    """The same network in NumPy: normalise, 3x3 convolution with zero padding, ReLU, mean."""
    x = images.astype(np.float64) / 255
    x = (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)        # (n, h, w, 3)
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((n, h, w, 5))
    for di in range(3):
        for dj in range(3):
            conv += xp[:, di:di + h, dj:dj + w, :] @ W[:, :, di, dj].T.astype(np.float64)
    return np.maximum(conv + B, 0).mean(axis=(1, 2))


@pytest.mark.parametrize("pooled_4d", [True, False])
def test_features_are_the_network_computed_by_hand(tmp_path, pooled_4d):
    net = OnnxFeatures(tiny_cnn(tmp_path / "m.onnx", pooled_4d=pooled_4d), batch=3)
    assert net.size == (8, 8) and net.dim == 5
    images = RNG.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)
    f = net(images)                                          # 3 calls of 3, 3 and 1 frames
    assert f.shape == (7, 5) and f.dtype == np.float32
    np.testing.assert_allclose(f, by_hand(images), rtol=1e-5, atol=1e-5)


def test_a_model_of_any_size_takes_the_given_size(tmp_path):
    path = tiny_cnn(tmp_path / "m.onnx", size=None)
    with pytest.raises(ValueError, match="takes images of any size: give size"):
        OnnxFeatures(path)
    net = OnnxFeatures(path, size=(6, 4))
    images = RNG.integers(0, 256, (2, 6, 4, 3), dtype=np.uint8)
    np.testing.assert_allclose(net(images), by_hand(images), rtol=1e-5, atol=1e-5)


def test_frame_folder_features_are_the_network_run_on_its_frames(tmp_path):
    """load_frame_folder(features=...) equals resizing each sampled frame to the model's size
    (Pillow, bilinear, RGB) and running the same session on it directly."""
    from PIL import Image
    root = tmp_path / "frames"
    for cls in ("a", "b"):
        v = root / cls / "v1"
        v.mkdir(parents=True)
        for k in range(5):
            Image.fromarray(RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(v / f"{k}.png")
    model = tiny_cnn(tmp_path / "m.onnx")
    x, y, _ = load_frame_folder(root, seq_len=3, features=model)
    assert x.shape == (2, 3, 5)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    for i, cls in enumerate(("a", "b")):
        for t, k in enumerate((0, 2, 4)):                    # floor((t + 0.5) 5 / 3)
            im = Image.open(root / cls / "v1" / f"{k}.png").convert("RGB")
            px = np.asarray(im.resize((8, 8), Image.Resampling.BILINEAR), np.float32) / 255
            px = (px - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
            want, = session.run(None, {"image": px.transpose(2, 0, 1)[None].astype(np.float32)})
            np.testing.assert_allclose(x[i, t], want.reshape(-1), rtol=1e-5, atol=1e-6)


def test_video_features_are_the_network_run_on_the_decoded_frames(tmp_path):
    av = pytest.importorskip("av")
    from PIL import Image
    from _real_data import make_hmdb51
    from mgrit_gru.training.data import load_hmdb51
    root = make_hmdb51(tmp_path / "h", {"a": {"1.avi": (1,)}, "b": {"2.avi": (2,), "3.avi": (1,)}},
                       splits=(1,), lengths={"1.avi": 4, "2.avi": 9, "3.avi": 5})
    model = tiny_cnn(tmp_path / "m.onnx")
    d = load_hmdb51(root, 3, features=model)
    assert d.x_train.shape == (2, 3, 5) and d.x_test.shape == (1, 3, 5)
    net = OnnxFeatures(model)
    for x, video, n in ((d.x_train[0], "a/1.avi", 4), (d.x_test[0], "b/2.avi", 9)):
        with av.open(os.path.join(root, video)) as c:
            frames = [f.to_image() for f in c.decode(video=0)]
        assert len(frames) == n
        picked = [frames[int((t + 0.5) * n / 3)] for t in range(3)]
        px = np.stack([np.asarray(im.resize((8, 8), Image.Resampling.BILINEAR)) for im in picked])
        np.testing.assert_array_equal(x, net(px))
        np.testing.assert_allclose(x, by_hand(px), rtol=1e-5, atol=1e-5)


def test_bad_models_are_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere.onnx: no such file"):
        OnnxFeatures(tmp_path / "nowhere.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: not a model onnxruntime can load"):
        OnnxFeatures(junk)
    from onnx import TensorProto, helper                     # a model of grey images
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "grey.onnx"))
    with pytest.raises(ValueError, match=r"one image input \(N, 3, H, W\).*x \[1, 1, 4, 4\]"):
        OnnxFeatures(tmp_path / "grey.onnx")
    with pytest.raises(ValueError, match="has no output 'logits'"):
        OnnxFeatures(tiny_cnn(tmp_path / "m.onnx"), output="logits")
