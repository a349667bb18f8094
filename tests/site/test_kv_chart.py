"""The KV-cache chart in a real browser: it draws kv_budget's numbers and nothing else.

The page carries, for every model and variant, the cache's size at each
context length of one grid (attention.kv_chart). These tests read those
numbers from the page, drive the chart through its controls only (mouse,
keyboard, pointer), and hold what it draws and prints to them: every vertex
of every line sits where its number puts it on the chart's axes, and the
readout prints the number as attention.kv_chart.format_bytes does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page

from attention.kv_chart import format_bytes, kv_budget_chart
from tests.site.conftest import new_context, new_page
from tests.site.modes import DESKTOP, PHONE, Device, Mode, open_in_mode
from tests.site.widget_checks import record_problems, severe_axe_findings

PAGE = "14-attention-in-todays-models.html"
ROOT = '.attn-widget[data-attn-kind="kv-budget"]'
READY = f"{ROOT}[data-kv-ready]"

# Everything the chart shows: its lines (with their vertices), dots, axis and readout rows.
READ = """root => {
  const axis = [...root.querySelectorAll(".attn-kv-axisline")].map((l) => ({
    x1: +l.getAttribute("x1"), x2: +l.getAttribute("x2"),
    y1: +l.getAttribute("y1"), y2: +l.getAttribute("y2"),
  }));
  return {
    at: +root.dataset.kvAt,
    scale: root.dataset.kvScale,
    lines: [...root.querySelectorAll("path[data-kv-line]")].map((p) => ({
      key: p.dataset.kvLine,
      points: [...p.getAttribute("d").matchAll(/[ML]([\\d.]+) ([\\d.]+)/g)]
        .map((m) => [+m[1], +m[2]]),
    })),
    dots: Object.fromEntries([...root.querySelectorAll("circle[data-kv-dot]")].map((c) =>
      [c.dataset.kvDot, [+c.getAttribute("cx"), +c.getAttribute("cy")]])),
    bottom: axis.find((l) => l.y1 === l.y2).y1,
    rows: [...root.querySelectorAll("tr[data-kv-row]")].map((r) => ({
      key: r.dataset.kvRow, bytes: +r.dataset.bytes,
      size: r.querySelector("[data-kv-size]").textContent,
      cells: [...r.children].map((c) => c.textContent),
    })),
    slider: root.querySelector('input[data-kv="at"]').getAttribute("aria-valuetext"),
    summary: root.querySelector('[data-kv="summary"]').textContent,
  };
}"""


@pytest.fixture
def chapter(browser: Browser, site_url: str) -> Iterator[Page]:
    page = new_page(browser, viewport={"width": 1280, "height": 1000})
    problems = record_problems(page)
    page.goto(f"{site_url}/{PAGE}", wait_until="load")
    page.wait_for_selector(READY)
    page.locator(ROOT).first.scroll_into_view_if_needed()
    try:
        yield page
    finally:
        page.close()
    assert problems == []


def _data(page: Page) -> dict[str, Any]:
    text = page.locator(f"{ROOT} script.attn-data").first.text_content()
    assert text
    return json.loads(text)


def _bytes(data: dict[str, Any]) -> dict[str, list[int]]:
    """Every curve of the page data, by the key the chart gives its line: "model:variant"."""
    return {
        f"{i}:{v['id']}": v["bytes"] for i, m in enumerate(data["models"]) for v in m["variants"]
    }


def _read(root: Locator) -> dict[str, Any]:
    return root.evaluate(READ)


def _check_drawn(shown: dict[str, Any], data: dict[str, Any], keys: list[str]) -> None:
    """The chart draws exactly ``keys``, each line through its numbers, and reads them out."""
    curves = _bytes(data)
    tokens = data["tokens"]
    at = tokens.index(shown["at"])
    assert [line["key"] for line in shown["lines"]] == keys
    assert [row["key"] for row in shown["rows"]] == keys
    assert set(shown["dots"]) == set(keys)
    # x: the same place for the same token count in every line, linear in log2(tokens).
    xs = [p[0] for p in shown["lines"][0]["points"]] if keys else []
    for line in shown["lines"]:
        assert len(line["points"]) == len(tokens)
        assert [p[0] for p in line["points"]] == xs
    if xs:
        slope = (xs[-1] - xs[0]) / math.log2(tokens[-1] / tokens[0])
        for x, t in zip(xs, tokens, strict=True):
            assert x == pytest.approx(xs[0] + slope * math.log2(t / tokens[0]), abs=0.02)
    # y: height above the axis proportional to the bytes (linear axis) or to their
    # log2 (logarithmic axis), one factor for every vertex of every line.
    bottom = shown["bottom"]
    heights = [(bottom - y, curves[line["key"]][i])
               for line in shown["lines"] for i, (_, y) in enumerate(line["points"])]  # fmt: skip
    if shown["scale"] == "linear" and heights:
        top = max(heights, key=lambda hb: hb[1])
        for h, b in heights:
            assert h == pytest.approx(top[0] * b / top[1], abs=0.02)
    elif heights:
        (h0, b0), (h1, b1) = min(heights, key=lambda hb: hb[1]), max(heights, key=lambda hb: hb[1])
        per_doubling = (h1 - h0) / math.log2(b1 / b0)
        for h, b in heights:
            assert h == pytest.approx(h0 + per_doubling * math.log2(b / b0), abs=0.02)
    # The dots sit on their lines at the chosen context; the readout prints its numbers.
    for line in shown["lines"]:
        assert shown["dots"][line["key"]] == pytest.approx(line["points"][at], abs=0.01)
    for row in shown["rows"]:
        expected = curves[row["key"]][at]
        assert row["bytes"] == expected
        assert row["size"] == format_bytes(expected)
        assert row["cells"][-1] == f"{expected:,}"
    assert shown["slider"] == f"{shown['at']:,} tokens"
    assert shown["summary"].startswith(f"At {shown['at']:,} tokens:")


def test_the_chart_draws_every_published_model(chapter: Page):
    root = chapter.locator(ROOT).first
    data = _data(chapter)
    shown = _read(root)
    assert shown["scale"] == "linear"
    keys = [f"{i}:published" for i in range(len(data["models"]))]
    _check_drawn(shown, data, keys)
    names = [m["name"] for m in data["models"]]
    assert [row["cells"][0] for row in shown["rows"]] == names


def test_the_static_figure_gives_way_to_the_chart(chapter: Page):
    # The chapter pairs the chart with a static figure of it (a cell tagged
    # attn-kv-static), for readers without scripts; once the chart draws it goes.
    static = chapter.locator(".tag_attn-kv-static")
    assert static.count() == 1
    assert static.locator("img[src*='_images/']").count() == 1
    assert not static.is_visible()


def test_without_scripts_the_chapter_shows_the_static_figure(browser: Browser, site_url: str):
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{site_url}/{PAGE}", wait_until="load")
        note = page.locator(f"{ROOT} .attn-noscript")
        assert note.count() == page.locator(ROOT).count() == 1
        assert note.inner_text() == "This interactive part of the page needs JavaScript."
        image = page.locator(".tag_attn-kv-static img[src*='_images/']")
        assert image.is_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        assert page.locator(f"{ROOT} figure").count() == 0
    finally:
        context.close()


def test_switching_variants_and_models_redraws_the_numbers(chapter: Page):
    root = chapter.locator(ROOT).first
    data = _data(chapter)
    n = len(data["models"])
    offered = {key.split(":")[1] for key in _bytes(data)}
    assert offered == {"published", "global", "mqa", "mha"}
    root.locator('input[data-kv="variant"][value="mha"]').check()
    keys = [f"{i}:{v}" for i in range(n) for v in ("published", "mha")]
    _check_drawn(_read(root), data, keys)
    # Every layer global: only the models with local layers have that line.
    root.locator('input[data-kv="variant"][value="global"]').check()
    root.locator('input[data-kv="variant"][value="published"]').uncheck()
    root.locator('input[data-kv="variant"][value="mha"]').uncheck()
    windowed = [i for i, m in enumerate(data["models"]) if len(m["variants"]) == 4]
    assert windowed
    _check_drawn(_read(root), data, [f"{i}:global" for i in windowed])
    # Models off and on.
    root.locator('input[data-kv="variant"][value="mqa"]').check()
    for i in range(1, n):
        root.locator(f'input[data-kv="model"][value="{i}"]').uncheck()
    _check_drawn(_read(root), data, ["0:mqa"])
    root.locator('input[data-kv="variant"][value="mqa"]').uncheck()
    shown = _read(root)
    _check_drawn(shown, data, [])
    assert shown["summary"].endswith("no line chosen.")


def test_the_log_axis_draws_the_same_numbers(chapter: Page):
    root = chapter.locator(ROOT).first
    data = _data(chapter)
    for variant in ("mha", "mqa", "global"):
        root.locator(f'input[data-kv="variant"][value="{variant}"]').check()
    root.locator('input[data-kv="scale"][value="log"]').check()
    shown = _read(root)
    assert shown["scale"] == "log"
    _check_drawn(shown, data, list(_bytes(data)))


def test_the_keyboard_alone_works_every_control(chapter: Page):
    root = chapter.locator(ROOT).first
    data = _data(chapter)
    tokens = data["tokens"]
    n = len(data["models"])
    # Tab through the page until the first model's box has focus.
    for _ in range(400):
        chapter.keyboard.press("Tab")
        if chapter.evaluate(f"document.activeElement.matches('{ROOT} input[data-kv=\"model\"]')"):
            break
    else:
        pytest.fail("Tab never reached the chart's controls")
    chapter.keyboard.press("Space")  # the first model off
    _check_drawn(_read(root), data, [f"{i}:published" for i in range(1, n)])
    for _ in range(n):  # past the other models to the first variant, "As published"
        chapter.keyboard.press("Tab")
    assert chapter.evaluate("document.activeElement.value") == "published"
    chapter.keyboard.press("Tab")
    chapter.keyboard.press("Space")  # the next variant on
    second = chapter.evaluate("document.activeElement.value")
    keys = [f"{i}:{v}" for i in range(1, n) for v in ("published", second)]
    _check_drawn(_read(root), data, [k for k in keys if k in _bytes(data)])
    scale = root.locator('input[data-kv="scale"][value="linear"]')
    scale.focus()
    chapter.keyboard.press("ArrowRight")  # radio buttons move with the arrows
    assert _read(root)["scale"] == "log"
    slider = root.locator('input[data-kv="at"]')
    slider.focus()
    chapter.keyboard.press("End")
    shown = _read(root)
    assert shown["at"] == tokens[-1]
    _check_drawn(shown, data, [k for k in keys if k in _bytes(data)])
    chapter.keyboard.press("Home")
    assert _read(root)["at"] == tokens[0]
    chapter.keyboard.press("ArrowRight")
    chapter.keyboard.press("ArrowRight")
    shown = _read(root)
    assert shown["at"] == tokens[2]
    _check_drawn(shown, data, [k for k in keys if k in _bytes(data)])


def test_the_pointer_over_the_chart_picks_the_nearest_context(chapter: Page):
    root = chapter.locator(ROOT).first
    data = _data(chapter)
    tokens = data["tokens"]
    plot = root.locator('svg[data-kv="plot"]')
    box = plot.bounding_box()
    assert box
    points = _read(root)["lines"][0]["points"]
    width = plot.evaluate("p => p.viewBox.baseVal.width")
    for k in (0, len(tokens) // 2, len(tokens) - 1):
        x = box["x"] + points[k][0] / width * box["width"]
        chapter.mouse.move(x, box["y"] + box["height"] / 2)
        chapter.wait_for_function(
            f"() => document.querySelector('{ROOT}').dataset.kvAt === '{tokens[k]}'"
        )
        _check_drawn(_read(root), data, [f"{i}:published" for i in range(len(data["models"]))])


def _luminance(css: str) -> float:
    """WCAG relative luminance of a computed colour: rgb(...) or color(srgb ...)."""
    if css.startswith("color(srgb"):
        channels = [float(v) for v in css.removeprefix("color(srgb").strip(" )").split()[:3]]
    else:
        channels = [int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3]]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_every_line_stands_out_from_the_chart_in_both_modes(
    browser: Browser, site_url: str, mode: Mode
):
    page = open_in_mode(browser, f"{site_url}/{PAGE}", mode)
    try:
        page.wait_for_selector(READY)
        root = page.locator(ROOT).first
        root.locator('input[data-kv="variant"][value="mha"]').check()
        background = _luminance(root.locator("figure").evaluate(
            "f => getComputedStyle(f).backgroundColor"))  # fmt: skip
        strokes = root.locator("path[data-kv-line]").evaluate_all(
            "ps => ps.map((p) => getComputedStyle(p).stroke)"
        )
        assert len(strokes) == 2 * len(_data(page)["models"])
        for stroke in strokes:  # 3:1, what WCAG asks of the parts of a chart
            lum = _luminance(stroke)
            ratio = (max(lum, background) + 0.05) / (min(lum, background) + 0.05)
            assert ratio >= 3, (mode, stroke, ratio)
    finally:
        page.context.close()


VIEWS = [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
def test_no_serious_axe_findings(browser: Browser, site_url: str, device: Device, mode: Mode):
    page = open_in_mode(browser, f"{site_url}/{PAGE}", mode, device)
    try:
        page.wait_for_selector(READY)
        page.locator(f'{ROOT} input[data-kv="variant"][value="mha"]').first.check()
        assert severe_axe_findings(page, ROOT) == []
    finally:
        page.context.close()


def test_the_chart_draws_itself_outside_the_book(browser: Browser):
    page = new_page(browser)
    problems = record_problems(page)
    try:
        html = kv_budget_chart(max_tokens=8192).to_html()
        page.set_content(f"<!doctype html><html lang='en'><body>{html}{html}</body></html>")
        page.wait_for_function(f"() => document.querySelectorAll('{READY}').length === 2")
        assert page.locator(".attn-fallback").count() == 0
        assert page.locator("style[data-attn-stylesheet='kv-budget']").count() == 1
        data = _data(page)
        for root in page.locator(ROOT).all():
            _check_drawn(_read(root), data, [f"{i}:published" for i in range(5)])
    finally:
        page.close()
    assert problems == []


def test_without_scripts_the_tables_remain(browser: Browser):
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    try:
        widget = kv_budget_chart(max_tokens=8192)
        page.set_content(f"<!doctype html><html lang='en'><body>{widget.to_html()}</body></html>")
        tables = page.locator(f"{ROOT} .attn-fallback table")
        assert tables.count() == len(widget.data["models"])
        assert tables.first.is_visible()
        last = tables.first.locator("tbody tr").last.locator("td").all_inner_texts()
        expected = [format_bytes(v["bytes"][-1]) for v in widget.data["models"][0]["variants"]]
        assert last == expected
        assert page.locator(f"{ROOT} figure").count() == 0
    finally:
        context.close()
