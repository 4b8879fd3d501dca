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
