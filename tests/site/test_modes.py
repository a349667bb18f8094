"""The harness measures settled pages only (tests/site/modes.py).

A colour read while a transition runs is one no reader sees once the page
has settled, and whether the measurement lands inside the transition
depends on the machine's speed: the accessibility checks once failed at
random that way. These tests hold the harness to waiting for a settled page
and to refusing to measure one that is not, and check that a real contrast
problem still fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.site.modes import RUNNING, assert_settled, open_in_mode, settle
from tests.site.test_accessibility import run_axe

PAGE = "notation.html"
# The text of the navbar's search button, where the random failures were seen.
TARGET = ".search-button__default-text"
FINAL = "rgb(255, 0, 0)"


@pytest.fixture
def page(browser: Browser, site_url: str) -> Iterator[Page]:
    """A settled page in dark mode."""
    page = open_in_mode(browser, f"{site_url}/{PAGE}", "dark")
    yield page
    page.context.close()


def _start_transition(page: Page, duration: str) -> None:
    """Give the search button's text a colour transition of ``duration`` and start it."""
    page.add_style_tag(content=f"{TARGET} {{ transition: color {duration} linear; }}")
    page.evaluate("() => void document.body.offsetHeight")  # style the element before the change
    page.add_style_tag(content=f"{TARGET}.test-final {{ color: {FINAL}; }}")
    page.locator(TARGET).first.evaluate("e => e.classList.add('test-final')")


def _colour(page: Page) -> str:
    return str(page.locator(TARGET).first.evaluate("e => getComputedStyle(e).color"))


def test_a_page_is_handed_over_with_nothing_running(page):
    assert page.evaluate(RUNNING) == []
    assert_settled(page)


def test_a_page_mid_transition_is_refused(page):
    _start_transition(page, "600s")  # far longer than any test: it is running when checked
    with pytest.raises(AssertionError, match=r"measured mid-animation: .*color on"):
        assert_settled(page)
    assert _colour(page) != FINAL


def test_settle_waits_until_the_transition_has_ended(page):
    _start_transition(page, "400ms")
    settle(page)
    assert page.evaluate(RUNNING) == []
    assert _colour(page) == FINAL


def test_an_animation_that_never_ends_is_an_error(page):
    page.add_style_tag(
        content="@keyframes test-spin { to { rotate: 1turn; } }"
        f"{TARGET} {{ animation: test-spin 1s linear infinite; }}"
    )
    with pytest.raises(AssertionError, match="never end: test-spin on"):
        settle(page)


def test_axe_still_fails_a_real_contrast_problem(page):
    page.evaluate(
        """() => {
          const p = document.createElement("p");
          p.id = "test-low-contrast";
          p.textContent = "Grey on grey is hard to read.";
          p.style.cssText = "color: #777; background: #666";
          document.querySelector("article").prepend(p);
        }"""
    )
    settle(page)
    contrast = [v for v in run_axe(page) if v["id"] == "color-contrast"]
    assert contrast, "axe missed grey text on a grey background"
    assert ["#test-low-contrast"] in [node["target"] for node in contrast[0]["nodes"]]
