"""Time and memory to expect at the sizes "Reproducing the paper" suggests, measured here.

One command re-runs every number of docs/reproducing.md::

    python docs/evidence/reproducing/measure.py              # both parts
    python docs/evidence/reproducing/measure.py epochs       # one part

Parts (each writes ``<part>.json`` into this folder and prints a table):

- ``epochs``: one training epoch at UCI-HAR's shape (7,352 train / 2,947 test windows, T = 128,
  9 inputs, 6 classes) and at HMDB51 split 1's shape with ResNet-18 features (3,570 / 1,530
  videos, T = 128 frames, 512 features, 51 classes), on random data of exactly those shapes in
  an npz file: at a fixed iteration budget an epoch's work does not depend on the values.
  ``mgrit-gru train --preset torchbraid --dtype float32 --batch-size 100 --epochs 1`` with
  ``--solver serial``, MGRIT on one rank and MGRIT on two (``mpiexec -n 2``), one BLAS thread
  per process. Recorded: training and evaluation seconds (metrics.jsonl), the peak resident
  memory of the largest process, and the accuracy of the MGRIT gradient: its relative error
  against BPTT's, summed over two batches of 100 at the initial weights.
- ``features``: what making HMDB51's features costs per video: decoding a video of HMDB51's
  size (320 x 240, 30 fps, MPEG-4 part 2 in AVI, 90 frames, written here with PyAV),
  resizing its frames, and a ResNet-18-shaped network in ONNX (torchvision's ResNet-18 layers
  and sizes, batch norm folded into the convolutions as an exported inference model has it;
  random weights, so the time is real and the features are not) on 224 x 224 frames.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SHAPES = {  # name: (train, test, T, F, classes)
    "UCI-HAR": (7352, 2947, 128, 9, 6),
    "HMDB51 split 1, ResNet-18 features": (3570, 1530, 128, 512, 51),
}
RUNS = (("serial", 1), ("mgrit", 1), ("mgrit", 2))


def machine():
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python":
            platform.python_version(), "date": datetime.date.today().isoformat()}


# ----------------------------------------------------------------------------------------------
# epochs
# ----------------------------------------------------------------------------------------------
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(r)")


def run_epoch(npz, test_fraction, solver, ranks, out):
    """One epoch of ``mgrit-gru train``: (metrics record, peak RSS in MiB of the largest process)."""
    cmd = [sys.executable, "-m", "mgrit_gru", "train", "--data", f"npz:{npz}", "--preset",
           "torchbraid", "--dtype", "float32", "--batch-size", "100", "--epochs", "1",
           "--solver", solver, "--test-fraction", f"{test_fraction:.6f}", "--out", out,
           "--no-progress", "--overwrite"]
    if ranks > 1:
        here = os.path.join(os.path.dirname(sys.executable), "mpiexec")   # the venv's (mpich)
        cmd = [here if os.path.exists(here) else "mpiexec", "-n", str(ranks), *cmd]
    proc = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    peak_kb = int(proc.stdout.split("PEAK_KB")[-1].split()[0])
    with open(os.path.join(out, "metrics.jsonl")) as f:
        record = json.loads(f.readlines()[-1])
    return record, peak_kb / 1024


def gradient_error(x, y, C, batches=2):
    """Relative error of the preset's MGRIT gradient against BPTT's, summed over ``batches``
    batches of 100 at the initial weights (float32, as trained)."""
    from dataclasses import replace
    from mgrit_gru.training import TrainConfig
    from mgrit_gru.training.model import forward_backward, init_classifier
    cfg = TrainConfig.with_preset("torchbraid", dtype="float32")
    params = init_classifier(x.shape[2], cfg.hidden, cfg.layers, C, dtype=np.float32)
    flat = (lambda g: np.concatenate([g[k].ravel().astype(np.float64) for k in sorted(g)]))
    g = ref = 0
    for b in range(batches):
        xb = np.ascontiguousarray(x[100 * b:100 * (b + 1)].transpose(1, 0, 2))
        yb = y[100 * b:100 * (b + 1)]
        g = g + flat(forward_backward(params, xb, yb, cfg.solver_options()).grads)
        ref = ref + flat(forward_backward(params, xb, yb,
                                          replace(cfg, solver="serial").solver_options()).grads)
    return float(np.linalg.norm(g - ref) / np.linalg.norm(ref))


def epochs():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (n_train, n_test, T, F, C) in SHAPES.items():
            rng = np.random.default_rng(0)
            N = n_train + n_test
            x = rng.standard_normal((N, T, F), dtype=np.float32)
            y = np.arange(N) % C                              # every class present
            rng.shuffle(y)
            npz = os.path.join(tmp, "data.npz")
            np.savez(npz, x=x, y=y)
            err = gradient_error(x, y, C)
            del x
            for solver, ranks in RUNS:
                t0 = time.perf_counter()
                rec, peak = run_epoch(npz, n_test / N, solver, ranks, os.path.join(tmp, "run"))
                rows.append({"data": name, "train": n_train, "test": n_test, "T": T, "F": F,
                             "classes": C, "solver": solver, "ranks": ranks,
                             "train_s": rec["seconds"], "eval_s": rec["eval_seconds"],
                             "wall_s": time.perf_counter() - t0, "peak_rss_mib": peak,
                             "grad_rel_error_vs_bptt": 0.0 if solver == "serial" else err})
                print(json.dumps(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------
def resnet18_onnx(path, seed=0):
    """torchvision's ResNet-18 up to the pooled 512 features, batch norm folded into the
    convolutions (as an exported inference model), random He-scaled weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x, cin, cout, k, stride, relu=True):
        name = f"c{len(inits)}"
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, name + "w"),
                      numpy_helper.from_array(np.zeros(cout, np.float32), name + "b")])
        nodes.append(helper.make_node("Conv", [x, name + "w", name + "b"], [name], strides=[stride] * 2,
                                      pads=[k // 2] * 4))
        if not relu:
            return name
        nodes.append(helper.make_node("Relu", [name], [name + "r"]))
        return name + "r"

    x = conv("image", 3, 64, 7, 2)
    nodes.append(helper.make_node("MaxPool", [x], ["pool0"], kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[1, 1, 1, 1]))
    x, cin = "pool0", 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            h = conv(conv(x, cin, cout, 3, stride), cout, cout, 3, 1, relu=False)
            skip = conv(x, cin, cout, 1, stride, relu=False) if (stride, cin) != (1, cout) else x
            out = f"s{stage}b{block}"
            nodes += [helper.make_node("Add", [h, skip], [out + "a"]),
                      helper.make_node("Relu", [out + "a"], [out])]
            x, cin = out, cout
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["features"])]
    graph = helper.make_graph(
        nodes, "resnet18", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                          ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 512])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return sum(int(np.prod(i.dims)) for i in inits)


def features():
    sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests"))
    from _real_data import gradient_frames, write_avi
    from mgrit_gru.training.data.features import OnnxFeatures
    from mgrit_gru.training.data.frames import Featurizer
    from mgrit_gru.training.data.hmdb51 import _video_features, decode_video
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "v.avi")
        write_avi(video, gradient_frames(90, seed=1, h=240, w=320))
        t = time.perf_counter()
        for _ in range(5):
            frames = decode_video(video)
        rows["decode_s_per_video"] = (time.perf_counter() - t) / 5
        rows["frames_per_video"] = len(frames)
        pix = Featurizer((32, 32), grayscale=True, projection_dim=256)
        t = time.perf_counter()
        for _ in range(5):
            _video_features(video, 128, slice(0, 128), pix)
        rows["pixels32_projected_s_per_video"] = (time.perf_counter() - t) / 5
        path = os.path.join(tmp, "resnet18.onnx")
        rows["resnet18_parameters"] = resnet18_onnx(path)
        net = OnnxFeatures(path)
        images = np.random.default_rng(0).integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
        net(images[:8])                                       # warm-up
        t = time.perf_counter()
        net(images)
        rows["resnet18_s_per_frame"] = (time.perf_counter() - t) / len(images)
        rn = Featurizer(None, features=net)
        t = time.perf_counter()
        _video_features(video, 128, slice(0, 128), rn)
        rows["resnet18_s_per_video"] = time.perf_counter() - t
    print(json.dumps(rows), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# the page's tables (docs/reproducing.md shows exactly these; a test compares)
# ----------------------------------------------------------------------------------------------
N_VIDEOS = 5100                                              # split 1: 3,570 + 1,530


def tables():
    """``{placeholder: text}``: the Markdown tables and totals of docs/reproducing.md, from the
    JSON files this script wrote."""
    with open(os.path.join(HERE, "epochs.json")) as f:
        ep = json.load(f)["rows"]
    with open(os.path.join(HERE, "features.json")) as f:
        ft = json.load(f)["rows"]
    lines = ["| data (train / test, T x F, classes) | solver | ranks | training s / epoch | "
             "evaluation s | peak memory | gradient error vs BPTT |", "|---|---|---|---|---|---|---|"]
    for r in ep:
        data = f"{r['data']} ({r['train']:,} / {r['test']:,}, {r['T']} x {r['F']}, {r['classes']})"
        solver = "serial BPTT" if r["solver"] == "serial" else "MGRIT"
        err = "0 (exact)" if r["solver"] == "serial" else f"{r['grad_rel_error_vs_bptt']:.2f}"
        lines.append(f"| {data} | {solver} | {r['ranks']} | {r['train_s']:.1f} | "
                     f"{r['eval_s']:.1f} | {r['peak_rss_mib']:,.0f} MiB | {err} |")
    n = ft["frames_per_video"]
    feats = ["| step | seconds |", "|---|---|",
             f"| decode a {n}-frame 320 x 240 MPEG-4 video (PyAV) | "
             f"{ft['decode_s_per_video']:.3f} per video |",
             f"| decode, resize to 32 x 32 grey and project to 256, T = 128 | "
             f"{ft['pixels32_projected_s_per_video']:.2f} per video |",
             f"| ResNet-18 ({ft['resnet18_parameters'] / 1e6:.1f} M parameters) on one 224 x 224 "
             f"frame, batches of 32 | {ft['resnet18_s_per_frame']:.4f} per frame |",
             f"| decode, resize to 224 x 224 and ResNet-18 on the {n} frames, T = 128 | "
             f"{ft['resnet18_s_per_video']:.2f} per video |"]
    return {"EPOCHS_TABLE": "\n".join(lines), "FEATURES_TABLE": "\n".join(feats),
            "FEATURE_MINUTES": f"{N_VIDEOS * ft['resnet18_s_per_video'] / 60:.0f}",
            "PROJECTION_MINUTES": f"{N_VIDEOS * ft['pixels32_projected_s_per_video'] / 60:.0f}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", help="epochs, features (default both)")
    ap.add_argument("--tables", action="store_true",
                    help="print the page's tables from the JSON files and measure nothing")
    args = ap.parse_args()
    unknown = set(args.parts) - {"epochs", "features"}
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}: choose from epochs, features")
    if not args.tables:
        for part in args.parts or ("epochs", "features"):
            rows = {"epochs": epochs, "features": features}[part]()
            with open(os.path.join(HERE, f"{part}.json"), "w") as f:
                json.dump({**machine(), "rows": rows}, f, indent=1)
                f.write("\n")
    for name, text in tables().items():
        print(f"{name}:\n{text}\n")


if __name__ == "__main__":
    main()
