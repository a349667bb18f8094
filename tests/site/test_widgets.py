"""The interactive heatmap and step-through, driven in a real browser."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Browser, Page

from attention import TOKENS, all_attention_scores, causal_mask, simple_self_attention, toy_inputs
from attention.widgets import interactive_heatmap
from tests.site.conftest import SITE, new_context, new_page, serve
from tests.site.modes import settle

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "attention" / "static"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHAPTER = "03-self-attention-without-weights.html"
WEIGHTS = '.attn-widget[data-attn-kind="heatmap"][aria-label="Weight-free attention weights"]'
STEPS = '.attn-widget[data-attn-kind="steps"]'
BOOK = 1e-4


def _page(browser: Browser, url: str, *, dark: bool = False) -> Page:
    page = new_page(browser, viewport={"width": 1280, "height": 900})
    if dark:  # what the theme's switcher stores
        page.add_init_script(
            "localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark')"
        )
    page.goto(url, wait_until="networkidle")
    settle(page)
    return page


@pytest.fixture
def chapter(browser, site_url) -> Iterator[Page]:
    page = _page(browser, f"{site_url}/{CHAPTER}")
    yield page
    page.close()


def _value(text: str) -> float:
    return float(text.replace("−", "-"))


def test_every_cell_names_its_query_key_and_value(chapter):
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    labels = chapter.locator(f"{WEIGHTS} td").evaluate_all("cells => cells.map(c => c.ariaLabel)")
    assert len(labels) == 36
    for k, label in enumerate(labels):
        i, j = divmod(k, 6)
        match = re.fullmatch(r"query “(\w+)”, key “(\w+)”: ([−\d.]+)", label)
        assert match, label
        assert match.group(1, 2) == (TOKENS[i], TOKENS[j])
        assert abs(_value(match.group(3)) - weights[i, j].item()) < BOOK


def test_hover_shows_the_exact_value(chapter):
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    readout = chapter.locator(f"{WEIGHTS} .attn-readout")
    for i, j in [(1, 2), (3, 1), (5, 4)]:
        chapter.locator(f'{WEIGHTS} td[data-row="{i}"][data-col="{j}"]').hover()
        assert f"query “{TOKENS[i]}” → key “{TOKENS[j]}”" in readout.inner_text()
        assert abs(float(readout.get_attribute("data-value")) - weights[i, j].item()) < BOOK


def test_keyboard_alone_reaches_and_reads_the_cells(chapter):
    scores = all_attention_scores(toy_inputs())
    grid = '.attn-widget[aria-label="Weight-free attention scores"]'
    for _ in range(300):  # Tab through the page until a cell of the grid has focus
        chapter.keyboard.press("Tab")
        if chapter.evaluate(f"document.activeElement.matches('{grid} td')"):
            break
    else:
        pytest.fail("Tab never reached the heatmap")
    chapter.keyboard.press("ArrowDown")
    chapter.keyboard.press("ArrowRight")
    chapter.keyboard.press("ArrowRight")
    focused = chapter.evaluate(
        "[document.activeElement.dataset.row, document.activeElement.dataset.col]"
    )
    assert focused == ["1", "2"]
    readout = chapter.locator(f"{grid} .attn-readout")
    assert abs(float(readout.get_attribute("data-value")) - scores[1, 2].item()) < BOOK
    chapter.keyboard.press("Enter")
    assert chapter.locator(f"{grid} tr.attn-selected").get_attribute("data-row") == "1"
    assert "“journey” selected" in readout.inner_text()


def test_clicking_a_row_highlights_that_query(chapter):
    chapter.locator(f'{WEIGHTS} td[data-row="4"][data-col="0"]').click()
    assert chapter.locator(f"{WEIGHTS} tr.attn-selected").get_attribute("data-row") == "4"
    assert "sum to 1.0000" in chapter.locator(f"{WEIGHTS} .attn-readout").inner_text()
    chapter.locator(f'{WEIGHTS} td[data-row="4"][data-col="0"]').click()  # again: deselect
    assert chapter.locator(f"{WEIGHTS} tr.attn-selected").count() == 0


def test_step_through_shows_each_step_and_ends_at_the_context_vector(chapter):
    steps = chapter.locator(STEPS)
    tabs = steps.locator('[role="tab"]')
    assert tabs.count() == 5
    assert tabs.nth(0).get_attribute("aria-selected") == "true"
    scores = [
        _value(v) for v in steps.locator("td").evaluate_all("t => t.map(c => c.dataset.value)")
    ]
    assert len(scores) == 6 * 3 + 3  # keys (6 x 3) and the query
    next_button = steps.get_by_role("button", name="Next →")
    for _ in range(4):
        next_button.click()
    assert next_button.is_disabled()
    assert "Context vector" in steps.locator(".attn-step-title").inner_text()
    context = steps.locator("tr.attn-extra td").evaluate_all("t => t.map(c => +c.dataset.value)")
    expected = simple_self_attention(toy_inputs())[1]
    assert torch.allclose(torch.tensor(context), expected, atol=BOOK)


def test_step_tabs_follow_the_arrow_keys(chapter):
    tabs = chapter.locator(f'{STEPS} [role="tab"]')
    tabs.nth(0).focus()
    chapter.keyboard.press("ArrowRight")
    assert tabs.nth(1).get_attribute("aria-selected") == "true"
    assert chapter.evaluate("document.activeElement.textContent") == "2. Scores"
    weights_tab = chapter.locator(f"{STEPS} .attn-step-panel td")
    values = weights_tab.evaluate_all("t => t.map(c => +c.dataset.value)")
    assert values == pytest.approx([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865], abs=BOOK)
    chapter.keyboard.press("End")
    assert tabs.nth(4).get_attribute("aria-selected") == "true"


# A page of our own for what chapter 3 has no example of: heads and a mask.


@pytest.fixture(scope="module")
def widget_page(tmp_path_factory) -> Iterator[tuple[str, torch.Tensor]]:
    """A bare page with a three-head, causally masked heatmap, and its weights."""
    root = tmp_path_factory.mktemp("widgets")
    for name in ("attention-engine.js", "attention-widgets.js", "attention-widgets.css"):
        shutil.copy(STATIC / name, root / name)
    scores = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    weights = torch.softmax(scores.masked_fill(causal_mask(5), -torch.inf), dim=-1)
    names = ["first", "second", "third"]
    widget = interactive_heatmap(
        weights, row_labels=list("abcde"), blocked=causal_mask(5), head_labels=names, title="Heads"
    )
    (root / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>widgets</title>'
        '<link rel="stylesheet" href="attention-widgets.css">'
        '<script defer src="attention-engine.js"></script>'
        '<script defer src="attention-widgets.js"></script></head>'
        f"<body>{widget.to_html()}</body></html>",
        encoding="utf-8",
    )
    with serve(root) as url:
        yield f"{url}/index.html", weights


def test_head_selector_and_masked_cells(browser, widget_page):
    url, weights = widget_page
    page = _page(browser, url)
    try:
        select = page.get_by_label("Head", exact=True)
        assert select.locator("option").all_inner_texts() == ["first", "second", "third"]
        for h in range(3):
            select.select_option(str(h))
            cells = page.locator("td").evaluate_all(
                "t => t.map(c => [+c.dataset.row, +c.dataset.col, c.dataset.value, c.ariaLabel])"
            )
            assert len(cells) == 25
            for i, j, value, label in cells:
                if j > i:
                    assert value == "masked"
                    assert label.endswith(": masked")
                else:
                    assert abs(float(value) - weights[h, i, j].item()) < 1e-5
        blocked = page.locator("td.attn-blocked").first
        assert blocked.inner_text() == ""
    finally:
        page.close()


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_screenshots_of_each_widget(browser, site_url, dark):
    """Writes tests/site/artifacts/*.png to look at; checks each widget drew itself."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = _page(browser, f"{site_url}/{CHAPTER}", dark=dark)
    try:
        assert page.evaluate("document.documentElement.dataset.theme") == (
            "dark" if dark else "light"
        )
        mode = "dark" if dark else "light"
        for kind, selector in [("heatmap", WEIGHTS), ("steps", STEPS)]:
            widget = page.locator(selector)
            widget.scroll_into_view_if_needed()
            assert widget.locator("figure").count() == 1
            widget.screenshot(path=str(ARTIFACTS / f"widget-{kind}-{mode}.png"))
        text = page.locator(f"{WEIGHTS} figcaption").evaluate("e => getComputedStyle(e).color")
        background = page.locator(f"{WEIGHTS} figure").evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        assert (
            _luminance(text) > _luminance(background)
            if dark
            else _luminance(text) < _luminance(background)
        )
        # The theme's light backdrop for HTML outputs must not frame the widgets in dark mode.
        backdrop = page.locator(WEIGHTS).evaluate(
            "e => getComputedStyle(e.parentElement).background"
        )
        assert not dark or backdrop.startswith("rgba(0, 0, 0, 0)")
    finally:
        page.close()


def _luminance(css_colour: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_site_has_the_widget_files():
    assert (SITE / "_static" / "attention-widgets.js").is_file()


def test_without_javascript_the_static_figures_remain(browser, site_url):
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{site_url}/{CHAPTER}", wait_until="networkidle")
        # One note in each of the chapter's widgets: a question, a step-through, two heatmaps.
        notes = page.locator(".attn-widget .attn-noscript")
        assert notes.count() == page.locator(".attn-widget").count() == 4
        assert notes.first.is_visible()
        assert notes.first.inner_text() == "This interactive part of the page needs JavaScript."
        static = page.locator("img[src*='_images/']")
        assert static.count() >= 1
        assert static.first.evaluate("img => img.complete && img.naturalWidth > 0")
        assert page.locator(".attn-widget figure").count() == 0
    finally:
        context.close()
