"""The head split's layout widget in a real browser.

The page carries what torch reported for every step (shape, strides,
contiguity and the memory place of every element); the widget recomputes all
of it in the page. These tests read both from the page and hold them equal,
for every choice of sizes and every step, driving the widget through its
controls only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from attention.tensor_layout import layout_widget
from tests.site.conftest import new_page
from tests.site.modes import DESKTOP, PHONE, Device, Mode, open_in_mode
from tests.site.widget_checks import record_problems, severe_axe_findings

PAGES = ("08-multi-head-attention.html", "playground.html")
ROOT = '.attn-widget[data-attn-kind="layout"]'

READ = """root => ({
  shape: root.querySelector('[data-lay-out="shape"]').textContent,
  stride: root.querySelector('[data-lay-out="stride"]').textContent,
  contiguous: root.querySelector('[data-lay-out="contiguous"]').textContent,
  strip: [...root.querySelectorAll('[data-lay="strip"] [data-offset]')]
    .map((e) => +e.dataset.offset),
  cells: [...root.querySelectorAll('[data-lay="logical"] [data-index]')].map((e) => ({
    index: +e.dataset.index, offset: +e.dataset.offset, token: +e.dataset.token,
    head: +e.dataset.head, mixed: e.hasAttribute("data-mixed"),
  })),
})"""


def _tuple(values: list[int]) -> str:
    return f"({', '.join(map(str, values))})"


@pytest.fixture(params=PAGES)
def opened(request: pytest.FixtureRequest, browser: Browser, site_url: str) -> Iterator[Page]:
    page = new_page(browser, viewport={"width": 1280, "height": 1000})
    problems = record_problems(page)
    page.goto(f"{site_url}/{request.param}", wait_until="load")
    page.wait_for_selector(f"{ROOT}[data-lay-ready]")
    try:
        yield page
    finally:
        page.close()
    assert problems == []


def _data(page: Page) -> dict[str, Any]:
    text = page.locator(f"{ROOT} script.attn-data").first.text_content()
    assert text
    return json.loads(text)


def test_every_step_shows_what_torch_reported(opened: Page):
    root = opened.locator(ROOT).first
    cases = _data(opened)["cases"]
    assert len(cases) >= 2
    checked = 0
    cells: list[dict[str, Any]] = []
    for k, case in enumerate(cases):
        root.locator('[data-lay="sizes"]').select_option(str(k))
        b, t, h, d = (case["sizes"][n] for n in ("B", "T", "H", "d_head"))
        c = h * d
        for step in case["steps"]:
            root.locator(f'input[data-lay="step"][value="{step["name"]}"]').check()
            shown = root.evaluate(READ)
            assert shown["shape"] == _tuple(step["shape"])
            assert shown["stride"] == _tuple(step["stride"])
            assert shown["contiguous"] == str(step["contiguous"])
            assert shown["strip"] == list(range(b * t * c))  # memory never moves
            cells = sorted(shown["cells"], key=lambda e: e["index"])
            assert [e["offset"] for e in cells] == step["offsets"]
            for cell in cells:  # what each memory place holds, from x = (B, T, H*D)
                o = cell["offset"]
                assert (cell["token"], cell["head"]) == (o // c % t, o % c // d)
            # Only the view without transpose is marked, exactly where the cell's
            # token or head differs from its row's and block's.
            indices = list(itertools.product(*map(range, step["shape"])))
            expected = [
                step["name"] == "wrong" and (e["token"], e["head"]) != (idx[2], idx[1])
                for e, idx in zip(cells, indices, strict=True)
            ]
            assert [e["mixed"] for e in cells] == expected
            checked += 1
    assert checked == 4 * len(cases)
    assert any(e["mixed"] for e in cells)  # the last step, view alone, mixes tokens


def test_steps_and_sizes_work_by_keyboard(opened: Page):
    root = opened.locator(ROOT).first
    first = root.locator('input[data-lay="step"]').first
    first.focus()
    opened.keyboard.press("ArrowRight")
    assert root.get_attribute("data-lay-step") == "view"
    opened.keyboard.press("ArrowRight")
    assert root.get_attribute("data-lay-step") == "transpose"
    assert root.locator('[data-lay-out="contiguous"]').text_content() == "False"
    select = root.locator('[data-lay="sizes"]')
    select.focus()
    opened.keyboard.press("ArrowDown")
    assert root.get_attribute("data-lay-case") == "1"


VIEWS = [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
@pytest.mark.parametrize("path", PAGES)
def test_no_serious_axe_findings(
    browser: Browser, site_url: str, path: str, device: Device, mode: Mode
) -> None:
    page = open_in_mode(browser, f"{site_url}/{path}", mode, device)
    try:
        page.wait_for_selector(f"{ROOT}[data-lay-ready]")
        for name in ("wrong", "transpose"):  # the marked cells and the non-contiguous readout
            page.locator(f'{ROOT} input[data-lay="step"][value="{name}"]').first.check()
            assert severe_axe_findings(page, ROOT) == []
    finally:
        page.context.close()


def test_the_widget_draws_itself_outside_the_book(browser: Browser):
    page = new_page(browser)
    problems = record_problems(page)
    try:
        html = layout_widget().to_html()
        page.set_content(f"<!doctype html><html lang='en'><body>{html}{html}</body></html>")
        page.wait_for_function(
            f"() => document.querySelectorAll('{ROOT}[data-lay-ready]').length === 2"
        )
        assert page.locator(".attn-fallback").count() == 0
        assert page.locator("style[data-attn-stylesheet='layout']").count() == 1
        assert page.locator(f'{ROOT} [data-lay-out="contiguous"]').first.text_content() == "True"
    finally:
        page.close()
    assert problems == []
