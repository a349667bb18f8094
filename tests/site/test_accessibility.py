"""axe-core finds no accessibility problem on any page, of any impact.

Every page of the built site is checked in light and in dark mode, and at a
phone's width, with the axe-core that the pinned ``axe-playwright-python``
wheel ships (injected from the local file, so nothing comes from another
host). Every violation fails, "minor" and "moderate" ones included.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Page

from tests.site.conftest import SITE, site_pages
from tests.site.modes import DESKTOP, MODES, PHONE, Device, Mode, assert_settled, open_in_mode

PAGES = site_pages()
SHOWN_TARGETS = 3


def run_axe(page: Page) -> list[dict[str, Any]]:
    """Run axe-core over the whole page; return its violations.

    The page must be settled (:func:`tests.site.modes.settle`): colours read
    mid-transition would fail or pass by chance.
    """
    assert_settled(page)
    page.evaluate(AXE_SCRIPT)
    result: dict[str, Any] = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return list(result["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violated rule: its id, impact, count and first targets."""
    lines = []
    for v in violations:
        targets = [" ".join(map(str, node["target"])) for node in v["nodes"]]
        shown = ", ".join(targets[:SHOWN_TARGETS])
        more = f" (+{len(targets) - SHOWN_TARGETS} more)" if len(targets) > SHOWN_TARGETS else ""
        lines.append(f"{v['id']} [{v['impact']}] x{len(targets)}: {v['help']} -> {shown}{more}")
    return "\n".join(lines)


IMG_ALT = re.compile(r"<img\b[^>]*?\balt=\"([^\"]*)\"")


def test_figures_are_described_not_named_by_their_file():
    alts = {p: IMG_ALT.findall((SITE / p).read_text(encoding="utf-8")) for p in PAGES}
    assert sum(map(len, alts.values())) > 20
    named = {p: [a for a in v if re.search(r"\.(svg|png|jpe?g)$", a)] for p, v in alts.items()}
    assert not any(named.values()), named
    heatmap = alts["03-self-attention-without-weights.html"]
    assert "Figure: Weight-free attention weights (query against key)" in heatmap


def test_axe_is_the_local_copy():
    assert AXE_SCRIPT.startswith("/*! axe v4.")


# Every page in both modes on a desktop, and once more on a phone, where
# wide tables and figures become scrolling boxes that must be reachable by
# keyboard (the colours are the same as on a desktop).
VIEWS = [(DESKTOP, mode) for mode in MODES] + [(PHONE, "light")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
@pytest.mark.parametrize("path", PAGES)
def test_no_violations(browser, site_url, path: str, device: Device, mode: Mode):
    page = open_in_mode(browser, f"{site_url}/{path}", mode, device)
    try:
        violations = run_axe(page)
    finally:
        page.context.close()
    if violations:
        where = f"{path} on a {device.name} in {mode} mode"
        pytest.fail(f"{where}:\n{describe(violations)}", pytrace=False)
