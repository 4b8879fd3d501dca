"""The code shown in the README and on the docs' home page is code that runs."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
