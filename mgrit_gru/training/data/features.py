"""Frame features from an image network: an ONNX model file run by onnxruntime on the CPU.

A video classifier rarely learns from raw pixels: each frame first goes through a network
trained on images (a ResNet-18, say) and the recurrent model reads its pooled features, 512 per
frame for a ResNet-18. `OnnxFeatures` does that step for the frame loaders
(``features="model.onnx"``). The model is a file the user supplies (the data docs say how to
make one from torchvision's or the ONNX model zoo's ResNet-18); nothing is downloaded.

What it computes, per frame (uint8 RGB, already resized to the model's input size)::

    image = (pixels / 255 - mean) / std          per channel (ImageNet's by default)
    f     = model(image[None] as N, C, H, W)     the model's first output (or ``output``)
    features = f.reshape(-1)                     (1, 512, 1, 1) or (1, 512) -> 512 numbers

Needs the ``features`` extra: ``pip install "mgrit_gru[features]"`` (onnxruntime).
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ...checks import optional_import

# torchvision's and the ONNX model zoo's ImageNet models expect these (RGB order)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _onnxruntime():
    return optional_import("onnxruntime", "features", "frame features from an ONNX model")


def file_digest(path):
    """The first 16 hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class OnnxFeatures:
    """Per-frame features from the image network in the ONNX file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        An ONNX model with one image input (N, 3, H, W), float32, RGB.
    size : (int, int), optional
        (H, W) for a model whose input size is not fixed; a fixed size in the model wins.
    mean, std : three floats, optional
        Per-channel normalisation of pixels in [0, 1] (ImageNet's by default).
    output : str, optional
        Which of the model's outputs to use (default its first).
    batch : int, optional
        Frames per call of the model.

    Attributes
    ----------
    size : (int, int)
        (H, W) that frames are resized to.
    dim : int
        Features per frame.
    digest : str
        Of the model file (the frame caches and checkpoints record it).
    """

    def __init__(self, path, size=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, output=None,
                 batch=32):
        ort = _onnxruntime()
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ValueError(f"features: {self.path}: no such file (an ONNX model, .onnx)")
        try:
            self.session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        except Exception as e:                               # onnxruntime's own error types
            raise ValueError(f"features: {self.path}: not a model onnxruntime can load "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ValueError(f"features: {self.path}: the model must take one image input "
                             f"(N, 3, H, W), RGB, channels first; it takes {got}")
        if inputs[0].type != "tensor(float)":
            raise ValueError(f"features: {self.path}: the image input must be float32, "
                             f"not {inputs[0].type}")
        self.input_name = inputs[0].name
        names = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in names:
            raise ValueError(f"features: {self.path} has no output {output!r} (its outputs: "
                             f"{', '.join(names)})")
        self.output = names[0] if output is None else output
        H, W = inputs[0].shape[2:]
        fixed = isinstance(H, int) and isinstance(W, int)
        if fixed:
            self.size = (H, W)
        elif size is None:
            raise ValueError(f"features: {self.path} takes images of any size: give size=(H, W)")
        else:
            self.size = tuple(int(s) for s in size)
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        if self.mean.size != 3 or self.std.size != 3 or np.any(self.std <= 0):
            raise ValueError(f"features: mean and std need three values (std > 0), got "
                             f"{mean!r}, {std!r}")
        self.batch = int(batch)
        self.digest = file_digest(self.path)
        self.dim = int(self(np.zeros((1, *self.size, 3), np.uint8)).shape[1])

    def __call__(self, images):
        """Features (n, dim) float32 of uint8 RGB frames ``images`` (n, H, W, 3)."""
        out = []
        for i in range(0, len(images), self.batch):
            chunk = images[i:i + self.batch].astype(np.float32).transpose(0, 3, 1, 2) / 255
            chunk = (chunk - self.mean) / self.std           # NCHW, normalised per channel
            f, = self.session.run([self.output], {self.input_name: chunk})
            out.append(np.asarray(f, np.float32).reshape(len(chunk), -1))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)

    def record(self):
        """What a cache key or checkpoint records of the extractor."""
        return {"model": self.digest, "output": self.output, "size": list(self.size),
                "mean": self.mean.ravel().tolist(), "std": self.std.ravel().tolist()}
