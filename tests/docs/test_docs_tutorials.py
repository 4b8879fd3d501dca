"""The docs hook that turns tutorials/*.ipynb into site pages (docs/hooks/tutorials.py).

The strict mkdocs build in CI renders the pages; these tests check what the build cannot: that
every cell of every notebook reaches its page, in order and verbatim, and that the site's nav
lists every notebook.
"""
import importlib.util
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TUTORIALS = os.path.join(ROOT, "tutorials")


def _hook():
    spec = importlib.util.spec_from_file_location(
        "tutorials_hook", os.path.join(ROOT, "docs", "hooks", "tutorials.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


hook = _hook()
NOTEBOOKS = sorted(f for f in os.listdir(TUTORIALS) if f.endswith(".ipynb"))


def _cells(name):
    with open(os.path.join(TUTORIALS, name), encoding="utf-8") as fh:
        nb = json.load(fh)
    return nb, [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_cell_reaches_the_page_in_order(name):
    nb, cells = _cells(name)
    page = hook.notebook_to_markdown(nb, name)
    pos = 0
    for kind, text in cells:
        if not text.strip():
            continue
        text = text.rstrip()
        if kind == "code":
            text = f"```python\n{text}\n```"
        found = page.find(text, pos)
        assert found >= 0, f"{name}: a {kind} cell is missing or out of order:\n{text[:200]}"
        pos = found + len(text)
    n_code = sum(1 for kind, text in cells if kind == "code" and text.strip())
    assert page.count("```python\n") == n_code
    # the first cell is the title; the run-it note follows it
    assert page.startswith(cells[0][1].rstrip())
    assert f"tutorials/{name}" in page and "--nbmake" in page


def test_a_fence_is_longer_than_backticks_in_the_code():
    code = 'doc = """\n```python\nx = 1\n```\n"""\nprint(doc)'
    nb = {"cells": [{"cell_type": "markdown", "source": "# T"},
                    {"cell_type": "code", "source": code.splitlines(keepends=True)}]}
    page = hook.notebook_to_markdown(nb, "t.ipynb")
    assert "````python\n" + code + "\n````" in page


def test_a_notebook_opening_with_code_gets_the_note_first():
    nb = {"cells": [{"cell_type": "code", "source": "x = 1"},
                    {"cell_type": "raw", "source": "\\LaTeX only"}]}
    page = hook.notebook_to_markdown(nb, "t.ipynb")
    assert page.startswith('!!! note "Run it to see the output"')
    assert "```python\nx = 1\n```" in page and "LaTeX only" not in page


@pytest.mark.parametrize("bad, msg", [
    ({"worksheets": []}, "not a notebook"),
    ({"cells": [{"cell_type": "heading", "source": "x"}]}, "cell 0 has unknown cell_type"),
])
def test_bad_notebooks_are_named(bad, msg):
    with pytest.raises(ValueError, match=msg):
        hook.notebook_to_markdown(bad, "bad.ipynb")


def test_pages_cover_every_notebook_and_nav_lists_them():
    pages = hook.tutorial_pages(TUTORIALS)
    assert sorted(pages) == [f"tutorials/{n[:-6]}.md" for n in NOTEBOOKS]
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as fh:
        config = fh.read()
    listed = re.findall(r"^\s*- (tutorials/\S+\.md)\s*$", config, flags=re.M)
    assert listed == sorted(pages), "mkdocs.yml's nav must list every tutorial page, in order"
    with open(os.path.join(ROOT, "docs", "tutorials.md"), encoding="utf-8") as fh:
        overview = fh.read()
    for uri in pages:
        assert f"]({uri})" in overview, f"docs/tutorials.md does not link {uri}"
