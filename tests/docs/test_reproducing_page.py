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
