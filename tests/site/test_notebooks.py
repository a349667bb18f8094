"""Every executed page offers its notebook, and the download runs on its own.

The notebook is fetched over HTTP from the served site through the link the
page's download menu offers, then executed top to bottom in a fresh kernel
whose working folder is a temporary one (nothing of the repository can be
imported by accident) and from which myst-nb is hidden (the notebook
promises to need only the package and Jupyter). The site must
also show no launch buttons: none can point at something that works (see
conf.py).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import nbformat
import pytest
from nbclient import NotebookClient

from tests.site.conftest import SITE, site_pages

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The package the site was built from (conf.py puts it first for the build).
# The kernel gets it the same way, because the environment's installed copy
# may belong to another checkout (an editable install shared between
# checkouts), whose package does not match these chapters.
SRC = ROOT / "src"
# Seconds one cell may take; the slowest chapter takes about 40 s in all.
CELL_TIMEOUT = 300


def _executed_pages() -> list[str]:
    """The pages MyST-NB executes: sources whose front matter names a kernel."""
    pages = []
    for source in sorted(DOCS.glob("*.md")):
        text = source.read_text(encoding="utf-8")
        front = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
        if front and re.search(r"^kernelspec:", front.group(1), re.MULTILINE):
            pages.append(f"{source.stem}.html")
    return pages


EXECUTED = _executed_pages()


class _Tags(HTMLParser):
    """Every element's classes, and every link's target and classes."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: list[str] = []
        self.links: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        classes = (named.get("class") or "").split()
        self.classes.extend(classes)
        if tag == "a":
            self.links.append((named.get("href") or "", classes))


def _tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def _notebook_links(html: str) -> list[str]:
    """The targets of the download menu's notebook entries."""
    return [href for href, cls in _tags(html).links if "btn-download-notebook-button" in cls]


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def test_the_executed_pages_are_found():
    assert "02-attention-as-soft-lookup.html" in EXECUTED
    assert "playground.html" in EXECUTED
    assert "index.html" not in EXECUTED


@pytest.mark.parametrize("path", site_pages())
def test_download_menu_offers_a_notebook_exactly_on_executed_pages(path):
    tags = _tags((SITE / path).read_text(encoding="utf-8"))
    notebooks = [h for h, cls in tags.links if "btn-download-notebook-button" in cls]
    assert len(notebooks) == (1 if path in EXECUTED else 0)
    # html_copy_source is off: a link to the page source would lead nowhere.
    assert "btn-download-source-button" not in tags.classes


LAUNCH_TARGET = re.compile(
    r"colab|binder|jupyterhub|deepnote|jupyterlite|/master/|\.md($|[?#])", re.IGNORECASE
)


@pytest.mark.parametrize("path", site_pages())
def test_no_launch_buttons(path):
    tags = _tags((SITE / path).read_text(encoding="utf-8"))
    assert [c for c in tags.classes if "launch" in c] == []
    assert [h for h, _ in tags.links if LAUNCH_TARGET.search(h)] == []


# Appended to the downloaded notebook: shows where the package came from and
# that myst-nb was out of reach.
PROBE = """\
import attention

print(attention.__file__)
try:
    import myst_nb
except ImportError:
    print("myst-nb hidden")
"""


@pytest.mark.parametrize("path", EXECUTED)
def test_downloaded_notebook_runs_in_a_fresh_kernel(site_url, tmp_path, path):
    page_url = f"{site_url}/{path}"
    links = _notebook_links(_fetch(page_url).decode("utf-8"))
    assert len(links) == 1, f"{path} offers no notebook download"
    text = _fetch(urljoin(page_url, links[0])).decode("utf-8")
    assert json.loads(text)["nbformat"] == 4
    notebook = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    assert any(c.cell_type == "code" and c.outputs for c in notebook.cells), "no outputs"
    intro = "\n".join(c.source for c in notebook.cells[:3] if c.cell_type == "markdown")
    assert "pip install" in intro
    assert "attention-from-scratch" in intro

    # A module named myst_nb that cannot be imported, found before the real one.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "myst_nb.py").write_text(
        'raise ModuleNotFoundError("hidden by the test", name="myst_nb")\n', encoding="utf-8"
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(SRC)])}
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE, id="test-probe"))
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
    )
    client.execute(env=env)  # raises CellExecutionError, with the traceback, on any error

    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    probe = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert probe == f"{SRC / 'attention' / '__init__.py'}\nmyst-nb hidden\n"
