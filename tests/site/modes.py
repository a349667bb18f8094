"""Open a page of the built site in light or dark mode, at a given size.

Shared by the accessibility, screenshot and print tests. The theme keeps the
reader's choice in ``localStorage['mode']`` and applies it as
``<html data-theme>``; a page is only handed over once that attribute says
the requested mode and the page is settled: fonts loaded and no transition
or animation running (a colour read mid-transition is a colour no reader
sees once the page has settled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from playwright.sync_api import Browser, Page

from tests.site.conftest import new_context

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

# The animations and transitions running on the page, and a readable name
# for one (what it animates, on which element). A paused animation changes
# nothing while paused, a finished one that keeps its last frame nothing at
# all: only running ones move colours and boxes.
_RUNNING = '(() => document.getAnimations().filter((a) => a.playState === "running"))'
_NAME = """((a) => `${a.transitionProperty || a.animationName || a.id || "animation"} on `
  + (a.effect && a.effect.target ? a.effect.target.className || a.effect.target.tagName : "?"))"""
RUNNING = f"() => {_RUNNING}().map({_NAME})"

# Resolves once the page is settled: laid out (which starts the loads of the
# fonts it needs; the maths is MathML, drawn in a web font), every font
# loaded, and nothing running. A style change made by a script starts its
# transitions at the next style update, so each round waits two frames
# before it looks. An animation that never ends cannot be waited for: it
# comes back as an error. Rounds are counted, not timed, so a slow machine
# only waits longer.
_SETTLE = f"""async () => {{
  const frames = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  for (let round = 0; round < 100; round++) {{
    void document.body.offsetHeight;
    await document.fonts.ready;
    await frames();
    const running = {_RUNNING}();
    if (running.length === 0) return null;
    const endless = running.filter((a) => a.effect.getComputedTiming().endTime === Infinity);
    if (endless.length) return "animations that never end: " + endless.map({_NAME}).join("; ");
    await Promise.all(running.map((a) => a.finished.catch(() => null)));
  }}
  return "still animating after 100 rounds: " + {_RUNNING}().map({_NAME}).join("; ");
}}"""


def settle(page: Page) -> None:
    """Wait until ``page`` is settled: laid out, fonts loaded, nothing animating.

    Call it after anything that changes styles (a theme switch, print media)
    and before measuring colours or boxes: a colour read mid-transition is
    neither the old one nor the new one.

    Raises:
        AssertionError: If the page runs an animation that never ends, or
            keeps starting new ones for 100 rounds.
    """
    problem = page.evaluate(_SETTLE)
    assert problem is None, f"{page.url}: {problem}"


def assert_settled(page: Page) -> None:
    """Fail if anything on ``page`` is still animating (see :func:`settle`)."""
    running = page.evaluate(RUNNING)
    assert running == [], f"{page.url} is measured mid-animation: {running}"


def open_in_mode(browser: Browser, url: str, mode: Mode, device: Device = DESKTOP) -> Page:
    """Open ``url`` in a fresh context with the theme in ``mode``, settled.

    The context asks for reduced motion, as many readers' systems do, so the
    theme's transitions are off; :func:`settle` then waits for anything that
    still moves.

    Args:
        browser: The session's chromium.
        url: The page to open.
        mode: ``"light"`` or ``"dark"``, set as the reader's stored choice and
            as the system preference.
        device: The window to open it in.

    Returns:
        The loaded page; close its context with ``page.context.close()``.

    Raises:
        AssertionError: If the theme did not apply ``mode``, or the page
            never settles.
    """
    context = new_context(
        browser,
        viewport={"width": device.width, "height": device.height},
        color_scheme=mode,
        reduced_motion="reduce",
        **device.options,
    )
    context.add_init_script(f"localStorage.setItem('mode', '{mode}')")
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_function(f"() => document.documentElement.dataset.theme === '{mode}'")
    settle(page)
    applied = page.evaluate("document.documentElement.dataset.theme")
    assert applied == mode, f"{url}: the theme shows {applied!r}, not {mode!r}"
    return page
