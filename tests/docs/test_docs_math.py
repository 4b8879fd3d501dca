"""The site's maths is MathML made at build time (docs/hooks/mathml.py), and its pages load nothing
from the network (docs/hooks/offline.py).

The full docs build (CI's `mkdocs build --strict`) executes the notebooks and takes minutes; these
tests take seconds: they build the theory pages alone, with the site's theme, Markdown extensions
and hooks, and convert every formula of every page and notebook through the hook's function.
"""
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THEORY = sorted(p.name for p in (ROOT / "docs" / "theory").glob("*.md"))
PAGES = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
NOTEBOOKS = sorted(p.name for p in (ROOT / "tutorials").glob("*.ipynb"))
# what the browser would fetch from another host: <script src> and <link href>
REMOTE = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.I)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mathml = _load("mathml")
offline = _load("offline")


def _site_config():
    import yaml
    from mkdocs.utils import yaml as mkdocs_yaml

    with open(ROOT / "mkdocs.yml", encoding="utf-8") as fh:
        return yaml.load(fh, Loader=mkdocs_yaml.get_yaml_loader())


@pytest.fixture(scope="module")
def theory_site(tmp_path_factory):
    """The theory pages built with the site's theme, extensions, CSS/JS and its maths and
    offline hooks (not the notebooks or the API pages: they need minutes, CI builds them)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    tmp = tmp_path_factory.mktemp("theory_site")
    cfg = _site_config()
    docs = tmp / "docs"
    (docs / "theory").mkdir(parents=True)
    for name in THEORY:
        (docs / "theory" / name).write_text((ROOT / "docs" / "theory" / name).read_text())
    for sub in ("img", "stylesheets", "js"):
        src = ROOT / "docs" / sub
        if src.is_dir():
            for f in src.iterdir():
                if f.is_file():
                    (docs / sub).mkdir(exist_ok=True)
                    (docs / sub / f.name).write_bytes(f.read_bytes())
    (docs / "index.md").write_text("# Home\n")
    hooks = [str(ROOT / h) for h in cfg["hooks"] if not h.endswith("tutorials.py")]
    assert any(h.endswith("mathml.py") for h in hooks) and any(h.endswith("offline.py")
                                                                 for h in hooks)
    small = {k: cfg[k] for k in ("site_name", "theme", "markdown_extensions")}
    small.update(docs_dir=str(docs), site_dir=str(tmp / "site"), hooks=hooks, plugins=[],
                 nav=["index.md"] + [f"theory/{n}" for n in THEORY],
                 extra_css=cfg.get("extra_css", []),
                 extra_javascript=cfg.get("extra_javascript", []))
    config_file = tmp / "mkdocs.yml"
    import yaml
    config_file.write_text(yaml.safe_dump(small))
    build(load_config(str(config_file)))
    return tmp / "site"


def test_the_site_config_loads_nothing_from_a_cdn():
    cfg = _site_config()
    for key in ("extra_javascript", "extra_css"):
        for entry in cfg.get(key, []):
            path = entry if isinstance(entry, str) else entry.get("path", "")
            assert not re.match(r"(?:https?:)?//", path), f"mkdocs.yml {key}: {path}"
    assert cfg["theme"].get("font") is False, "the theme would load Google Fonts"


def _markdown(page):
    """docs/<page> as the site's Markdown extensions render it (before the hooks)."""
    import markdown

    exts, configs = [], {}
    for e in _site_config()["markdown_extensions"]:
        name, opts = (e, {}) if isinstance(e, str) else next(iter(e.items()))
        exts.append(name)
        configs[name] = opts or {}
    return markdown.markdown((ROOT / "docs" / page).read_text(), extensions=exts,
                             extension_configs=configs)


@pytest.mark.parametrize("name", THEORY)
def test_theory_page_is_offline_and_its_maths_is_mathml(theory_site, name):
    html = (theory_site / "theory" / name[:-3] / "index.html").read_text()
    assert REMOTE.findall(html) == []
    assert offline.remote_loads(html) == []
    assert "arithmatex" not in html and "\\(" not in html and "\\[" not in html
    plain = _markdown(f"theory/{name}")
    n_inline = plain.count('<span class="arithmatex">')
    n_display = plain.count('<div class="arithmatex">')
    assert n_inline > 10 and n_display > 3
    assert html.count('display="inline"') == n_inline
    assert html.count('<div class="math-display"><math xmlns="http://www.w3.org/1998/Math/MathML"'
                      ' display="block"') == n_display


@pytest.mark.parametrize("name", THEORY)
def test_a_numbered_list_does_not_restart_after_a_figure(name):
    """A figure inside a numbered item must be indented by four spaces, or Markdown ends the
    list there and numbers the rest from 1 again: one <ol> per section."""
    for section in re.split(r"<h[1-6]\b", _markdown(f"theory/{name}")):
        assert section.count("<ol") <= 1, section[:200]


@pytest.mark.parametrize("page", PAGES)
def test_every_formula_on_every_page_converts(page):
    """Markdown as the site renders it, through the hook: no formula is left behind."""
    html = _markdown(page)
    out = mathml.render_arithmatex(html, page)
    assert 'class="arithmatex"' not in out
    assert out.count("<math ") == html.count('class="arithmatex"')


def _notebook_formulas(name):
    nb = json.loads((ROOT / "tutorials" / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        text = re.sub(r"```.*?```|`[^`]*`", "", text, flags=re.S)  # code is not maths
        for m in mathml._DOLLARS.finditer(text):
            yield (m[1], True) if m[1] is not None else (m[2], False)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_formula_in_every_notebook_converts(name):
    formulas = list(_notebook_formulas(name))
    assert formulas, f"{name} has no maths: the $ extraction is broken"
    for tex, display in formulas:
        assert mathml.tex_to_mathml(tex, display).startswith("<math ")


def test_notebook_maths_outside_code_becomes_mathml():
    cell = ('<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" '
            'data-mime-type="text/markdown"><p>With $x_i &lt; 1$ and</p>\n'
            '$$\n\\begin{aligned} a &amp;= b \\\\ c &amp;= d \\end{aligned}\n$$\n'
            '<p><code>cost = $5 and $6</code></p><pre>echo $HOME $PATH</pre></div>'
            '<div class="jp-OutputArea-output"><pre>$1 $2</pre></div>')
    out = mathml.render_dollars(cell, "t.ipynb")
    assert out.count("<math ") == 2 and 'display="block"' in out and "<mo>&#x0003C;</mo>" in out
    assert "<code>cost = $5 and $6</code>" in out and "<pre>echo $HOME $PATH</pre>" in out
    assert out.endswith('<div class="jp-OutputArea-output"><pre>$1 $2</pre></div>')


@pytest.mark.parametrize("tex, msg", [
    (r"\foo{x}", r"not understood: \\foo"),
    (r"\begin{eqnarray} a \end{eqnarray}", "environment 'eqnarray' is not supported"),
    (r"\frac{a}{b", "unbalanced braces"),
    (r"x^", "MissingSuperScriptOrSubscriptError"),
    ("", "empty formula"),
])
def test_a_formula_latex2mathml_cannot_convert_fails_loudly(tex, msg):
    with pytest.raises(mathml.MathError, match=msg):
        mathml.tex_to_mathml(tex)
    html = f'<p>see <span class="arithmatex">\\({tex}\\)</span></p>'
    with pytest.raises(mathml.MathError, match=r"theory/x\.md: cannot convert the formula"):
        mathml.render_arithmatex(html, "theory/x.md")


def test_constructs_the_pages_use_convert():
    for tex in [r"\begin{aligned} r &= \sigma(x) \\ h^+ &= (1-z) \odot n \end{aligned}",
                r"\underbrace{a + b}_{\text{two}}", r"\operatorname{diag}(x)",
                r"{\textstyle\sum_i} x_i", r"\lceil N/m \rceil", r"\mathcal L",
                r"x\!y", r"\left\{ a \right\}", r"\\{"[1:]]:
        out = mathml.tex_to_mathml(tex, display=True)
        assert out.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"')
        assert "\\" not in out and "negativethinmathspace" not in out


def test_the_offline_check_finds_remote_loads():
    bad = ['<script src="https://cdn.example.org/m.js"></script>',
           '<link rel="stylesheet" href="//fonts.example.org/css">',
           '<link rel="preconnect" href="https://fonts.gstatic.com">',
           '<script type="module">const m = await import("https://x.org/m.mjs")</script>',
           '<style>@import url("https://x.org/a.css");</style>',
           '<img src="http://x.org/a.png">']
    for html in bad:
        assert offline.remote_loads(html), html
    good = ('<a href="https://github.com/XBraid/xbraid">XBraid</a>'
            '<link rel="canonical" href="https://example.org/page/">'
            '<script src="../assets/javascripts/bundle.js"></script>'
            '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi></math>')
    assert offline.remote_loads(good) == []
