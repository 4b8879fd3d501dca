"""MkDocs hook: every notebook in ``tutorials/`` becomes a page of the site.

The notebooks live outside ``docs/`` (the test suite executes them there), and they are committed
without outputs. This hook reads each one at build time and adds a generated page
``tutorials/<name>.md``: markdown cells go through unchanged (their ``$...$`` maths is rendered by
arithmatex like the rest of the site), code cells become fenced ``python`` blocks. Outputs and
plots are not stored, so each page starts by saying how to run the notebook to see them.

No new dependency: a notebook is JSON (nbformat 4), read with the standard library.
"""
from __future__ import annotations

import json
import os
import re

TUTORIALS_DIR = "tutorials"  # where the notebooks sit, relative to the repository root


def _source(cell: dict) -> str:
    """A cell's source as one string (nbformat allows a string or a list of lines)."""
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _fence(code: str) -> str:
    """A fenced python block whose fence is longer than any backtick run inside the code."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}python\n{code.rstrip()}\n{fence}"


def notebook_to_markdown(nb: dict, filename: str) -> str:
    """The markdown page for one notebook.

    Parameters
    ----------
    nb : dict
        The notebook, as ``json.load`` reads an ``.ipynb`` file (nbformat 4).
    filename : str
        Its file name (``01_gru_by_hand.ipynb``), named in the how-to-run note.

    Returns
    -------
    str
        Markdown: the first markdown cell (the notebook's title and introduction), a note on
        running the notebook, then every cell in order.
    """
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{filename}: not a notebook (no 'cells' list)")
    note = (
        '!!! note "Run it to see the output"\n'
        f"    This page is the notebook `{TUTORIALS_DIR}/{filename}` without its output (the "
        "notebooks are\n    committed without outputs). Run it in Jupyter, or execute it as "
        "the test suite does:\n    `python -m pytest -q "
        f"{TUTORIALS_DIR}/{filename} --nbmake`."
    )
    parts: list[str] = []
    for i, cell in enumerate(nb["cells"]):
        kind = cell.get("cell_type")
        text = _source(cell)
        if kind not in ("markdown", "code", "raw"):
            raise ValueError(f"{filename}: cell {i} has unknown cell_type {kind!r}")
        if kind == "raw" or not text.strip():
            continue  # raw cells are for other converters (LaTeX, reST); nothing to show here
        parts.append(text.rstrip() if kind == "markdown" else _fence(text))
        if len(parts) == 1:
            # the note goes after the title cell, or first when the notebook opens with code
            parts.insert(1 if kind == "markdown" else 0, note)
    if not parts:
        parts.append(note)
    return "\n\n".join(parts) + "\n"


def tutorial_pages(tutorials_dir: str) -> dict[str, str]:
    """``{'tutorials/<stem>.md': markdown}`` for every ``.ipynb`` in ``tutorials_dir``, sorted."""
    pages = {}
    for name in sorted(os.listdir(tutorials_dir)):
        if name.endswith(".ipynb") and not name.startswith("."):
            with open(os.path.join(tutorials_dir, name), encoding="utf-8") as fh:
                nb = json.load(fh)
            pages[f"tutorials/{name[:-len('.ipynb')]}.md"] = notebook_to_markdown(nb, name)
    return pages


def on_files(files, config):
    """MkDocs event: add one generated page per tutorial notebook."""
    from mkdocs.structure.files import File

    root = os.path.dirname(os.path.abspath(config["config_file_path"]))
    for uri, content in tutorial_pages(os.path.join(root, TUTORIALS_DIR)).items():
        files.append(File.generated(config, uri, content=content))
    return files
