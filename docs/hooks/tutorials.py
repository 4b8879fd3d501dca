"""MkDocs hook: every notebook in ``tutorials/`` becomes a page of the site, with its outputs.

The notebooks live outside ``docs/`` (the test suite executes them there) and are committed
without outputs. This hook adds each one to the site's files as ``tutorials/<name>.ipynb``; the
``mkdocs-jupyter`` plugin (configured in ``mkdocs.yml``) then executes it at build time, in
``tutorials/``, and renders code, text and outputs, plots included. A notebook that raises fails
the build.

The HTML that nbconvert produces loads MathJax (and Mermaid, when a cell has a diagram) from a
CDN; the site works offline, so this hook removes those scripts (``mathml.py`` renders the
notebooks' maths at build time) and puts a short note under the title that names the notebook.
"""
from __future__ import annotations

import os
import re

from mkdocs.plugins import event_priority

TUTORIALS_DIR = "tutorials"  # where the notebooks sit, relative to the repository root


def notebooks(tutorials_dir: str) -> list[str]:
    """The ``.ipynb`` file names in ``tutorials_dir``, sorted."""
    return sorted(n for n in os.listdir(tutorials_dir)
                  if n.endswith(".ipynb") and not n.startswith("."))


def page_uris(tutorials_dir: str) -> list[str]:
    """The site paths (``tutorials/<name>.ipynb``) of the tutorial pages, sorted."""
    return [f"{TUTORIALS_DIR}/{n}" for n in notebooks(tutorials_dir)]


# nbconvert's MathJax loader (a <script src>, then its configuration) and Mermaid module loader.
_CDN_BLOCKS = [
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S),
    re.compile(r"<script\b[^>]*>(?:(?!</script>).)*?(?:mathjax|mermaid)(?:(?!</script>).)*"
               r"</script>", re.S | re.I),
    re.compile(r"<script\b[^>]*\bsrc=\"(?:https?:)?//[^\"]*\"[^>]*>\s*</script>", re.S),
]


def strip_cdn_scripts(content: str) -> str:
    """Notebook HTML without the scripts nbconvert loads from a CDN."""
    for pattern in _CDN_BLOCKS:
        content = pattern.sub("", content)
    return content


def run_note(filename: str) -> str:
    """The note put under a tutorial page's title."""
    return (
        '<div class="admonition note"><p class="admonition-title">A notebook</p>'
        f"<p>This page is the notebook <code>{TUTORIALS_DIR}/{filename}</code>, executed when "
        "the site was built. Run it yourself in Jupyter, or as the test suite does: "
        f"<code>python -m pytest -q {TUTORIALS_DIR}/{filename} --nbmake</code>.</p></div>"
    )


def add_run_note(content: str, filename: str) -> str:
    """The note after the first ``</h1>`` (or first, when the page has no title)."""
    head, sep, tail = content.partition("</h1>")
    return head + sep + run_note(filename) + tail if sep else run_note(filename) + content


@event_priority(100)  # before mkdocs-jupyter's on_files, which claims the .ipynb files
def on_files(files, config):
    """MkDocs event: add each tutorial notebook as a site file (outside ``docs/``)."""
    from mkdocs.structure.files import File

    root = os.path.dirname(os.path.abspath(config["config_file_path"]))
    # src_dir is the repository root: tutorials/<name>.ipynb is then the notebook itself (a
    # File.generated would hide its path from mkdocs-jupyter, which reads it)
    for uri in page_uris(os.path.join(root, TUTORIALS_DIR)):
        files.append(File(uri, src_dir=root, dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


@event_priority(100)  # before mathml.py's on_page_content
def on_page_content(html, page, config, files):
    """MkDocs event: on a tutorial page, drop the CDN scripts and add the note."""
    uri = page.file.src_uri
    if uri.startswith(f"{TUTORIALS_DIR}/") and uri.endswith(".ipynb"):
        html = add_run_note(strip_cdn_scripts(html), os.path.basename(uri))
    return html
