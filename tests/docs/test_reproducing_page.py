"""docs/reproducing.md: its tables are those its measuring script makes from the recorded JSON,
and its training commands run, as printed, on miniature copies of the data sets in the shipped
layouts (only the sizes shrunk: epochs, T, H)."""
import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "reproducing.md").read_text()


def _measure():
    spec = importlib.util.spec_from_file_location(
        "measure", ROOT / "docs" / "evidence" / "reproducing" / "measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tables_are_the_recorded_measurements():
    for name, text in _measure().tables().items():
        assert text in PAGE, f"docs/reproducing.md does not show {name} as recorded:\n{text}"


def test_the_claims_under_the_tables_hold_for_the_recorded_numbers():
    import json
    rows = json.loads((ROOT / "docs/evidence/reproducing/epochs.json").read_text())["rows"]
    for data in {r["data"] for r in rows}:
        t = {(r["solver"], r["ranks"]): r["train_s"] for r in rows if r["data"] == data}
        # "1.6-1.9x serial BPTT's", "about 40 % off it", "0.9-1.1x" (rounded)
        assert 1.55 <= t[("mgrit", 1)] / t[("serial", 1)] < 1.95
        assert 0.5 <= t[("mgrit", 2)] / t[("mgrit", 1)] <= 0.7
        assert 0.85 <= t[("mgrit", 2)] / t[("serial", 1)] < 1.15


def _train_commands():
    """The page's `mgrit-gru train` command lines (the mpiexec launcher dropped)."""
    for block in re.findall(r"```bash\n(.*?)```", PAGE, flags=re.S):
        for line in block.splitlines():
            m = re.search(r"\bmgrit-gru (train .*)", line)
            if m:
                yield shlex.split(m[1])


def _shrink(args):
    """The command with 1 epoch, T = 32 where it sets T, and H = 4."""
    out = list(args)
    for flag, value in (("--epochs", "1"), ("--seq-len", "32")):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out + ["--hidden", "4", "--no-progress"]


def test_the_training_commands_run_on_miniature_data(tmp_path, monkeypatch):
    pytest.importorskip("av")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from _real_data import make_hmdb51, tiny_cnn, write_uci_har
    from mgrit_gru.tools import cli
    from mgrit_gru.training import load_checkpoint
    monkeypatch.chdir(tmp_path)
    write_uci_har(tmp_path / "UCI HAR Dataset", 12, 6, T=32)
    marks = {c: {f"{c}_{v}.avi": ((1, 1, 2)[v],) for v in range(3)} for c in ("wave", "clap")}
    make_hmdb51(tmp_path / "hmdb51", marks, splits=(1,))
    tiny_cnn(tmp_path / "resnet18-features.onnx", size=(8, 8))
    commands = list(_train_commands())
    assert len(commands) == 6
    for args in commands:
        assert cli.main(_shrink(args)) == 0, args
        ck = load_checkpoint(tmp_path / args[args.index("--out") + 1] / "checkpoint.npz")
        hmdb = "hmdb51:hmdb51" in args
        assert ck.data["classes"] == (2 if hmdb else 6)
        assert ck.data["sequences"] == (6 if hmdb else 18)
        assert ck.data["F"] == (5 if hmdb else 9)             # the network's 5 features
    assert len(list((tmp_path / "cache").glob("hmdb51-*.npz"))) == 1   # made once, read twice
    np.testing.assert_array_equal(
        load_checkpoint(tmp_path / "runs/hmdb-mgrit/checkpoint.npz").config.split, 1)


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", PAGE, flags=re.S)


def _zoo_like_resnet(path):
    """A stand-in for the model zoo's resnet18-v1-7.onnx, as that file is laid out: IR 3, the
    image input "data" first and the weights listed as inputs too, a global average pooling
    and then the classifier (Flatten, Gemm) whose scores are the graph's output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((10, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "conv_w"), numpy_helper.from_array(fc, "fc_w"),
             numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["data", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool1_fwd"]),
             helper.make_node("Flatten", ["pool1_fwd"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], transB=1)]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])] + [
        helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, "zoo", inputs,
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
    model.ir_version = 3
    onnx.save(model, str(path))
    return w


def test_the_model_zoo_recipe_gives_a_model_of_pooled_features(tmp_path, monkeypatch):
    """The page's recipe, run on a file laid out like the zoo's, gives a model that
    OnnxFeatures takes and whose output is the pooled features."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mgrit_gru.training.data.features import IMAGENET_MEAN, IMAGENET_STD, OnnxFeatures
    code, = [b for b in _python_blocks() if "resnet18-v1-7.onnx" in b]
    monkeypatch.chdir(tmp_path)
    w = _zoo_like_resnet(tmp_path / "resnet18-v1-7.onnx")
    exec(compile(code, "docs/reproducing.md:python", "exec"), {"__name__": "__snippet__"})
    net = OnnxFeatures("resnet18-features.onnx")
    assert net.size == (8, 8) and net.dim == 4
    img = np.random.default_rng(1).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    x = (img[0] / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    conv = sum(xp[i:i + 8, j:j + 8] @ w[:, :, i, j].T.astype(np.float64)
               for i in range(3) for j in range(3))
    np.testing.assert_allclose(net(img)[0], np.maximum(conv, 0).mean(axis=(0, 1)),
                               rtol=1e-5, atol=1e-5)


def test_the_torchvision_recipe_runs_where_torch_is_installed(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")                       # (not a dependency of the package)
    code, = [b for b in _python_blocks() if "torchvision" in b]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/reproducing.md:python", "exec"), {"__name__": "__snippet__"})
    from mgrit_gru.training.data.features import OnnxFeatures
    assert OnnxFeatures("resnet18-features.onnx").dim == 512


def test_the_python_loading_example_runs_on_miniature_data(tmp_path, monkeypatch, capsys):
    pytest.importorskip("av")
    pytest.importorskip("onnxruntime")
    from _real_data import make_hmdb51, tiny_cnn
    code, = [b for b in _python_blocks() if "load_hmdb51" in b]
    monkeypatch.chdir(tmp_path)
    marks = {c: {f"{c}_{v}.avi": ((1, 1, 2)[v],) for v in range(3)} for c in ("wave", "clap")}
    make_hmdb51(tmp_path / "hmdb51", marks, splits=(1,))
    tiny_cnn(tmp_path / "resnet18-features.onnx")
    exec(compile(code, "docs/reproducing.md:python", "exec"), {"__name__": "__snippet__"})
    assert capsys.readouterr().out.split("#")[0].strip() == "(4, 128, 5) (2, 128, 5) 2"
