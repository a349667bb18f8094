"""Every page at desktop and phone widths, in light and dark mode.

Each test writes a full-page screenshot to
``tests/site/artifacts/screenshots/<page>-<desktop|phone>-<light|dark>.png``
for people to look at, and checks what can be checked without eyes: the
page does not scroll sideways (only code blocks, tables and figures that
scroll by themselves may be wider than the screen), nothing in the article
sticks out of the window unscrollably, and the image is not blank.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.site.conftest import site_pages
from tests.site.modes import DESKTOP, MODES, PHONE, Device, Mode, assert_settled, open_in_mode

PAGES = site_pages()
SHOTS = Path(__file__).parent / "artifacts" / "screenshots"

# Elements of the article whose box reaches past the window's edges without a
# scrolling box around them to bring them into view. Boxes that scroll
# themselves (code blocks, wide tables, figures) are fine: their own
# scrollbar reaches the rest. Elements that are not drawn (no size, hidden,
# inside a closed <details>, or clipped away, as text for screen readers
# only is) are skipped.
_STICKING_OUT = """(width) => {
  const scrolls = (e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const clipped = (e) => {
    for (let a = e; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.clip !== "auto" || s.clipPath !== "none") return true;
    }
    return false;
  };
  const out = [];
  for (const e of document.querySelectorAll("main *")) {
    const box = e.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.right <= width + 1 && box.left >= -1) continue;
    if (!e.checkVisibility({ visibilityProperty: true }) || clipped(e)) continue;
    let scroller = null;
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      if (scrolls(a)) { scroller = a; break; }
    }
    if (scroller && scroller.getBoundingClientRect().right <= width + 1) continue;
    const name = e.tagName.toLowerCase() + (e.className && typeof e.className === "string"
      ? "." + e.className.trim().split(/\\s+/).join(".") : "");
    out.push(`${name} [${Math.round(box.left)}, ${Math.round(box.right)}]`);
  }
  return out.slice(0, 10);
}"""


def shot_name(path: str, device: Device, mode: Mode) -> str:
    """The screenshot's file name: ``api/attention/x.html`` -> ``api-attention-x-...``."""
    stem = path.removesuffix(".html").replace("/", "-")
    return f"{stem}-{device.name}-{mode}.png"


def test_shot_names_are_unique():
    names = {shot_name(p, d, m) for p in PAGES for d in (DESKTOP, PHONE) for m in MODES}
    assert len(names) == len(PAGES) * 4


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=lambda d: d.name)
@pytest.mark.parametrize("path", PAGES)
def test_screenshot(browser, site_url, path: str, device: Device, mode: Mode):
    page = open_in_mode(browser, f"{site_url}/{path}", mode, device)
    try:
        assert_settled(page)
        inner = page.evaluate("window.innerWidth")
        scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
        clipping = page.evaluate(
            "[document.documentElement, document.body]"
            ".map(e => getComputedStyle(e).overflowX).filter(o => o === 'hidden' || o === 'clip')"
        )
        sticking_out = page.evaluate(_STICKING_OUT, device.width)
        png = page.screenshot(full_page=True, scale="css", animations="disabled")
    finally:
        page.context.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / shot_name(path, device, mode)).write_bytes(png)

    assert sticking_out == [], f"out of the {device.width} px window: {sticking_out}"
    # A phone's browser widens its layout to fit a page that is too wide (and
    # shows it zoomed out); a desktop browser scrolls sideways instead.
    assert inner == device.width, f"the layout was widened to fit the page: {inner} px"
    assert scroll_width <= inner, f"the page scrolls sideways: {scroll_width} > {inner} px"
    # A page that hid its overflow would pass the checks above with content cut off.
    assert clipping == [], f"the page hides what overflows: overflow-x {clipping}"

    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width == device.width
    assert image.height >= device.height
    small = image.resize((64, max(64, image.height // 40)))
    colours = small.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 8, "the screenshot is (nearly) blank"
