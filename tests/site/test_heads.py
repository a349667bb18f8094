"""Small multiples of every head (attention.heads.head_grid), driven in a real browser.

A page of its own (the widget on a bare page, as a notebook shows it) checks
the drawing and the keyboard; the chapters' grids are checked against the
data their pages carry, and with a head enlarged, by axe in light and dark
mode and at a phone's width.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from playwright.sync_api import Browser, Page

from attention import widgets
from attention.heads import INDUCTION, PREVIOUS_TOKEN, head_grid
from attention.induction import AttentionOnlyTransformer, InductionConfig
from tests.site.conftest import new_context, new_page, serve
from tests.site.modes import DESKTOP, PHONE, Device, Mode, open_in_mode, settle
from tests.site.test_accessibility import describe, run_axe

STATIC = widgets.STATIC
GRID = '.attn-widget[data-attn-kind="heads"]'
CHAPTERS = {
    "08-multi-head-attention.html": 4,  # one layer of four heads
    "12-why-attention-works.html": 4,  # two layers of two heads
}


# A score printed with two decimals is within half a unit of the second decimal.
PRINTED = 0.005 + 1e-9


def _printed(text: str, kind: str) -> float:
    """The number in a thumbnail's "previous token 0.93"."""
    assert text.startswith(f"{kind} "), text
    return float(text.removeprefix(f"{kind} ").replace("−", "-"))


def _watch(page: Page) -> list[str]:
    """Collect the console's errors and warnings and the page's exceptions."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


@pytest.fixture(scope="module")
def bare_page(tmp_path_factory) -> Iterator[str]:
    """A page holding one grid of a small model's six heads, on a period-3 string."""
    root = tmp_path_factory.mktemp("heads")
    for name in ("attention-engine.js", "attention-heads.js", "attention-heads.css"):
        shutil.copy(STATIC / name, root / name)
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(
        InductionConfig(vocab_size=8, context_length=8, emb_dim=12, n_heads=3, n_layers=2)
    ).eval()
    widget = head_grid(model, torch.tensor([1, 5, 2, 1, 5, 2]), length=3, threshold=0.3)
    (root / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>heads</title>'
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="attention-heads.css">'
        '<script defer src="attention-engine.js"></script>'
        '<script defer src="attention-heads.js"></script></head>'
        f"<body><main>{widget.to_html(portable=False)}</main></body></html>",
        encoding="utf-8",
    )
    with serve(root) as url:
        yield f"{url}/index.html"


def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = new_page(browser, viewport={"width": 1280, "height": 900})
    problems = _watch(page)
    page.goto(url, wait_until="networkidle")
    settle(page)
    return page, problems


def _data(page: Page, grid: str = GRID) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(page.locator(f"{grid} script.attn-data").text_content() or "")
    return data


def test_one_thumbnail_per_head_with_its_scores(browser, bare_page):
    page, problems = _open(browser, bare_page)
    try:
        data = _data(page)
        thumbs = page.locator(f"{GRID} button.attn-heads-thumb")
        assert thumbs.count() == len(data["heads"]) == 6
        for k, entry in enumerate(data["heads"]):
            thumb = thumbs.nth(k)
            assert f"Layer {entry['layer']}, head {entry['head']}" in thumb.inner_text()
            assert thumb.locator(".attn-heads-mini > span").count() == 36
            for kind, value in entry["scores"].items():
                shown = thumb.locator(f'[data-kind="{kind}"]').inner_text()
                assert _printed(shown, kind) == pytest.approx(value, abs=PRINTED)
            label = thumb.locator(".attn-heads-label")
            if entry["label"] is None:
                assert label.count() == 0
            else:
                assert label.get_attribute("data-kind") == entry["label"]
        assert {e["label"] for e in data["heads"]} >= {None}  # the threshold leaves some out
        assert any(e["label"] for e in data["heads"])
        assert problems == []
    finally:
        page.close()


def test_a_click_enlarges_a_head_and_close_returns(browser, bare_page):
    page, problems = _open(browser, bare_page)
    try:
        data = _data(page)
        dialog = page.locator(f"{GRID} dialog")
        assert not dialog.is_visible()
        page.locator(f"{GRID} button.attn-heads-thumb").nth(4).click()
        assert dialog.is_visible()
        entry = data["heads"][4]
        assert dialog.locator(".attn-heads-dialog-title").inner_text() == "Layer 1, head 1"
        cells = dialog.locator("td")
        assert cells.count() == 36
        assert dialog.locator("thead th").all_inner_texts()[1:] == data["tokens"]
        cell = dialog.locator('td[data-row="4"][data-col="1"]')
        cell.hover()
        readout = dialog.locator(".attn-heads-readout")
        assert float(readout.get_attribute("data-value") or "nan") == entry["values"][4][1]
        assert readout.inner_text().startswith(f"query “{data['tokens'][4]}”, key “")
        dialog.get_by_role("button", name="Close").click()
        assert not dialog.is_visible()
        assert page.evaluate("document.activeElement.dataset.index") == "4"
        assert problems == []
    finally:
        page.close()


@pytest.mark.parametrize("key", ["Enter", " "])
def test_the_keyboard_alone_enlarges_reads_and_closes(browser, bare_page, key):
    page, problems = _open(browser, bare_page)
    try:
        data = _data(page)
        for _ in range(50):  # Tab to the third thumbnail
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.dataset.index") == "2":
                break
        else:
            pytest.fail("Tab never reached the third thumbnail")
        page.keyboard.press(key)
        dialog = page.locator(f"{GRID} dialog")
        assert dialog.is_visible()
        assert page.evaluate("document.activeElement.textContent") == "Close"
        page.keyboard.press("Tab")  # into the grid of weights
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        focused = page.evaluate(
            "[document.activeElement.dataset.row, document.activeElement.dataset.col]"
        )
        assert focused == ["2", "0"]
        readout = dialog.locator(".attn-heads-readout")
        assert (
            float(readout.get_attribute("data-value") or "nan") == data["heads"][2]["values"][2][0]
        )
        page.keyboard.press("Escape")
        assert not dialog.is_visible()
        assert page.evaluate("document.activeElement.dataset.index") == "2"
        assert problems == []
    finally:
        page.close()


@pytest.mark.parametrize(("chapter", "n_heads"), CHAPTERS.items())
def test_the_chapters_grids_show_their_data(browser, site_url, chapter, n_heads):
    page, problems = _open(browser, f"{site_url}/{chapter}")
    try:
        assert page.locator(GRID).count() == 1
        data = _data(page)
        thumbs = page.locator(f"{GRID} button.attn-heads-thumb")
        assert thumbs.count() == len(data["heads"]) == n_heads
        labels = thumbs.locator(".attn-heads-label")
        shown = labels.evaluate_all("s => s.map(e => [e.dataset.kind, e.textContent])")
        expected = [(e["label"], e["scores"][e["label"]]) for e in data["heads"] if e["label"]]
        assert [kind for kind, _ in shown] == [kind for kind, _ in expected]
        for (kind, text), (_, score) in zip(shown, expected, strict=True):
            assert _printed(text, kind) == pytest.approx(score, abs=PRINTED)
        if chapter.startswith("12"):  # both patterns are there to be labelled
            assert {kind for kind, _ in shown} == {PREVIOUS_TOKEN, INDUCTION}
        thumbs.first.click()
        assert page.locator(f"{GRID} dialog td").count() == len(data["tokens"]) ** 2
        page.keyboard.press("Escape")
        assert problems == []
    finally:
        page.close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_static_copy_shows_only_without_scripts(browser, site_url, chapter):
    static = ".tag_attn-heads-static img[src*='_images/']"
    context = new_context(browser, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{site_url}/{chapter}", wait_until="networkidle")
        assert page.locator(static).count() == 1
        assert page.locator(static).is_visible()
        assert page.locator(static).evaluate("i => i.complete && i.naturalWidth > 0")
        assert "Figure: " in (page.locator(static).get_attribute("alt") or "")
        assert page.locator(f"{GRID} .attn-noscript").is_visible()
        assert page.locator(f"{GRID} button").count() == 0
    finally:
        context.close()
    page, problems = _open(browser, f"{site_url}/{chapter}")
    try:
        assert page.locator(f"{GRID} button.attn-heads-thumb").count() > 0
        assert not page.locator(static).is_visible()
        assert problems == []
    finally:
        page.close()


VIEWS: list[tuple[Device, Mode]] = [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_axe_with_a_head_enlarged(browser, site_url, chapter, device, mode):
    page = open_in_mode(browser, f"{site_url}/{chapter}", mode, device)
    try:
        grid = page.locator(GRID)
        grid.scroll_into_view_if_needed()
        if device is PHONE:  # the grid wraps: no thumbnail sticks out of the page
            width = page.evaluate("document.documentElement.clientWidth")
            right = grid.locator("button.attn-heads-thumb").evaluate_all(
                "b => Math.max(...b.map(e => e.getBoundingClientRect().right))"
            )
            assert right <= width
        grid.locator("button.attn-heads-thumb").last.click()
        settle(page)
        violations = [v for v in run_axe(page) if v["impact"] in ("serious", "critical")]
        assert violations == [], describe(violations)
    finally:
        page.context.close()
