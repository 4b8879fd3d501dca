"""The code shown in the README, on the docs' home page and in the training guide is code that
runs (docs/cluster.md's MPI script runs in test_mpi.py, docs/cuda.md's in test_cuda_backend.py)."""
import contextlib
import io
import math
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]                  # the repository
PAGES = ["README.md", "docs/index.md"]


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page):
    blocks = _python_blocks(page)
    assert blocks, f"{page} shows no Python code"
    for code in blocks:
        exec(compile(code, f"{page}:python", "exec"), {"__name__": "__snippet__"})


@pytest.mark.parametrize("page", ["README.md", "docs/tutorials.md"])
def test_tutorial_lists_name_every_notebook_and_no_other(page):
    """The README and the docs' tutorials page list exactly the notebooks in tutorials/."""
    on_disk = {p.name for p in (ROOT / "tutorials").glob("*.ipynb")}
    listed = set(re.findall(r"\b(\d\d_\w+\.ipynb)\b", (ROOT / page).read_text()))
    assert on_disk and listed == on_disk


def test_training_guide_python_block_runs(tmp_path, monkeypatch):
    """docs/guide/training.md's Python block, shrunk (T, epochs), trains and writes its run."""
    code, = _python_blocks("docs/guide/training.md")
    for big, small in (("seq_len=512", "seq_len=64"), ("epochs=4", "epochs=1")):
        assert big in code, f"docs/guide/training.md changed: {big!r} not in its block"
        code = code.replace(big, small)
    *body, last = code.strip().splitlines()                   # the last line is an expression
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "__snippet__"}
    exec(compile("\n".join(body), "docs/guide/training.md:python", "exec"), ns)
    acc, residual = eval(compile(last, "docs/guide/training.md:python", "eval"), ns)
    assert 0.0 <= acc <= 1.0 and residual >= 0.0 and math.isfinite(residual)
    assert (tmp_path / "runs" / "t512" / "checkpoint.npz").exists()


def _shell_commands(path):
    """The mgrit-gru command lines of a page's shell blocks (continuations joined; comments,
    the launcher in front and a shell tail dropped; loop variables set), as argument lists."""
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", (ROOT / path).read_text(),
                            flags=re.S):
        # a loop variable (for T in 32 64; do ...) takes its first value
        loops = dict(re.findall(r"\bfor (\w+) in (\S+)", block))
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            for name, value in loops.items():
                line = line.replace("${%s}" % name, value).replace("$" + name, value)
            m = re.search(r"(?:\bmgrit-gru|-m mgrit_gru)\s+(.*)", line)
            if m is None or "..." in m[1]:                   # an elided command line
                continue
            args = shlex.split(m[1].replace("$P", "1"))
            for tail in ("&&", ";", "|", ">", "2>"):
                args = args[:args.index(tail)] if tail in args else args
            yield args


DOC_PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))


def test_command_lines_in_the_docs_parse():
    """Every mgrit-gru command shown in a shell block is one the CLI accepts (flags renamed or
    dropped must not leave the docs behind)."""
    from mgrit_gru.tools.cli import build_parser
    parser = build_parser()
    seen = 0
    for page in DOC_PAGES:
        for args in _shell_commands(page):
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err):
                    parser.parse_args(args)
            except SystemExit:
                pytest.fail(f"{page}: mgrit-gru {' '.join(args)}\n{err.getvalue()}")
            seen += 1
    assert seen >= 10, f"only {seen} command lines found: the extraction is broken"
