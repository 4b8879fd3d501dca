"""The tutorials' exercise solutions run and their asserts hold.

An exercise is one markdown cell: ``**Exercise N.**`` text, a collapsible hint and a collapsible
solution (``<details><summary>Solution</summary>``) whose python block runs after the notebook's
earlier cells and ends with an assert of the stated answer. Here each notebook's code cells run
in order in one namespace, in the notebook's folder (as nbmake and mkdocs-jupyter run them), and
then every solution block in that namespace. IPython magics (``%matplotlib inline``) are dropped.
"""
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(p.name for p in TUTORIALS.glob("*.ipynb"))
# the notebooks whose exercises come with solutions: these must have at least two
WITH_SOLUTIONS = {"01_gru_by_hand.ipynb", "02_mgrit_linear.ipynb",
                  "05_backprop_through_mgrit.ipynb", "06_train_video_classifier.ipynb",
                  "07_cuda_kernels.ipynb"}

SOLUTION = re.compile(r"<details><summary>Solution</summary>\s*```python\n(.*?)```", re.S)
EXERCISE = re.compile(r"^\*\*Exercise (\d+)\.\*\*", re.M)


def _cells(name):
    return json.loads((TUTORIALS / name).read_text(encoding="utf-8"))["cells"]


def _source(cell):
    return "".join(cell["source"])


MAGIC = re.compile(r"^[%!][A-Za-z]")                       # a line magic or shell escape


def _code(src):
    return "\n".join(line for line in src.splitlines() if not MAGIC.match(line))


def solutions(name):
    """[(exercise number, python source)] of the notebook's solution blocks, in order."""
    out = []
    for cell in _cells(name):
        if cell["cell_type"] != "markdown":
            continue
        src = _source(cell)
        blocks = SOLUTION.findall(src)
        if blocks:
            m = EXERCISE.search(src)
            assert m, f"{name}: a solution outside an '**Exercise N.**' cell"
            assert len(blocks) == 1, f"{name}: exercise {m.group(1)} has {len(blocks)} solutions"
            out.append((int(m.group(1)), blocks[0]))
    return out


def _has_exercises_heading(name):
    return any(cell["cell_type"] == "markdown"
               and re.search(r"^#+\s*Exercises\s*$", _source(cell), re.M) for cell in _cells(name))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_exercise_cells_have_a_hint_and_a_solution(name):
    sols = solutions(name)
    if name in WITH_SOLUTIONS or (_has_exercises_heading(name) and sols):
        assert len(sols) >= 2, f"{name}: an Exercises section needs at least 2 solutions"
    for cell in _cells(name):
        src = _source(cell)
        if cell["cell_type"] == "markdown" and EXERCISE.search(src):
            assert "<details><summary>Hint</summary>" in src, f"{name}: an exercise without a hint"
            assert SOLUTION.search(src), f"{name}: an exercise without a python solution block"
            assert "assert " in SOLUTION.search(src).group(1), f"{name}: a solution without an assert"
    numbers = [n for n, _ in sols]
    assert numbers == list(range(1, len(numbers) + 1)), f"{name}: exercises numbered {numbers}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solutions_run_after_the_notebook(name, monkeypatch):
    sols = solutions(name)
    if not sols:
        pytest.skip(f"{name} has no solution blocks")
    cells = _cells(name)
    if any("NUMBA_ENABLE_CUDASIM" in _source(c) for c in cells):
        from numba.cuda import config
        if not config.ENABLE_CUDASIM:                    # the GPU run (MGRIT_GRU_REAL_CUDA=1)
            pytest.skip("its exercises are about numba's CUDA simulator")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(TUTORIALS)                         # relative paths as under nbmake
    import matplotlib.pyplot as plt
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    ns = {"__name__": "__tutorial__"}
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            exec(compile(_code(_source(cell)), f"{name}[cell {i}]", "exec"), ns)
    plt.close("all")
    for number, src in sols:
        exec(compile(src, f"{name}[exercise {number}]", "exec"), ns)
        plt.close("all")
