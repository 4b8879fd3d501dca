"""The package's layout rules, read from its source: layers import only downwards, no import
cycles, no module too long to read, and ``import mgrit_gru`` needs only NumPy."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mgrit_gru

ROOT = Path(mgrit_gru.__file__).parent

# Layers, lowest first: a module may import from its own layer and the ones before it.
LAYERS = [
    ("math", ["mgrit_gru.gru", "mgrit_gru.head", "mgrit_gru.gradcheck", "mgrit_gru.checks",
              "mgrit_gru.atomic", "mgrit_gru._threads", "mgrit_gru._moved"]),
    ("mgrit", ["mgrit_gru.mgrit"]),
    ("problems", ["mgrit_gru.problems"]),
    ("cuda", ["mgrit_gru.cuda"]),
    ("solve", ["mgrit_gru.solve"]),
    ("training", ["mgrit_gru.training"]),
    ("tools", ["mgrit_gru.tools"]),
]
# the package's front door and `python -m mgrit_gru` sit above every layer
TOP = {"mgrit_gru", "mgrit_gru.__main__"}
HEAVY = {"tqdm", "matplotlib", "PIL", "numba", "mpi4py", "av", "onnxruntime", "onnx"}


def _modules():
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name, toplevel_only):
    """The package modules ``name`` imports: at module level only, or anywhere in it."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out = set()
    for node in (tree.body if toplevel_only else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level \
                else []
            target = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            out.update(subs or ([target] if target in MODULES else []))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in MODULES)
    out.discard(name)
    return out


def _layer(name):
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS")


def test_every_module_belongs_to_a_layer():
    for name in set(MODULES) - TOP:
        _layer(name)


def test_no_module_imports_a_layer_above_its_own():
    """Imports inside functions count too: the math and the solver must not even reach up
    lazily (gru.py once dispatched to cuda/ and so depended on the GPU backend)."""
    upward = [(name, dep) for name in sorted(set(MODULES) - TOP)
              for dep in sorted(_imports(name, toplevel_only=False))
              if dep not in TOP and _layer(dep) > _layer(name)]
    assert upward == []


def test_the_math_and_the_generic_solver_import_no_cuda_training_or_tools():
    low = [n for n in MODULES if n in ("mgrit_gru.gru", "mgrit_gru.head", "mgrit_gru.gradcheck")
           or n.startswith("mgrit_gru.mgrit")]
    assert len(low) >= 8
    for name in low:
        deps = _imports(name, toplevel_only=False)
        assert not [d for d in deps if d.split(".")[1] in ("cuda", "training", "tools")], name


def _cycle(graph):
    """An import cycle of ``graph`` (module -> modules it imports) as a path, or None. A
    package importing its own submodules is not a cycle back to it."""
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return None
        if state.get(node) == "open":
            return path + [node]
        state[node] = "open"
        for dep in sorted(graph[node]):
            if not node.startswith(dep + "."):
                found = visit(dep, path + [node])
                if found:
                    return found
        state[node] = "done"
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycle({name: _imports(name, toplevel_only=True) for name in MODULES}) is None


def test_the_cycle_check_finds_a_cycle():
    """The checker above must be able to fail: the cycle gru.py once closed, rebuilt by hand."""
    graph = {"gru": {"cuda.serial"}, "cuda.serial": {"cuda.problems"},
             "cuda.problems": {"problems"}, "problems": {"gru"}}
    assert _cycle(graph) == ["cuda.problems", "problems", "gru", "cuda.serial", "cuda.problems"]
    assert _cycle({**graph, "problems": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_600_lines(name):
    assert len(MODULES[name].read_text().splitlines()) <= 600


def test_the_optional_extras_install_with_pip_and_the_tests_have_them():
    """The video and features extras name only packages with wheels on PyPI (PyAV bundles
    FFmpeg), and the test extra holds all of them, so CI runs the tests that need them."""
    tomllib = pytest.importorskip("tomllib")                # (Python 3.11+)
    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    name = (lambda req: req.split(">")[0].split("[")[0].strip())
    assert [name(r) for r in extras["video"]] == ["av"]
    assert [name(r) for r in extras["features"]] == ["onnxruntime"]
    test = {name(r) for r in extras["test"]}
    assert {"av", "onnxruntime", "onnx"} <= test


def test_import_needs_only_numpy():
    """tqdm, matplotlib, PIL, numba, mpi4py and the optional extras' PyAV and onnxruntime are
    imported where they are used, never by ``import mgrit_gru`` (nor by importing the training
    layer and its data readers) nor by the serial and MGRIT passes."""
    code = ("import sys, numpy as np, mgrit_gru as m, mgrit_gru.training.data\n"
            "p = m.init_gru(2, 3, seed=0); x = np.ones((8, 1, 2))\n"
            "y, h, c = m.gru_forward(p, x)\n"
            "m.gru_backward(p, c, dy=np.ones_like(y))\n"
            "yy, hh, info = m.mgrit_forward(p, x, levels=2, cf=2)\n"
            "m.mgrit_backward(p, info, dy=np.ones_like(y), levels=2, cf=2)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {sorted(HEAVY)!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("old,new", [
    ("mgrit_gru.train", "mgrit_gru.training"),
    ("mgrit_gru.model", "mgrit_gru.training.model"),
    ("mgrit_gru.optim", "mgrit_gru.training.optim"),
    ("mgrit_gru.data", "mgrit_gru.training.data"),
    ("mgrit_gru.data.synthetic", "mgrit_gru.training.data.synthetic"),
    ("mgrit_gru.cli", "mgrit_gru.tools.cli"),
    ("mgrit_gru.bench", "mgrit_gru.tools.bench"),
    ("mgrit_gru.perfmodel", "mgrit_gru.tools.perfmodel"),
    ("mgrit_gru.diagnostics", "mgrit_gru.tools.diagnostics"),
    ("mgrit_gru.cuda.bench", "mgrit_gru.tools.bench_cuda"),
])
def test_module_paths_of_version_0_1_still_import(old, new):
    """A user's script written for 0.1 imports the same module object at its new place."""
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new


def test_old_from_imports_and_attributes_still_work():
    from mgrit_gru.model import SolverOptions
    from mgrit_gru.train import TrainConfig, train
    from mgrit_gru.training import config, loop, model
    assert (TrainConfig, train, SolverOptions) == (config.TrainConfig, loop.train,
                                                   model.SolverOptions)
    assert mgrit_gru.diagnostics is importlib.import_module("mgrit_gru.tools.diagnostics")
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        mgrit_gru.nonsense
