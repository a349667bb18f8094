"""The interactive figures draw themselves outside the book: in a blank page, a notebook.

A widget's ``_repr_html_()`` goes alone into a blank page, with none of the
book's files, and must draw itself from what it carries. Notebook outputs are
inserted the way JupyterLab, Notebook 7 and VS Code insert a trusted HTML
output (``innerHTML``, then each script element recreated so that it runs),
one output after another, as a notebook shows them. An untrusted output loses
its scripts and stylesheets; then the static table must remain.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from playwright.sync_api import Browser, Page, expect

from attention import TOKENS, all_attention_scores, causal_mask, simple_self_attention, toy_inputs
from attention.playground import playground
from attention.widgets import (
    PORTABLE_END,
    PORTABLE_START,
    STATIC,
    interactive_heatmap,
    step_through,
)
from tests.site.conftest import SITE, new_context, serve

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CHAPTER = "03-self-attention-without-weights"
BOOK = 1e-4

BLANK = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blank</title></head>'
    "<body>{}</body></html>"
)

# What a Jupyter front end does with a trusted text/html output: set it as
# innerHTML (scripts inserted so do not run), then replace each script element
# by a fresh copy, which runs once the output is in the page.
AS_JUPYTER = """(outputs) => {
  for (const source of outputs) {
    const output = document.createElement("div");
    output.className = "output";
    output.innerHTML = source;
    for (const old of Array.from(output.getElementsByTagName("script"))) {
      const script = document.createElement("script");
      for (const attr of old.attributes) script.setAttribute(attr.name, attr.value);
      script.textContent = old.textContent;
      old.replaceWith(script);
    }
    document.body.append(output);
  }
}"""

# What a notebook does with an untrusted output: its scripts and stylesheets go.
UNTRUSTED = """(outputs) => {
  for (const source of outputs) {
    const output = document.createElement("div");
    output.innerHTML = source;
    for (const node of output.querySelectorAll("script, style")) node.remove();
    document.body.append(output);
  }
}"""


class Blank:
    """A blank page in a fresh context, with a record of requests and errors."""

    def __init__(self, browser: Browser, *, javascript: bool = True, css: str = "") -> None:
        self.context = new_context(
            browser, java_script_enabled=javascript, viewport={"width": 1000, "height": 800}
        )
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.problems.append(m.text) if m.type in ("error", "warning") else None,
        )
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.css = css

    def show(self, html: str) -> Page:
        """The page holding ``html``, parsed as a page is."""
        self.page.set_content(BLANK.format(f"<style>{self.css}</style>{html}"))
        return self.page

    def close(self) -> None:
        assert self.problems == []
        assert self.requests == []  # nothing fetched: no file of the book, no other host
        self.context.close()


@pytest.fixture
def blank(browser) -> Iterator[Blank]:
    page = Blank(browser)
    yield page
    page.close()


def _weights() -> torch.Tensor:
    return simple_self_attention(toy_inputs(), return_weights=True)[1]


def _value(text: str) -> float:
    return float(text.replace("−", "-"))


def _check_heatmap_cells(page: Page, widget: str, weights: torch.Tensor) -> None:
    """Every cell of the heatmap names its query, its key and its value."""
    labels = page.locator(f"{widget} td").evaluate_all("cells => cells.map(c => c.ariaLabel)")
    assert len(labels) == weights.numel()
    for k, label in enumerate(labels):
        i, j = divmod(k, weights.shape[1])
        match = re.fullmatch(r"query “(\w+)”, key “(\w+)”: ([−\d.]+)", label)
        assert match, label
        assert match.group(1, 2) == (TOKENS[i], TOKENS[j])
        assert abs(_value(match.group(3)) - weights[i, j].item()) < BOOK
    texts = page.locator(f"{widget} td").all_inner_texts()
    assert texts[0] == f"{weights[0, 0].item():.2f}"


def _check_keyboard(page: Page, widget: str, matrix: torch.Tensor) -> None:
    """Tab reaches the grid; arrows move; Enter selects the query's row."""
    for _ in range(50):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.matches('{widget} td')"):
            break
    else:
        pytest.fail("Tab never reached the heatmap")
    for key in ("ArrowDown", "ArrowRight", "ArrowRight"):
        page.keyboard.press(key)
    focused = page.evaluate(
        "[document.activeElement.dataset.row, document.activeElement.dataset.col]"
    )
    assert focused == ["1", "2"]
    readout = page.locator(f"{widget} .attn-readout")
    assert abs(float(readout.get_attribute("data-value")) - matrix[1, 2].item()) < BOOK
    page.keyboard.press("Enter")
    assert page.locator(f"{widget} tr.attn-selected").get_attribute("data-row") == "1"
    assert "“journey” selected" in readout.inner_text()


def test_a_heatmap_alone_in_a_blank_page_draws_itself(blank):
    weights = _weights()
    html = interactive_heatmap(weights, row_labels=TOKENS, title="Weights")._repr_html_()
    page = blank.show(html)
    widget = '.attn-widget[aria-label="Weights"]'
    assert page.locator(f"{widget} figure").count() == 1
    assert page.locator(".attn-fallback").count() == 0  # the script replaced it
    assert page.locator("style[data-attn-stylesheet]").count() == 1
    # The stylesheet applies: the cells are laid out as the book lays them out.
    spacing = page.locator(f"{widget} table").evaluate("t => getComputedStyle(t).borderSpacing")
    assert spacing == "2px"
    _check_heatmap_cells(page, widget, weights)
    _check_keyboard(page, widget, weights)


def test_a_step_through_alone_in_a_blank_page_draws_itself(blank):
    page = blank.show(step_through(toy_inputs(), 1, tokens=TOKENS)._repr_html_())
    tabs = page.locator('[role="tab"]')
    assert tabs.count() == 5
    tabs.nth(0).focus()
    page.keyboard.press("ArrowRight")
    assert tabs.nth(1).get_attribute("aria-selected") == "true"
    assert page.evaluate("document.activeElement.textContent") == "2. Scores"
    values = page.locator(".attn-step-panel td").evaluate_all("t => t.map(c => +c.dataset.value)")
    assert values == pytest.approx([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865], abs=BOOK)
    page.keyboard.press("End")
    context = page.locator("tr.attn-extra td").evaluate_all("t => t.map(c => +c.dataset.value)")
    assert context == pytest.approx([0.4419, 0.6515, 0.5683], abs=BOOK)


def test_outputs_inserted_as_a_notebook_does_draw_and_share_one_script(blank):
    weights = _weights()
    scores = all_attention_scores(toy_inputs())
    page = blank.show("")
    first = interactive_heatmap(weights, row_labels=TOKENS, title="Weights")._repr_html_()
    page.evaluate(AS_JUPYTER, [first])
    assert page.locator(".attn-widget figure").count() == 1
    page.evaluate("window.firstCopy = window.AttentionWidgets")
    page.evaluate("window.firstEngine = window.AttentionEngine")
    later = [
        step_through(toy_inputs(), 1, tokens=TOKENS)._repr_html_(),
        interactive_heatmap(scores, row_labels=TOKENS, title="Scores")._repr_html_(),
        playground()._repr_html_(),
    ]
    page.evaluate(AS_JUPYTER, later)  # outputs of cells run later
    assert page.locator(".attn-widget figure").count() == 3
    assert page.locator(".attn-widget .attn-pg").count() == 1  # the playground drew too
    assert page.locator(".attn-fallback").count() == 0
    # Each output carried a copy; the first defined everything, the others only drew.
    assert page.evaluate("window.firstCopy === window.AttentionWidgets")
    assert page.evaluate("window.firstEngine === window.AttentionEngine")  # one shared engine
    styles = page.locator("style[data-attn-stylesheet]").evaluate_all(
        "s => s.map(e => e.dataset.attnStylesheet)"
    )
    assert sorted(styles) == ["playground", "widgets"]
    _check_heatmap_cells(page, '.attn-widget[aria-label="Scores"]', scores)
    _check_keyboard(page, '.attn-widget[aria-label="Scores"]', scores)
    assert page.locator('.attn-widget[aria-label="Weights"] tr.attn-selected').count() == 0


def test_a_page_that_loads_the_files_draws_each_widget_once(browser, tmp_path):
    # As on the book's pages: the files linked in the head (the engine first),
    # and here a widget that carries its own copy as well. One definition, no
    # second stylesheet.
    for name in ("attention-engine.js", "attention-widgets.js", "attention-widgets.css"):
        shutil.copy(STATIC / name, tmp_path / name)
    widget = interactive_heatmap(_weights(), row_labels=TOKENS, title="Weights")._repr_html_()
    (tmp_path / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>page</title>'
        '<link rel="stylesheet" href="attention-widgets.css">'
        '<script defer src="attention-engine.js"></script>'
        '<script defer src="attention-widgets.js"></script></head>'
        f"<body>{widget}</body></html>",
        encoding="utf-8",
    )
    context = new_context(browser)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        with serve(tmp_path) as url:
            page.goto(f"{url}/index.html", wait_until="networkidle")
            page.wait_for_function("document.querySelector('.attn-widget[data-attn-ready]')")
            assert page.locator(".attn-widget figure").count() == 1
            assert page.locator("style[data-attn-stylesheet]").count() == 0
            _check_heatmap_cells(page, ".attn-widget", _weights())
        assert problems == []
    finally:
        context.close()


def _check_fallback(page: Page, weights: torch.Tensor) -> None:
    table = page.locator(".attn-fallback table")
    assert table.count() == 1
    assert table.is_visible()
    assert page.locator(".attn-widget figure").count() == 0
    cells = [float(t) for t in table.locator("td").all_inner_texts()]
    torch.testing.assert_close(torch.tensor(cells), weights.flatten(), atol=0.005, rtol=0)
    assert table.locator("caption").inner_text() == "Weights"


def test_without_javascript_the_static_table_remains(browser):
    weights = _weights()
    blank = Blank(browser, javascript=False)
    try:
        page = blank.show(
            interactive_heatmap(weights, row_labels=TOKENS, title="Weights")._repr_html_()
        )
        _check_fallback(page, weights)
    finally:
        blank.close()


def test_an_untrusted_output_shows_the_static_table(blank):
    weights = _weights()
    page = blank.show("")
    html = interactive_heatmap(weights, row_labels=TOKENS, title="Weights")._repr_html_()
    page.evaluate(UNTRUSTED, [html])
    _check_fallback(page, weights)
    assert page.locator("style").count() == 1  # the test page's own, empty


# Theme variables as the front ends define them (JupyterLab 4's light and dark
# themes, VS Code's default dark theme), and a page that only sets its colours.
THEMES = {
    "jupyterlab-light": (
        "--jp-layout-color0:#fff;--jp-layout-color1:#fff;--jp-border-color1:#bdbdbd;"
        "--jp-content-font-color1:rgba(0,0,0,0.87);--jp-brand-color1:#1976d2;"
        "background:#fff;color:rgba(0,0,0,0.87)"
    ),
    "jupyterlab-dark": (
        "--jp-layout-color0:#111;--jp-layout-color1:#212121;--jp-border-color1:#616161;"
        "--jp-content-font-color1:rgba(255,255,255,1);--jp-brand-color1:#42a5f5;"
        "background:#111;color:rgba(255,255,255,1)"
    ),
    "vscode-dark": (
        "--vscode-editor-foreground:#ccc;--vscode-editor-background:#1e1e1e;"
        "--vscode-editorWidget-border:#454545;--vscode-focusBorder:#007fd4;"
        "background:#1e1e1e;color:#ccc"
    ),
    "plain-dark": "color-scheme:dark;background:#000;color:#eee",
}

# WCAG 2 contrast of an element's text with what lies behind it.
CONTRAST = """(e) => {
  // "rgb(r, g, b)", "rgba(r, g, b, a)" or "color(srgb r g b)" (what color-mix gives)
  const rgb = (c) => {
    const v = c.match(/[\\d.]+/g).map(Number);
    return c.startsWith("color(srgb") ? [...v.slice(0, 3).map((x) => x * 255), v[3] ?? 1]
      : [...v.slice(0, 3), v[3] ?? 1];
  };
  const lum = ([r, g, b]) => {
    const lin = [r, g, b].map((c) => ((c /= 255) <= 0.04045 ? c / 12.92
      : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  };
  let back = e;
  while (back && rgb(getComputedStyle(back).backgroundColor)[3] === 0) back = back.parentElement;
  const a = lum(rgb(getComputedStyle(e).color));
  const b = lum(rgb(getComputedStyle(back).backgroundColor));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.mark.parametrize("theme", THEMES)
def test_text_is_readable_in_light_and_dark_themes(browser, theme):
    blank = Blank(browser, css=f"body{{{THEMES[theme]}}}")
    try:
        page = blank.show(
            interactive_heatmap(_weights(), row_labels=TOKENS, title="Weights")._repr_html_()
            + step_through(toy_inputs(), 1, tokens=TOKENS)._repr_html_()
        )
        page.locator('td[data-row="1"][data-col="0"]').click()  # a selected row, emphasised
        for selector in [
            ".attn-heatmap figcaption",
            ".attn-grid thead th:nth-child(2)",
            ".attn-grid tbody th",
            ".attn-grid tr.attn-selected th",
            ".attn-readout",
            ".attn-steps figcaption",
            '.attn-step-tab[aria-selected="false"]',
            ".attn-vector tbody th",
            ".attn-vector tr.attn-selected td",
        ]:
            ratio = page.locator(selector).first.evaluate(CONTRAST)
            assert ratio >= 4.5, (selector, ratio)
        page.locator(".attn-widget").first.screenshot(
            path=str(Path(__file__).parent / "artifacts" / f"portable-heatmap-{theme}.png")
        )
    finally:
        blank.close()


# A chapter's downloaded notebook: its saved outputs, and its outputs run again.


def _widget_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """The HTML of every output that holds an interactive figure, in order."""
    return [
        "".join(output["data"]["text/html"])
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "attn-widget" in "".join(output.get("data", {}).get("text/html", ""))
    ]


def _downloaded(page: str) -> nbformat.NotebookNode:
    return nbformat.read(SITE / "_sources" / f"{page}.ipynb", as_version=4)


def _kinds(outputs: list[str]) -> list[str]:
    """The kind of each output's widget, in order."""
    return [re.search(r'data-attn-kind="([\w-]+)"', html)[1] for html in outputs]  # type: ignore[index]


def _check_chapter_outputs(blank: Blank, outputs: list[str]) -> None:
    # The chapter's question, its step-through and its two heatmaps.
    assert _kinds(outputs) == ["quiz", "steps", "heatmap", "heatmap"]
    assert all(PORTABLE_START in html and PORTABLE_END in html for html in outputs)
    page = blank.show("")
    page.evaluate(AS_JUPYTER, outputs)
    assert page.locator(".attn-widget figure").count() == 3
    expect(page.locator('.attn-widget[data-attn-kind="quiz"] [data-quiz="check"]')).to_have_count(1)
    assert page.locator(".attn-fallback").count() == 0
    weights = '.attn-widget[aria-label="Weight-free attention weights"]'
    _check_heatmap_cells(page, weights, _weights())
    scores = '.attn-widget[aria-label="Weight-free attention scores"]'
    _check_keyboard(page, scores, all_attention_scores(toy_inputs()))
    assert page.locator('.attn-widget[data-attn-kind="steps"] [role="tab"]').count() == 5


def test_a_downloaded_notebooks_saved_outputs_draw_themselves(blank):
    _check_chapter_outputs(blank, _widget_outputs(_downloaded(CHAPTER)))


def test_the_book_page_shows_the_same_widgets_without_their_copies():
    # The page loads the script and stylesheet itself: its widgets are the
    # notebook's outputs with the portable part removed, and nothing more.
    html = (SITE / f"{CHAPTER}.html").read_text(encoding="utf-8")
    outputs = _widget_outputs(_downloaded(CHAPTER))
    for output in outputs:
        start, end = output.index(PORTABLE_START), output.index(PORTABLE_END)
        book = (output[:start] + output[end + len(PORTABLE_END) :]).strip()
        assert book in html
    for marker in ("attn-portable", "attn-fallback", "attn-script", "STYLESHEET"):
        assert marker not in html


def test_the_playground_notebook_output_draws_itself(blank):
    outputs = _widget_outputs(_downloaded("playground"))
    assert _kinds(outputs) == ["lab", "playground", "layout", "model-lab"]
    page = blank.show("")
    page.evaluate(AS_JUPYTER, outputs)
    # Each drew from the script its own output carried (expect waits for the drawing).
    drawn = {
        "lab": "[data-lab-line]",
        "playground": ".attn-pg",
        "layout": '[data-lay="strip"]',
        "model-lab": '[data-ml="text"]',
    }
    for kind, part in drawn.items():
        expect(page.locator(f'.attn-widget[data-attn-kind="{kind}"] {part}').first).to_be_visible()
    assert page.locator(".attn-fallback").count() == 0


def test_a_downloaded_notebook_run_again_draws_its_widgets(blank, tmp_path):
    notebook = _downloaded(CHAPTER)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=env)
    _check_chapter_outputs(blank, _widget_outputs(notebook))


def test_masked_heads_draw_in_a_blank_page(blank):
    scores = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(1))
    weights = torch.softmax(scores.masked_fill(causal_mask(4), -torch.inf), dim=-1)
    page = blank.show(
        interactive_heatmap(weights, blocked=causal_mask(4), title="Heads")._repr_html_()
    )
    page.get_by_label("Head", exact=True).select_option("1")
    cells = page.locator("td").evaluate_all("t => t.map(c => c.dataset.value)")
    for k, value in enumerate(cells):
        i, j = divmod(k, 4)
        if j > i:
            assert value == "masked"
        else:
            assert abs(float(value) - weights[1, i, j].item()) < 1e-5


@pytest.fixture(autouse=True)
def _artifacts() -> None:
    (Path(__file__).parent / "artifacts").mkdir(exist_ok=True)
