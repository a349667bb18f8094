"""Sphinx configuration for the attention textbook.

Build with ``make html`` (see the Makefile): sources in ``docs/``, this file
at the root, output in ``_build/html``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "src"
# Where the notebook execution cache lives. ATTENTION_BUILD_DIR moves it, so
# that several builds of one checkout (for example into different output
# folders) never share a cache database.
BUILD = Path(os.environ.get("ATTENTION_BUILD_DIR", ROOT / "_build")).resolve()

# The chapters must execute the package that sits next to this file, not some
# other installed copy: the kernel inherits this environment.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

# The version is read from the source, not imported: importing the package
# imports torch, over a second added to every build, even one with nothing to do.
__version__ = re.search(
    r'^__version__ = "(.+)"$', (SRC / "attention" / "__init__.py").read_text("utf-8"), re.M
).group(1)

# -- Project ------------------------------------------------------------------

project = "Attention, from scratch"
author = "The attention-from-scratch authors"
copyright = "2026, the attention-from-scratch authors"
version = release = __version__
language = "en"

extensions = [
    "myst_nb",
    "autodoc2",
    "sphinx.ext.intersphinx",
    "sphinx_copybutton",
    "sphinx_design",
    "sphinxcontrib.bibtex",
]

# Paths below resolve against docs/ (exclude_patterns, autodoc2) or against
# this file's folder (bibtex, static files, templates, favicon).
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
nitpicky = True

# -- MyST and notebook execution --------------------------------------------

myst_enable_extensions = ["amsmath", "colon_fence", "deflist", "dollarmath", "substitution"]
myst_heading_anchors = 3


# Environment variables that make MKL and ATen take other kernels, so that a
# chapter's floats can differ in the last bit. `make html-fp` builds the
# chapters with them set, on every `make test`: the chapters' checks must hold
# on either code path.
FLOATING_POINT_SETTINGS = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def _execution_cache() -> Path:
    """A cache folder named by what every chapter's outputs depend on.

    The execution cache keys a page on its own code cells only. The versions
    of the numeric libraries and the floating-point settings can change any
    page's numbers, so they name the folder: a new torch, say, lands in a
    fresh folder (and the changed ``nb_execution_cache_path`` makes Sphinx
    re-read every page). The package's own source does not: an edit to
    ``src/attention`` re-executes exactly the pages whose kernels loaded the
    edited file (docs/_ext/package_deps.py).
    Reverting a version change finds its old folder again; all but the newest
    few folders are pruned.
    """
    digest = hashlib.sha256()
    # Bump when package_deps' record changes meaning: older caches lack it.
    digest.update(b"package_deps 1")
    for dist in ("torch", "numpy", "matplotlib", "ipykernel"):
        try:
            digest.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist} missing".encode())
    # Settings that choose another floating-point code path (the Makefile's
    # html-fp build sets them): outputs computed under one are no outputs of
    # the other, so each setting gets its own cache.
    for var in FLOATING_POINT_SETTINGS:
        digest.update(f"{var}={os.environ.get(var, '')}".encode())
    caches = BUILD / ".jupyter_cache"
    folder = caches / digest.hexdigest()[:16]
    if caches.is_dir():
        others = sorted(
            (p for p in caches.iterdir() if p.is_dir() and p != folder),
            key=lambda p: p.stat().st_mtime,
        )
        for old in others[:-3]:
            shutil.rmtree(old, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    folder.touch()  # newest first when pruning
    return folder


nb_execution_mode = "cache"
nb_execution_cache_path = str(_execution_cache())
# Models that several chapters train alike (chapters 5 to 8 train the grammar
# model with the same settings, chapter 12 and the playground the induction
# model) are trained once per build and loaded after, also by a chapter that
# executes again after an edit; a kernel that needs a model another kernel is
# training waits for it (a lock per model) instead of training it twice:
# src/attention/_model_cache.py keys each by its arguments, the source of every
# package module the training imports, the library versions and the
# floating-point settings, so a stored model is never stale. It lives in the
# build folder: a cold build starts without it.
os.environ.setdefault("ATTENTION_MODEL_CACHE", str(BUILD / ".model_cache"))
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# docs/_ext/package_deps.py re-executes a page when a package file its kernel
# loaded changes, and no other page.
extensions.append("package_deps")
package_deps_src = "src"

# -- Parallel reading -----------------------------------------------------------

# `make html` reads pages in parallel (-j, see the Makefile), so notebooks
# execute side by side. docs/_ext/parallel_read.py creates the execution
# cache's database before Sphinx forks its readers (two readers creating it
# at once crash sqlite) and spreads the notebooks evenly over the readers,
# using their execution times from the cache or, in a fresh clone, from the
# last `make bench-build`.
extensions.append("parallel_read")
parallel_read_timings = str(ROOT / "benchmarks" / "results" / "build.json")

# A cold build starts one kernel per notebook, and each would import torch
# again. docs/_ext/warm_kernels.py forks every kernel from one server that the
# build starts and that imports torch once (Linux; never when anything that
# could change a number differs; ATTENTION_WARM_KERNELS=0 turns it off).
extensions.append("warm_kernels")

# sphinx-autodoc2 leaves nodes pointing at the documents their docstrings were
# parsed in, and through them at the whole build environment, which Sphinx
# then pickles into every API page's doctree (1.2 MB each instead of 0.1 MB).
# docs/_ext/lean_doctrees.py moves those nodes to their page's document.
extensions.append("lean_doctrees")

# -- Data files that pages read -------------------------------------------------

# The benchmarks appendix plots the JSON files that `make bench` writes.
# docs/_ext/page_data.py makes new results re-execute that page, and only it.
extensions.append("page_data")
page_data = {
    "benchmarks": [
        f"benchmarks/results/{suite}.json"
        for suite in ("layers", "kernels", "generation", "imports")
    ],
    # A GPU timing reported in issue 23, with its provenance.
    "13-attention-at-scale": ["benchmarks/results/flash-gpu-reported.json"],
}

# -- API reference (sphinx-autodoc2) ------------------------------------------

# The package page documents the public API under the names users import
# (``attention.MultiHeadAttention``, from ``__all__``). Submodules whose
# contents are all re-exported get no page of their own; every other module
# (attention.viz, attention.widgets, ...) gets one, and docs/api.md lists
# them all with a glob.
autodoc2_packages = [{"path": "../src/attention", "auto_mode": True}]
autodoc2_render_plugin = "myst"
autodoc2_output_dir = "api"
autodoc2_index_template = None
autodoc2_hidden_objects = ["private", "inherited", "dunder"]
autodoc2_module_all_regexes = [r"attention"]
autodoc2_skip_module_regexes = [
    r"attention\._\w+",  # private modules: helpers of the package, no API
    r"attention\.(causal|functional|multihead|self_attention|simple|toy)",
]
autodoc2_docstring_parser_regexes = [(r".*", "google_docstrings")]
autodoc2_class_docstring = "both"


def _deny_torch_analysis() -> None:
    """Keep astroid out of torch, matplotlib and numpy.

    Analysing torch costs seconds per build, and its docstrings would
    otherwise appear on the package's methods.
    """
    from astroid.manager import AstroidManager

    AstroidManager().module_denylist.update({"torch", "matplotlib", "numpy"})


_deny_torch_analysis()

# -- Cross-references -------------------------------------------------------

# Inventories need the network: fetched in GitHub Actions (ATTENTION_INTERSPHINX=1),
# skipped offline, where references into these projects stay plain text.
if os.environ.get("ATTENTION_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
    }
else:
    intersphinx_mapping = {}
nitpick_ignore_regex = [
    # Objects of other libraries, resolved only when intersphinx is on.
    ("py:.*", r"(torch|matplotlib|numpy|collections\.abc|typing)(\..*)?"),
    ("py:.*", r"(Tensor|Figure|Sequence|Literal|nn\.Module)"),
    # A type alias (Literal["manual", "sdpa"]) that autodoc2 cannot document.
    ("py:class", r"attention\.multihead\.Impl"),
    # Type aliases and built-ins written bare in annotations.
    ("py:.*", r"(int|float|bool|str|object|None|tuple|list)"),
]

bibtex_bibfiles = ["docs/references.bib"]
bibtex_default_style = "alpha"
bibtex_reference_style = "author_year"

# -- Publishing: site address, Open Graph, sitemap, 404 page ----------------

# Where the site is published. The CI workflow sets ATTENTION_SITE_URL to the
# GitHub Pages address; elsewhere a placeholder stands in (see the README).
# Every page's canonical link and og:url, the sitemap and the 404 page's
# absolute links are built from it.
SITE_URL = os.environ.get("ATTENTION_SITE_URL") or "https://example.org/attention-from-scratch/"
SITE_URL = SITE_URL.rstrip("/") + "/"
extensions += ["sphinxext.opengraph", "sphinx_sitemap", "notfound.extension"]
html_baseurl = SITE_URL
ogp_site_url = SITE_URL
# Preview images would be drawn with matplotlib for every page at build time.
ogp_social_cards = {"enable": False}
sitemap_url_scheme = "{link}"
sitemap_excludes = ["404.html", "search.html", "genindex.html", "py-modindex.html"]
# GitHub Pages serves 404.html for a missing page at any depth, so its links
# to styles, scripts and chapters are absolute paths under the site's path
# (for a project site, /<repository>/).
notfound_urls_prefix = urlsplit(SITE_URL).path
notfound_context = {
    "title": "Page not found",
    "pagetitle": "Page not found",  # the theme's print header shows it
    "body": (
        "<h1>Page not found</h1>\n"
        "<p>There is no page at this address. The chapters are listed in the"
        " navigation, and the search box finds any word in the book.</p>"
    ),
}
# External links (`make linkcheck`, weekly in GitHub Actions): a slow or
# flaky site gets a second chance before it is reported.
linkcheck_timeout = 30
linkcheck_retries = 2

# -- HTML ---------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "Attention, from scratch"
# The interactive figures' scripts and stylesheets are the package's own data
# (src/attention/static): one copy of each, for the site and the notebooks alike.
html_static_path = ["docs/_static", "src/attention/static"]
html_favicon = "docs/_static/favicon.svg"
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
html_context = {
    # The theme otherwise leaves data-mode empty on a first visit and logs
    # "Got invalid theme mode" to the console.
    "default_mode": "auto",
}
html_theme_options: dict[str, Any] = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "launch_buttons": {},
}

# -- Light, offline pages ------------------------------------------------------
# Maths is rendered to MathML at build time (docs/_ext/mathml.py), so pages
# carry no maths script. docs/_templates/layout.html drops the theme's 1.5 MB
# FontAwesome script (its stylesheet draws the same icons from a webfont, which
# docs/_ext/icons.py cuts down to the icons in use) and, search-as-you-type
# being off, the search index from every page but search.html.
# tests/site/test_weight.py holds the weight down.
extensions += ["mathml", "icons"]
html_math_renderer = "mathml"
templates_path = ["docs/_templates"]
# The theme's sidebar, with the logo link in a landmark (docs/_templates/site-brand.html).
html_sidebars = {
    "**": ["site-brand.html", "icon-links.html", "search-button-field.html", "sbt-sidebar-nav.html"]
}

# -- Site quality: accessibility, small screens, print -------------------------
# attention-site.css holds site-wide fixes (our outputs in dark mode, phone
# widths, print); docs/_ext/site_quality.py repairs markup the theme and
# docutils write without accessible names or with a deprecated role, boxes
# output figures for narrow screens and prints dark-mode pages in light mode.
html_css_files = ["attention-site.css"]
extensions.append("site_quality")

# -- Running a page yourself -------------------------------------------------

# Every executed page (the chapters and the playground) offers its notebook,
# outputs included, in the download menu, with a first cell that says how to
# install the package (docs/_ext/notebook_download.py).
extensions.append("notebook_download")
# No launch buttons (Binder, Colab, JupyterHub, ...): they open a page's file
# from a public repository, and none is configured here (no repository_url),
# so the theme would build links to .md files on a branch named master that
# do not exist. The downloaded notebook is the way to run a page; the site
# tests check that no launch link renders.
html_theme_options["launch_buttons"] = {}


# Interactive figures (attention.widgets, attention.playground) load their
# script and stylesheet only on the pages that show one.
# Every widget script uses the shared engine (attention-engine.js), which any
# page with a widget loads first: deferred scripts run in the order added.
WIDGET_ASSETS = {
    'class="attn-widget"': ("attention-engine.js", "attention-widgets.css", "attention-widgets.js"),
    'data-attn-kind="playground"': ("attention-playground.css", "attention-playground.js"),
    'data-attn-kind="heads"': ("attention-heads.css", "attention-heads.js"),
    'data-attn-kind="lab"': ("attention-playground.css", "attention-playground.js"),
    'data-attn-kind="layout"': ("attention-layout.css", "attention-layout.js"),
    'data-attn-kind="quiz"': ("attention-quiz.css", "attention-quiz.js"),
    'data-attn-kind="model-lab"': ("attention-model.css", "attention-model.js"),
    'data-attn-kind="kv-budget"': ("attention-kv-budget.css", "attention-kv-budget.js"),
}
# A widget's HTML, as a notebook output, carries a copy of its script and
# stylesheet and a static table for where scripts do not run, between these
# comments (attention.widgets.PORTABLE_START and PORTABLE_END). The book's
# pages load the files once and show a static image beside each widget, so
# the copies go: the page keeps the container and its data alone.
# The fallback's container right after the first marker: nothing else on a page
# that merely mentions the markers is cut.
WIDGET_PORTABLE_PART = re.compile(
    r'<!--attn-portable--><div class="attn-fallback">.*?<!--/attn-portable-->', re.S
)


def _widget_assets(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    body = context.get("body", "")
    if "<!--attn-portable-->" in body:
        body = context["body"] = WIDGET_PORTABLE_PART.sub("", body)
    for marker, files in WIDGET_ASSETS.items():
        if marker in body:
            for name in files:
                if name.endswith(".css"):
                    app.builder.add_css_file(name)
                else:
                    app.builder.add_js_file(name, defer="defer")


def _prune_images(app: Any, exception: Exception | None) -> None:
    """Delete images no page refers to any more (outputs of older executions)."""
    images = Path(app.outdir) / "_images"
    if exception is not None or app.builder.format != "html" or not images.is_dir():
        return
    pages = "".join(p.read_text(encoding="utf-8") for p in Path(app.outdir).rglob("*.html"))
    for image in images.iterdir():
        if image.is_file() and image.name not in pages:
            image.unlink()


def setup(app: Any) -> None:
    """Prune stale images, add widget assets where used."""
    app.connect("build-finished", _prune_images)
    app.connect("html-page-context", _widget_assets)
