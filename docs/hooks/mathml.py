"""MkDocs hook: every formula becomes MathML when the site is built, so no page loads a script.

``pymdownx.arithmatex`` (generic mode) wraps the maths of the Markdown pages as
``<span class="arithmatex">\\(...\\)</span>`` (inline) and
``<div class="arithmatex">\\[...\\]</div>`` (display). The tutorial pages (rendered from the
notebooks by ``mkdocs-jupyter``) keep the notebooks' ``$...$`` and ``$$...$$`` in their Markdown
cells. This hook converts both to MathML with ``latex2mathml`` (pure Python, in the ``docs``
extra); browsers draw MathML natively.

A formula that ``latex2mathml`` does not understand fails the build with the page and the formula
named: ``latex2mathml`` silently keeps an unknown command as text (``<mi>\\foo</mi>``) and drops
an unknown environment, so the output is checked for a left-over backslash, for well-formed XML
and the source for balanced braces and known environments.
"""
from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert

# Environments latex2mathml renders (besides these, `aligned` is rewritten to `align*` below).
ENVIRONMENTS = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "smallmatrix",
                "array", "cases", "split", "align*", "aligned"}

# Rewrites applied before conversion: (pattern, replacement).
_REWRITES = [
    # latex2mathml knows align* (pairs of right/left columns, unnumbered), not aligned
    (re.compile(r"\\(begin|end)\{aligned\}"), r"\\\1{align*}"),
]
# Fixes applied to the MathML: named spaces are not in MathML Core.
_MATHML_FIXES = [
    ('width="negativethinmathspace"', 'width="-0.1667em"'),
    ('width="thinmathspace"', 'width="0.1667em"'),
    ('width="mediummathspace"', 'width="0.2222em"'),
    ('width="thickmathspace"', 'width="0.2778em"'),
]


class MathError(ValueError):
    """A formula that cannot be converted to MathML."""


def _check_source(tex: str) -> None:
    depth = 0
    for ch in re.sub(r"\\\\|\\[{}]", "", tex):     # line breaks; escaped braces are characters
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            raise MathError("a '}' closes nothing")
    if depth:
        raise MathError("unbalanced braces")
    for env in re.findall(r"\\(?:begin|end)\{([^}]*)\}", tex):
        if env not in ENVIRONMENTS:
            raise MathError(f"environment {env!r} is not supported (use one of "
                            f"{', '.join(sorted(ENVIRONMENTS))})")


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """One formula (LaTeX, without delimiters) as a ``<math>`` element.

    Raises
    ------
    MathError
        When the formula uses a command or environment that ``latex2mathml`` does not support, or
        is malformed.
    """
    tex = tex.strip()
    if not tex:
        raise MathError("empty formula")
    _check_source(tex)
    for pattern, repl in _REWRITES:
        tex = pattern.sub(repl, tex)
    try:
        out = convert(tex, display="block" if display else "inline")
    except Exception as exc:                         # latex2mathml's own errors
        raise MathError(f"{type(exc).__name__}: {exc}") from exc
    if "\\" in out:
        cmds = sorted(set(re.findall(r"\\[A-Za-z]+", out))) or ["a backslash"]
        raise MathError(f"not understood: {', '.join(cmds)}")
    try:
        ET.fromstring(out)
    except ET.ParseError as exc:
        raise MathError(f"the MathML is not well formed ({exc})") from exc
    for old, new in _MATHML_FIXES:
        out = out.replace(old, new)
    return out


def _math(tex: str, display: bool, where: str) -> str:
    try:
        out = tex_to_mathml(html.unescape(tex), display)
    except MathError as exc:
        raise MathError(f"{where}: cannot convert the formula\n    {tex.strip()}\n  {exc}") \
            from None
    return f'<div class="math-display">{out}</div>' if display else out


_ARITHMATEX = re.compile(
    r'<div class="arithmatex">\s*\\\[(.*?)\\\]\s*</div>'      # display
    r'|<span class="arithmatex">\s*\\\((.*?)\\\)\s*</span>',  # inline
    re.S)


def render_arithmatex(content: str, where: str = "page") -> str:
    """HTML with every arithmatex formula replaced by MathML (``where`` names the page in
    errors)."""
    def sub(m):
        return _math(m[1], True, where) if m[1] is not None else _math(m[2], False, where)
    return _ARITHMATEX.sub(sub, content)


# A notebook's rendered Markdown cell (nbconvert's lab template) and, inside it, the parts that
# are not maths: code and preformatted text.
_MD_CELL = re.compile(r'(<div class="[^"]*\bjp-RenderedMarkdown\b[^"]*"[^>]*>)(.*?)(</div>)', re.S)
_CODE = re.compile(r"(<(code|pre)\b.*?</\2>)", re.S)
_DOLLARS = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$", re.S)


def render_dollars(content: str, where: str = "page") -> str:
    """Notebook HTML with the ``$$...$$`` and ``$...$`` maths of its Markdown cells replaced by
    MathML (code in those cells is left alone)."""
    def cell(m):
        parts = _CODE.split(m[2])
        out = []
        i = 0
        while i < len(parts):
            text = parts[i]
            out.append(_DOLLARS.sub(
                lambda d: _math(d[1], True, where) if d[1] is not None
                else _math(d[2], False, where), text))
            if i + 1 < len(parts):
                out.append(parts[i + 1])             # a code/pre element, verbatim
            i += 3                                   # split() also returns the tag-name group
        return m[1] + "".join(out) + m[3]
    return _MD_CELL.sub(cell, content)


def on_page_content(html_content, page, config, files):
    """MkDocs event: convert the page's maths (all pages; notebook pages also their ``$``)."""
    from mkdocs.exceptions import PluginError

    where = page.file.src_uri
    try:
        html_content = render_arithmatex(html_content, where)
        if where.endswith(".ipynb"):
            html_content = render_dollars(html_content, where)
    except MathError as exc:
        raise PluginError(str(exc)) from None
    return html_content
