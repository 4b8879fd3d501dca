"""MkDocs hook: the site works offline; a page that would fetch from another host fails the build.

Links to other sites (``<a href="https://...">``) are fine: the reader follows them or not. What
is refused is anything the browser fetches by itself when it shows the page: a script, style
sheet, font, image, frame or media source with an absolute ``http(s)://`` or ``//`` address, a
``preconnect``, and an inline script or style that imports from such an address.
"""
from __future__ import annotations

import re

_REMOTE = r"(?:https?:)?//"
_PATTERNS = [
    # an element the browser loads from its src/href/srcset/data/poster
    re.compile(r"<(?:script|img|iframe|source|video|audio|embed|object|track|input)\b[^>]*?"
               rf"\b(?:src|srcset|data|poster)\s*=\s*[\"']?\s*{_REMOTE}[^\"'\s>]*", re.I),
    # <link> of any kind but a plain navigation link (rel=canonical/alternate/... are not loads,
    # but stylesheet, preconnect, preload, icon and manifest are)
    re.compile(r"<link\b(?=[^>]*\brel\s*=\s*[\"']?(?:stylesheet|preconnect|preload|prefetch|"
               r"dns-prefetch|modulepreload|icon|shortcut icon|manifest|apple-touch-icon))"
               rf"[^>]*\bhref\s*=\s*[\"']?\s*{_REMOTE}[^\"'\s>]*", re.I),
    # imports inside inline scripts and styles
    re.compile(rf"\bimport\s*\(\s*[\"'`]{_REMOTE}[^\"'`]*", re.I),
    re.compile(rf"\bfrom\s*[\"'`]{_REMOTE}[^\"'`]*", re.I),
    re.compile(rf"@import\s+(?:url\()?\s*[\"']?{_REMOTE}[^\"')]*", re.I),
    re.compile(rf"url\(\s*[\"']?{_REMOTE}[^\"')]*\)", re.I),
]


def remote_loads(html: str) -> list[str]:
    """The pieces of ``html`` that make a browser fetch from another host (empty when none)."""
    found = []
    for pattern in _PATTERNS:
        found += [m.group(0)[:160] for m in pattern.finditer(html)]
    return found


def on_post_page(output, page, config):
    """MkDocs event: refuse a page that loads anything from the network."""
    from mkdocs.exceptions import PluginError

    bad = remote_loads(output)
    if bad:
        raise PluginError(f"{page.file.src_uri}: the page would load from the network:\n    "
                          + "\n    ".join(bad))
    return output
