"""The tutorial pages: docs/hooks/tutorials.py adds tutorials/*.ipynb to the site, and
mkdocs-jupyter executes and renders them (mkdocs.yml).

CI's strict docs build executes every notebook (minutes); these tests check in seconds what the
build relies on: every notebook becomes a page that the nav and the overview list, the plugin is
set to execute and to fail on an error, and nbconvert's HTML for a notebook, once the hooks have
run, loads nothing from a CDN and has its maths as MathML.
"""
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(p.name for p in TUTORIALS.glob("*.ipynb"))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


hook = _load("tutorials")
mathml = _load("mathml")
offline = _load("offline")


def _site_config():
    import yaml
    from mkdocs.utils import yaml as mkdocs_yaml

    with open(ROOT / "mkdocs.yml", encoding="utf-8") as fh:
        return yaml.load(fh, Loader=mkdocs_yaml.get_yaml_loader())


def test_pages_cover_every_notebook_and_nav_and_overview_list_them():
    uris = hook.page_uris(str(TUTORIALS))
    assert uris == [f"tutorials/{n}" for n in NOTEBOOKS] and len(uris) >= 7
    config = (ROOT / "mkdocs.yml").read_text()
    listed = re.findall(r"^\s*- (tutorials/\S+\.ipynb)\s*$", config, flags=re.M)
    assert listed == uris, "mkdocs.yml's nav must list every tutorial page, in order"
    overview = (ROOT / "docs" / "tutorials.md").read_text()
    for uri in uris:
        assert f"]({uri})" in overview, f"docs/tutorials.md does not link {uri}"


def test_mkdocs_jupyter_executes_the_notebooks_and_fails_on_an_error():
    cfg = _site_config()
    plugins = {next(iter(p)) if isinstance(p, dict) else p: (p[next(iter(p))]
               if isinstance(p, dict) else {}) for p in cfg["plugins"]}
    nb = plugins["mkdocs-jupyter"]
    assert nb["execute"] is True and nb["allow_errors"] is False
    assert nb["include"] == ["tutorials/*.ipynb"] and nb.get("include_requirejs") is False
    assert not nb.get("custom_mathjax_url")
    hooks = cfg["hooks"]
    # tutorials.py strips the CDN scripts before mathml.py converts the maths; offline.py checks
    assert [Path(h).name for h in hooks] == ["tutorials.py", "mathml.py", "offline.py"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs(name):
    nb = json.loads((TUTORIALS / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


@pytest.fixture(scope="module")
def page_html():
    """nbconvert's HTML for tutorial 02 as mkdocs-jupyter makes it (not executed), after the
    tutorials and maths hooks."""
    from mkdocs_jupyter import convert

    raw = convert.nb2html(str(TUTORIALS / "02_mgrit_linear.ipynb"), execute=False,
                          allow_errors=False, include_requirejs=False, custom_mathjax_url="")
    assert re.search(r"mathjax", raw, re.I), "nbconvert no longer loads MathJax: update the hook"
    html = hook.strip_cdn_scripts(raw)
    html = hook.add_run_note(html, "02_mgrit_linear.ipynb")
    return raw, mathml.render_dollars(html, "tutorials/02_mgrit_linear.ipynb")


def test_a_tutorial_page_loads_nothing_from_the_network(page_html):
    raw, html = page_html
    assert offline.remote_loads(html) == []
    assert re.search(r"<script\b[^>]*\bsrc=\"[^\"]*\"", html) is None   # not even src=""
    assert not re.search(r"mathjax|mermaid\.esm", html, re.I)
    assert "clipboard-copy" in html                                   # the rest is still there


def test_a_tutorial_page_has_its_maths_as_mathml_and_the_note(page_html):
    raw, html = page_html
    cells = re.findall(r'jp-RenderedMarkdown[^>]*>(.*?)</div>', html, flags=re.S)
    assert cells and not any("$" in re.sub(r"<(code|pre)\b.*?</\1>", "", c, flags=re.S)
                             for c in cells)
    assert html.count("<math ") >= 20
    head, _, rest = html.partition("</h1>")
    assert rest.startswith('<div class="admonition note">')
    assert "tutorials/02_mgrit_linear.ipynb" in rest[:600] and "--nbmake" in rest[:600]


def test_the_note_goes_first_without_a_title():
    assert hook.add_run_note("<p>x</p>", "t.ipynb").startswith('<div class="admonition note">')
