"""Every test file, script or module path the docs, tutorials and GPU scripts name exists: a
moved file must not leave a page (or a GPU run, where no test would notice) pointing nowhere."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("docs/**/*.sh"),
                  *ROOT.glob("tutorials/*.ipynb"), *ROOT.glob("mgrit_gru/**/*.py")])
PATH = re.compile(r"\b((?:tests|mgrit_gru|docs/evidence|docs/benchmarks)/[\w/]+\.(?:py|sh))")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_exist(source):
    named = set(PATH.findall(source.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []
