"""Open a page of the built site in light or dark mode, at a given size.

Shared by the accessibility, screenshot and print tests. The theme keeps the
reader's choice in ``localStorage['mode']`` and applies it as
``<html data-theme>``; a page is only handed over once that attribute says
the requested mode and the page has finished drawing (scripts, fonts, maths).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from playwright.sync_api import Browser, Page

Mode = Literal["light", "dark"]
MODES: tuple[Mode, ...] = ("light", "dark")


@dataclass(frozen=True)
class Device:
    """A browser window: its size in CSS pixels and how it presents itself."""

    name: str
    width: int
    height: int
    options: dict[str, Any] = field(default_factory=dict)


DESKTOP = Device("desktop", 1280, 800)
# A typical phone: 390 CSS pixels wide at three device pixels per CSS pixel,
# with touch and a mobile user agent, so the theme lays the page out as on a
# phone (collapsed sidebars, mobile viewport rules).
PHONE = Device(
    "phone",
    390,
    844,
    {
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
        "user_agent": (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/140.0 Mobile Safari/537.36"
        ),
    },
)

# Resolves once MathJax (if the page loads it) has typeset the page, and once
# web fonts have loaded, so that nothing moves after the page is measured.
_SETTLED = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await document.fonts.ready;
  return document.documentElement.dataset.theme;
}"""


def open_in_mode(browser: Browser, url: str, mode: Mode, device: Device = DESKTOP) -> Page:
    """Open ``url`` in a fresh context with the theme in ``mode``.

    Args:
        browser: The session's chromium.
        url: The page to open.
        mode: ``"light"`` or ``"dark"``, set as the reader's stored choice and
            as the system preference.
        device: The window to open it in.

    Returns:
        The loaded page; close its context with ``page.context.close()``.

    Raises:
        AssertionError: If the theme did not apply ``mode``.
    """
    context = browser.new_context(
        viewport={"width": device.width, "height": device.height},
        color_scheme=mode,
        **device.options,
    )
    context.add_init_script(f"localStorage.setItem('mode', '{mode}')")
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_function(f"() => document.documentElement.dataset.theme === '{mode}'")
    applied = page.evaluate(_SETTLED)
    assert applied == mode, f"{url}: the theme shows {applied!r}, not {mode!r}"
    return page
