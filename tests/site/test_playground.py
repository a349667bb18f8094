"""The attention playground (docs/playground.md) in a real browser.

Its arithmetic is held to the reference cases that the package computes and
embeds in the page; the cases are read from the page itself, so these tests
follow the package. The page is driven through its controls only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page

from tests.site.conftest import new_page
from tests.site.modes import settle

PAGE = "playground.html"
ROOT = '.attn-widget[data-attn-kind="playground"]'
ARTIFACTS = Path(__file__).parent / "artifacts"
TOL = 1e-4
MATS = ("W_query", "W_key", "W_value")

# Read every numeric output of the playground, as the strings of data-value.
READ = """root => {
  const grid = (sel, a, b) => {
    const out = [];
    for (const e of root.querySelectorAll(sel)) {
      const i = +e.getAttribute(a), j = +e.getAttribute(b);
      (out[i] = out[i] || [])[j] = e.dataset.value;
    }
    return out;
  };
  const out = (name) => `[data-pg-out="${name}"]`;
  return {
    scores: grid(`${out("scores")} [data-head][data-key]`, "data-head", "data-key"),
    weights: grid(`${out("weights")} [data-head][data-key]`, "data-head", "data-key"),
    context: [...root.querySelectorAll(`${out("context")} [data-index]`)]
      .sort((a, b) => a.dataset.index - b.dataset.index).map((e) => e.dataset.value),
    all_context: grid(`${out("all_context")} [data-row][data-col]`, "data-row", "data-col"),
    heatmap: grid(`${out("heatmap")} [data-row][data-col]`, "data-row", "data-col"),
    shapes: root.querySelector(out("shapes")).textContent,
  };
}"""


class Problems:
    """Everything that went wrong while a page was open."""

    def __init__(self, page: Page, host: str) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.foreign: list[str] = []
        page.on(
            "console",
            lambda m: (
                self.console.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on(
            "response",
            lambda r: self.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None,
        )
        page.on(
            "request",
            lambda r: (
                self.foreign.append(r.url)
                if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != host
                else None
            ),
        )

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "console": self.console,
            "errors": self.errors,
            "failed": self.failed,
            "foreign": self.foreign,
        }


@pytest.fixture
def opened(browser: Browser, site_url: str) -> Iterator[tuple[Page, Problems]]:
    """The playground page, drawn, with a record of what went wrong."""
    page = new_page(browser, viewport={"width": 1280, "height": 1000})
    problems = Problems(page, urlsplit(site_url).netloc)
    page.goto(f"{site_url}/{PAGE}", wait_until="networkidle")
    _wait_drawn(page)
    try:
        yield page, problems
    finally:
        page.close()


@pytest.fixture
def page(opened: tuple[Page, Problems]) -> Iterator[Page]:
    """The playground page; the test fails if it logged any error or warning."""
    page, problems = opened
    yield page
    assert problems.as_dict() == {"console": [], "errors": [], "failed": [], "foreign": []}


def _wait_drawn(page: Page) -> None:
    page.wait_for_selector(f'{ROOT} [data-pg-out="weights"] [data-head="0"][data-key="0"]')


def _reload(page: Page) -> None:
    page.reload(wait_until="networkidle")
    _wait_drawn(page)


def pg(page: Page, name: str) -> Locator:
    """The control with ``data-pg=name`` inside the playground."""
    return page.locator(f'{ROOT} [data-pg="{name}"]')


def cell(page: Page, name: str, row: int, col: int) -> Locator:
    """An editable number: an embedding (``x``) or a matrix entry."""
    return page.locator(f'{ROOT} input[data-pg="{name}"][data-row="{row}"][data-col="{col}"]')


def data(page: Page) -> dict[str, Any]:
    """The playground's own JSON, as the package embedded it in the page."""
    text = page.eval_on_selector(f"{ROOT} script.attn-data", "s => s.textContent")
    return json.loads(text)


def read(page: Page) -> dict[str, Any]:
    """Every numeric output, as floats (-inf where masked); shapes as text."""
    raw = page.eval_on_selector(ROOT, READ)

    def floats(v: Any) -> Any:
        return [floats(x) for x in v] if isinstance(v, list) else float(v)

    return {k: (v if k == "shapes" else floats(v)) for k, v in raw.items()}


def mismatches(got: Any, expected: Any, where: str) -> list[str]:
    """Every place where ``got`` differs from ``expected`` (None = masked, -inf)."""
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{where}: {got!r} has not the shape of {expected!r}"]
        return [
            m
            for i, (g, e) in enumerate(zip(got, expected, strict=True))
            for m in mismatches(g, e, f"{where}[{i}]")
        ]
    if expected is None:
        return [] if got == -math.inf else [f"{where}: {got} is not masked (-inf)"]
    return [] if math.isclose(got, expected, abs_tol=TOL) else [f"{where}: {got} != {expected}"]


def set_case(page: Page, case: dict[str, Any], initial: dict[str, Any]) -> None:
    """Drive the controls to the settings and inputs of a reference case."""
    pg(page, "mode").select_option(case["mode"])
    if case["mode"] == "trainable":
        pg(page, "d_out").select_option(str(case["d_out"]))
        pg(page, "heads").select_option(str(case["heads"]))
    pg(page, "query").select_option(str(case["query"]))
    pg(page, "scale").set_checked(case["scale"])
    pg(page, "causal").set_checked(case["causal"])
    for i, row in enumerate(case["inputs"]):
        for k, v in enumerate(row):
            if v != initial["inputs"][i][k]:
                cell(page, "x", i, k).fill(str(v))
    if case["mode"] == "trainable":
        seeded = initial["seeded"][str(case["d_out"])]
        for m in MATS:
            for i, row in enumerate(case[m]):
                for k, v in enumerate(row):
                    if v != seeded[m][i][k]:
                        cell(page, m, i, k).fill(str(v))


# ---- The numbers -------------------------------------------------------------


def test_the_start_is_chapter_3(page):
    first = data(page)["cases"][0]
    assert first["mode"] == "weight-free"
    assert first["query"] == 1
    out = read(page)
    expected = first["expected"]
    assert mismatches(out["scores"], expected["scores"], "scores") == []
    assert mismatches(out["weights"], expected["weights"], "weights") == []
    assert mismatches(out["context"], expected["context"], "context") == []
    assert mismatches(out["all_context"], expected["all_context"], "all_context") == []
    # The book's context vector of "journey".
    assert mismatches(out["context"], [0.4419, 0.6515, 0.5683], "context") == []
    assert pg(page, "query").input_value() == "1"
    assert pg(page, "mode").input_value() == "weight-free"


def test_editing_an_embedding_recomputes_at_once(page):
    assert read(page)["scores"][0][0] == pytest.approx(0.9544, abs=TOL)
    cell(page, "x", 0, 0).fill("0.53")  # "Your"'s first value; fill fires the input event
    out = read(page)
    assert out["scores"][0][0] == pytest.approx(1.0094, abs=TOL)
    edited = data(page)["cases"][1]
    assert edited["inputs"][0][0] == 0.53
    assert mismatches(out["weights"], edited["expected"]["weights"], "weights") == []
    assert mismatches(out["context"], edited["expected"]["context"], "context") == []


def test_every_reference_case_through_the_controls(page):
    initial = data(page)
    cases = initial["cases"]
    assert len(cases) >= 8
    assert {c["mode"] for c in cases} == {"weight-free", "trainable"}
    assert any(c["causal"] for c in cases)
    assert any(c["heads"] > 1 for c in cases)
    failures = []
    for case in cases:
        _reload(page)
        set_case(page, case, initial)
        out = read(page)
        for key in ("scores", "weights", "context", "all_context"):
            failures += mismatches(out[key], case["expected"][key], f"{case['name']}: {key}")
        # The heatmap of head 1 has the query's weights in the query's row.
        q = case["query"]
        failures += mismatches(
            out["heatmap"][q], case["expected"]["weights"][0], f"{case['name']}: heatmap"
        )
        for i, row in enumerate(out["heatmap"]):
            if not math.isclose(sum(row), 1.0, abs_tol=TOL):
                failures.append(f"{case['name']}: heatmap row {i} sums to {sum(row)}")
    assert failures == []


def test_the_check_sees_wrong_numbers():
    expected = {"scores": [[1.0, None]], "context": [0.5]}
    assert mismatches([[1.0, -math.inf]], expected["scores"], "s") == []
    assert mismatches([[1.0002, -math.inf]], expected["scores"], "s") != []
    assert mismatches([[1.0, 0.0]], expected["scores"], "s") != []
    assert mismatches([0.5, 0.1], expected["context"], "c") != []


def test_numbers_show_four_decimals_and_keep_full_precision(page):
    pg(page, "causal").check()
    shown = page.eval_on_selector_all(
        f"{ROOT} [data-value]", "els => els.map(e => [e.textContent, e.dataset.value])"
    )
    assert len(shown) > 50
    assert ["−∞", "-Infinity"] in shown
    for text, value in shown:
        if value == "-Infinity":
            assert text == "−∞"
            continue
        decimals = text.partition(".")[2]
        assert len(decimals) == 4, text
        assert float(text) == pytest.approx(float(value), abs=5.1e-5)
    assert any(len(value) > 8 for _, value in shown)  # more digits than are shown


# ---- Controls ------------------------------------------------------------------


def test_dropout_zeroes_or_rescales_and_redraws(page):
    pg(page, "mode").select_option("trainable")
    assert pg(page, "p").is_disabled()
    assert pg(page, "redraw").is_disabled()
    evaluated = read(page)
    pg(page, "dropout").check()
    pg(page, "p").fill("0.5")

    def check(out: dict[str, Any]) -> None:
        for name in ("weights", "heatmap"):
            got = [w for row in out[name] for w in row]
            ref = [w for row in evaluated[name] for w in row]
            for g, e in zip(got, ref, strict=True):
                assert g == 0.0 or g == pytest.approx(e / 0.5, abs=TOL), (name, g, e)
        cells = [w for row in out["heatmap"] for w in row]
        assert 0.0 in cells
        assert any(w > 0 for w in cells)

    first = read(page)
    check(first)
    assert first["heatmap"] != evaluated["heatmap"]
    draws = [first["heatmap"]]
    for _ in range(4):
        pg(page, "redraw").click()
        out = read(page)
        check(out)
        draws.append(out["heatmap"])
    assert any(d != draws[0] for d in draws[1:])

    pg(page, "dropout").uncheck()
    back = page.eval_on_selector_all(
        f'{ROOT} [data-pg-out="weights"] [data-value]', "els => els.map(e => e.dataset.value)"
    )
    assert [float(v) for v in back] == [w for row in evaluated["weights"] for w in row]
    assert read(page) == evaluated


def test_shapes_follow_the_settings(page):
    assert "(6, 3)" in read(page)["shapes"]
    pg(page, "mode").select_option("trainable")
    pg(page, "d_out").select_option("4")
    pg(page, "heads").select_option("2")
    shapes = read(page)["shapes"]
    assert "(2, 6, 2)" in shapes  # Q_h, K_h, V_h
    assert "(2, 6, 6)" in shapes  # scores and weights
    assert "(3, 4)" in shapes  # W_query, W_key, W_value
    assert "(6, 4)" in shapes  # Q, K, V and the context
    assert len(read(page)["context"]) == 4


def test_heads_offer_only_divisors_and_matrices_follow_d_out(page):
    seeded = data(page)["seeded"]
    pg(page, "mode").select_option("trainable")
    for d_out, divisors in (("6", ["1", "2", "3", "6"]), ("8", ["1", "2", "4", "8"])):
        pg(page, "d_out").select_option(d_out)
        options = pg(page, "heads").locator("option").all_inner_texts()
        assert options == divisors
        for m in MATS:
            assert page.locator(f'{ROOT} input[data-pg="{m}"]').count() == 3 * int(d_out)
            assert cell(page, m, 2, int(d_out) - 1).input_value() == str(
                seeded[d_out][m][2][int(d_out) - 1]
            )
    assert sorted(pg(page, "d_out").locator("option").all_inner_texts(), key=int) == sorted(
        seeded, key=int
    )


def test_reset_restores_the_seeded_matrices(page):
    initial = data(page)
    seeded = initial["seeded"][str(initial["initial"]["d_out"])]
    reference = next(
        c
        for c in initial["cases"]
        if c["mode"] == "trainable"
        and all(c.get(m) == seeded[m] for m in MATS)
        and c["query"] == initial["initial"]["query"]
        and (c["scale"], c["causal"], c["heads"]) == (True, False, 1)
    )
    pg(page, "mode").select_option("trainable")
    pg(page, "scale").check()
    assert mismatches(read(page)["scores"], reference["expected"]["scores"], "scores") == []
    cell(page, "W_query", 0, 0).fill("5")
    assert mismatches(read(page)["scores"], reference["expected"]["scores"], "scores") != []
    pg(page, "reset-weights").click()
    assert cell(page, "W_query", 0, 0).input_value() == str(reference["W_query"][0][0])
    assert mismatches(read(page)["scores"], reference["expected"]["scores"], "scores") == []


def test_the_heatmap_head_selector(page):
    reference = next(c for c in data(page)["cases"] if c["heads"] == 2)
    set_case(page, reference, data(page))
    heat = pg(page, "heat-head")
    assert heat.is_visible()
    q = reference["query"]
    assert mismatches(read(page)["heatmap"][q], reference["expected"]["weights"][0], "h1") == []
    heat.select_option("1")
    assert mismatches(read(page)["heatmap"][q], reference["expected"]["weights"][1], "h2") == []
    pg(page, "mode").select_option("weight-free")
    assert not heat.is_visible()


def test_a_sentence_replaces_the_tokens(page):
    inputs = data(page)["inputs"]
    pg(page, "sentence").fill("Your cat starts a journey!")
    pg(page, "use-sentence").click()
    assert pg(page, "query").locator("option").count() == 5
    assert page.locator(f'{ROOT} input[data-pg="x"]').count() == 15

    def embedding(i: int) -> list[float]:
        return [float(cell(page, "x", i, k).input_value()) for k in range(3)]

    assert embedding(0) == inputs[0]  # "Your" keeps its embedding
    assert embedding(2) == inputs[2]  # "starts"
    assert embedding(4) == inputs[1]  # "journey"
    cat, a = embedding(1), embedding(3)
    assert cat != a
    assert all(0 <= v < 1 for v in cat + a)
    out = read(page)
    assert len(out["weights"][0]) == 5
    assert len(out["all_context"]) == 5
    assert sum(out["weights"][0]) == pytest.approx(1.0, abs=TOL)

    cell(page, "x", 1, 0).fill("2")  # new words stay editable
    assert read(page)["scores"] != out["scores"]

    _reload(page)  # the same word gets the same embedding every time
    pg(page, "sentence").fill("the cat")
    pg(page, "use-sentence").click()
    assert embedding(1) == cat

    pg(page, "sentence").fill(" ".join(f"w{i}" for i in range(14)))
    pg(page, "sentence").press("Enter")
    assert pg(page, "query").locator("option").count() == 10
    assert "10" in page.locator(f"{ROOT} [role=status]").inner_text()


def test_the_keyboard_reaches_and_drives_the_controls(page):
    inputs = data(page)["inputs"]
    page.locator("article a[href*='03-self-attention']").first.focus()
    reached = []
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.dataset.pg || ''"))
    for name in ("mode", "query", "scale", "causal", "dropout", "sentence", "use-sentence", "x"):
        assert name in reached, (name, reached)

    pg(page, "query").focus()
    page.keyboard.press("ArrowDown")
    assert pg(page, "query").input_value() == "2"  # "starts"
    scores = read(page)["scores"][0]
    by_hand = [sum(a * b for a, b in zip(x, inputs[2], strict=True)) for x in inputs]
    assert scores == pytest.approx(by_hand, abs=TOL)

    pg(page, "causal").focus()
    page.keyboard.press("Space")
    masked = read(page)["scores"][0]
    assert masked[:3] == pytest.approx(by_hand[:3], abs=TOL)
    assert masked[3:] == [-math.inf] * 3


def test_no_errors_and_no_foreign_requests_while_playing(opened):
    page, problems = opened
    pg(page, "mode").select_option("trainable")
    pg(page, "d_out").select_option("8")
    pg(page, "heads").select_option("4")
    pg(page, "heat-head").select_option("3")
    pg(page, "causal").check()
    pg(page, "dropout").check()
    pg(page, "p").fill("0.95")
    pg(page, "redraw").click()
    pg(page, "p").fill("2")  # out of range: flagged, ignored
    assert pg(page, "p").get_attribute("aria-invalid") == "true"
    cell(page, "W_value", 1, 7).fill("")  # empty: flagged, ignored
    pg(page, "reset-weights").click()
    pg(page, "sentence").fill("")
    pg(page, "use-sentence").click()
    pg(page, "sentence").fill("one")
    pg(page, "use-sentence").click()
    assert len(read(page)["all_context"]) == 1
    assert problems.as_dict() == {"console": [], "errors": [], "failed": [], "foreign": []}


def test_every_control_has_a_name_and_every_table_headers(page):
    pg(page, "mode").select_option("trainable")
    pg(page, "d_out").select_option("4")
    pg(page, "heads").select_option("2")
    unnamed = page.eval_on_selector(
        ROOT,
        """root => [...root.querySelectorAll("input, select, button")]
            .filter(e => !(e.getAttribute("aria-label") || (e.labels && e.labels.length)
                           || (e.tagName === "BUTTON" && e.textContent.trim())))
            .map(e => e.outerHTML)""",
    )
    assert unnamed == []
    assert page.locator(f"{ROOT} input").count() > 3 * 4 * 3 + 6 * 3
    tables = page.eval_on_selector(
        ROOT,
        """root => [...root.querySelectorAll("table")].map(t => [
            t.querySelectorAll("thead th[scope=col]").length,
            t.querySelectorAll("tbody th[scope=row]").length,
            t.caption ? t.caption.textContent : ""])""",
    )
    assert len(tables) == 10  # X, three matrices, shapes, scores, weights, two contexts, heatmap
    for cols, rows, caption in tables:
        assert cols > 0
        assert rows > 0
        assert caption


# ---- Looks ---------------------------------------------------------------------


def _set_theme(page: Page, theme: str) -> None:
    page.evaluate(
        "t => Object.assign(document.documentElement.dataset, {theme: t, mode: t})", theme
    )
    settle(page)  # colours are read next: not while the theme's transitions run


def _luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390, 360])
def test_screenshots_and_layout(page, theme, width):
    page.set_viewport_size({"width": width, "height": 3000})
    _set_theme(page, theme)
    ARTIFACTS.mkdir(exist_ok=True)
    root = page.locator(ROOT)
    for state in ("start", "trainable"):
        if state == "trainable":
            pg(page, "mode").select_option("trainable")
            pg(page, "d_out").select_option("4")
            pg(page, "heads").select_option("2")
            pg(page, "causal").check()
        page.evaluate(f"() => document.querySelector('{ROOT}').scrollIntoView()")
        # The page never scrolls sideways; wide tables scroll inside their own box.
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        box = root.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width
        if width != 360:
            page.screenshot(
                path=str(ARTIFACTS / f"playground-{state}-{theme}-{width}.png"),
                clip={
                    "x": 0,
                    "y": max(0, box["y"] - 8),
                    "width": width,
                    "height": box["height"] + 16,
                },
            )
    caption = page.locator(f'{ROOT} [data-pg-out="weights"] caption')
    text = _luminance(caption.evaluate("e => getComputedStyle(e).color"))
    body = _luminance(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))
    backdrop = root.evaluate("e => getComputedStyle(e.parentElement).backgroundColor")
    if theme == "dark":
        assert text > 0.6
        assert body < 0.15
        assert backdrop in ("rgba(0, 0, 0, 0)", "transparent")
    else:
        assert text < 0.3
        assert body > 0.85
