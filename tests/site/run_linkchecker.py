"""Run linkchecker, reading each page's anchors once instead of once per link.

``python -m tests.site.run_linkchecker ARGS`` behaves as ``linkchecker ARGS``
with its AnchorCheck plugin enabled, except for two shortcuts that change its
cost, not its verdicts:

- AnchorCheck parses the whole target page again for every ``page.html#id``
  link: about 0.4 s for one API page, so minutes for the site's few hundred
  anchors. Here the anchors of each page are collected once and reused.
- linkchecker also reads every ``page.html#id`` as a page of its own and
  follows its links again. Here a link with a fragment is checked (the page
  exists, the anchor is on it) but not followed: tests/site/test_links.py
  passes every page of the site as a start URL, so every page's own links
  are followed from that page.

Both patch linkchecker's classes because it offers no setting for either;
requirements/dev.txt pins the version they were written against, and
tests/site/test_links.py proves on a small site that a broken link and a
missing anchor are still reported.

It runs in a process of its own: as root, linkchecker switches the process's
user to ``nobody`` before checking.
"""

from __future__ import annotations

import sys
import threading
from typing import Any
from urllib.parse import urldefrag

from linkcheck.checker.urlbase import UrlBase
from linkcheck.command.linkchecker import linkchecker
from linkcheck.htmlutil import linkparse
from linkcheck.plugins.anchorcheck import AnchorCheck, UrlAnchorCheck

_lock = threading.Lock()
_anchors: dict[str, list[tuple[Any, ...]]] = {}
_allows_recursion = UrlBase.allows_recursion


def _page_anchors(url_data: Any) -> list[tuple[Any, ...]]:
    """The anchors on the page ``url_data`` points into, parsed once per page."""
    page = urldefrag(url_data.url).url
    with _lock:
        found = _anchors.get(page)
    if found is None:
        collector = UrlAnchorCheck()
        linkparse.find_links(url_data.get_soup(), collector.add_anchor, linkparse.AnchorTags)
        found = collector.anchors
        with _lock:
            _anchors[page] = found
    return found


def _check_anchor(self: AnchorCheck, url_data: Any) -> None:
    """AnchorCheck.check, with the page's anchors from the cache."""
    checker = UrlAnchorCheck()
    checker.anchors = _page_anchors(url_data)
    checker.check_anchor(url_data)


def _allows_recursion_without_fragment(self: UrlBase) -> bool:
    """Follow the links of a page, but not again for each ``page.html#id``."""
    return not self.anchor and _allows_recursion(self)


def main() -> int:
    """Patch linkchecker as described above and run it on ``sys.argv``."""
    AnchorCheck.check = _check_anchor  # type: ignore[method-assign]
    UrlBase.allows_recursion = _allows_recursion_without_fragment  # type: ignore[method-assign]
    sys.argv[0] = "linkchecker"
    return int(linkchecker() or 0)


if __name__ == "__main__":
    sys.exit(main())
