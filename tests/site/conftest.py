"""Fixtures for tests of the built site: a local server and Debian's chromium.

These tests read ``_build/html``; ``make test`` builds it first. They drive
the system chromium through Playwright (never a downloaded browser).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

SITE = Path(__file__).resolve().parents[2] / "_build" / "html"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# How long a test waits for a state that must come (a page loaded, a search's
# results shown, an element focused) before it calls the state missing. Every
# wait is for a state, never for a time; this only bounds a wait for a state
# that never comes. Playwright's own limits (30 s for pages, 5 s for expect)
# could be reached by a correct page on a busy machine; ten minutes cannot.
PATIENCE_MS = 600_000
expect.set_options(timeout=PATIENCE_MS)


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """``browser.new_context(**options)``, waiting up to :data:`PATIENCE_MS`."""
    context = browser.new_context(**options)
    context.set_default_timeout(PATIENCE_MS)
    context.set_default_navigation_timeout(PATIENCE_MS)
    return context


def new_page(browser: Browser, **options: Any) -> Page:
    """A page in a context of its own (closed with it); see :func:`new_context`."""
    page = browser.new_page(**options)
    page.set_default_timeout(PATIENCE_MS)
    page.set_default_navigation_timeout(PATIENCE_MS)
    return page


def site_pages() -> list[str]:
    """Every HTML page of the built site, as paths relative to its root."""
    if not (SITE / "index.html").is_file():
        return []
    skip = {"_static", "_sources", "_images"}
    return sorted(
        p.relative_to(SITE).as_posix()
        for p in SITE.rglob("*.html")
        if not skip & set(p.relative_to(SITE).parts)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/site is a site test."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.site)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        # linkchecker waits 0.1-0.6 s between requests to one server unless the
        # server sends this header (tests/site/test_links.py).
        self.send_header("LinkChecker", "local test server")
        super().end_headers()


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 at a free port; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def site_base_url() -> str:
    """The address the site was built for (conf.py's ``html_baseurl``), ending in /.

    Read from the home page's canonical link.
    """
    html = (SITE / "index.html").read_text(encoding="utf-8")
    found = re.search(r'<link rel="canonical" href="([^"]*/)index\.html"', html)
    assert found, "index.html has no canonical link: conf.py sets html_baseurl"
    return found.group(1)


@contextlib.contextmanager
def serve_published(extra: Mapping[str, Path] | None = None) -> Iterator[str]:
    """Serve the site under the path it is published at; yield its URL, ending in /.

    GitHub Pages serves a project site under /<repository>/, the path of
    :func:`site_base_url`. ``extra`` adds files (site path: source file) to
    the served copy, which otherwise links to the built files.
    """
    path = urlsplit(site_base_url()).path.strip("/")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        published = root / path
        published.mkdir(parents=True, exist_ok=True)
        for entry in SITE.iterdir():
            (published / entry.name).symlink_to(entry.resolve())
        for name, source in (extra or {}).items():
            target = published / name
            target.parent.mkdir(parents=True, exist_ok=True)
            assert target.parent.resolve().is_relative_to(root.resolve()), f"{name} is in the site"
            shutil.copyfile(source, target)
        with serve(root) as url:
            yield f"{url}/{path}/" if path else f"{url}/"


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """Serve the built site on 127.0.0.1 for the session; its URL has no final /.

    The site is served under the path it is published at, where the 404
    page's absolute links work.
    """
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `make html` (make test does) first")
    with serve_published() as url:
        yield url.rstrip("/")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does) or set CHROMIUM"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
