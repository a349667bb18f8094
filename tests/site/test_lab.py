"""The attention lab (the top of docs/playground.md) in a real browser.

Every step of the lab's forward pass is held to the reference cases that the
package computes (attention.lab.lab_cases) and embeds in the page, the
broken variants included: no scaling at a large d_k, zeroing after the
softmax, dropout with a fixed mask in training and evaluation, and a row
whose every key is masked (NaN) beside the package's guard. The page is
driven through its controls only.

Tolerance: the page computes in float64 from inputs rounded to six decimals,
the package in float32; every value is compared within ``1e-4 + 1e-5 * |x|``
(the unscaled scores at d_k 512 reach a few tens). NaN must be NaN and -inf
-inf.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Page

from tests.site import test_playground as playground_tests
from tests.site.conftest import new_context
from tests.site.modes import DESKTOP, PHONE, open_in_mode
from tests.site.test_weight import KB, first_load

PAGE = "playground.html"
ROOT = '.attn-widget[data-attn-kind="lab"]'
ATOL, RTOL = 1e-4, 1e-5
WEIGHT_LIMIT = 1000 * KB

# Every tensor the lab shows, as the strings of data-value, by step; the
# softmax rows' statistics; the guard's row.
READ = """root => {
  const grid = (table) => {
    const out = [];
    for (const e of table.querySelectorAll("td[data-row][data-col]"))
      (out[+e.dataset.row] = out[+e.dataset.row] || [])[+e.dataset.col] = e.dataset.value;
    return out;
  };
  const steps = {};
  for (const t of root.querySelectorAll("table[data-lab-step]")) steps[t.dataset.labStep] = grid(t);
  const stat = (name) => [...root.querySelectorAll(`td[data-stat="${name}"]`)]
    .filter((e) => e.closest("[data-lab-step]").dataset.labStep === "weights")
    .sort((a, b) => a.dataset.row - b.dataset.row).map((e) => e.dataset.value);
  const sums = {};
  for (const e of root.querySelectorAll('td[data-stat="sum"]')) {
    const id = e.closest("[data-lab-step]").dataset.labStep;
    (sums[id] = sums[id] || [])[+e.dataset.row] = e.dataset.value;
  }
  const guard = (kind) => [...root.querySelectorAll(`td[data-guard="${kind}"]`)]
    .sort((a, b) => a.dataset.col - b.dataset.col).map((e) => e.dataset.value);
  return {
    order: [...root.querySelectorAll("[data-lab-line]")].map((e) => e.dataset.labLine),
    steps, sums,
    max_weight: stat("max_weight"), entropy: stat("entropy"),
    guarded: guard("weights"), guarded_context: guard("context"),
  };
}"""


def number(v: Any) -> float:
    """A JSON value of attention.lab._encode, or a data-value string, as a float."""
    return float(v) if not isinstance(v, str) else float(v.replace("Infinity", "inf"))


def mismatches(got: Any, expected: Any, where: str) -> list[str]:
    """Every place where ``got`` differs from ``expected`` beyond the tolerance."""
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{where}: {got!r} has not the shape of {expected!r}"]
        return [
            m
            for i, (g, e) in enumerate(zip(got, expected, strict=True))
            for m in mismatches(g, e, f"{where}[{i}]")
        ]
    g, e = number(got), number(expected)
    if math.isnan(e) or math.isinf(e):
        same = math.isnan(g) if math.isnan(e) else g == e  # exact: both infinite, same sign
        return [] if same else [f"{where}: {got} is not {expected}"]
    return [] if math.isclose(g, e, abs_tol=ATOL, rel_tol=RTOL) else [f"{where}: {got} != {e}"]


# The page, opened as the playground's tests open it (the fixtures record console
# messages, failed and foreign requests). One script draws the lab and the
# playground in one go, so the page the playground's fixture hands over has the
# lab drawn too; the ``page`` fixture fails a test that logged any problem.
opened = playground_tests.opened
page = playground_tests.page


def _wait_drawn(page: Page) -> None:
    page.wait_for_selector(f'{ROOT} [data-lab-step="scores"] td[data-row="0"][data-col="0"]')


def lab(page: Page, name: str) -> Any:
    """The control with ``data-lab=name`` inside the lab."""
    return page.locator(f'{ROOT} [data-lab="{name}"]')


def data(page: Page) -> dict[str, Any]:
    """The lab's JSON, as the package embedded it in the page."""
    return json.loads(page.eval_on_selector(f"{ROOT} script.attn-data", "s => s.textContent"))


def read(page: Page) -> dict[str, Any]:
    return page.eval_on_selector(ROOT, READ)


def set_case(page: Page, settings: dict[str, Any], d_k: list[int]) -> None:
    """Drive the lab's controls to a reference case's settings."""
    lab(page, "source").select_option(settings["source"])
    if settings["source"] == "random":
        lab(page, "d_k").fill(str(d_k.index(settings["d_k"])))
    for name in ("scale", "mask_after", "training"):
        lab(page, name).set_checked(settings[name])
    row = settings["blocked_row"]
    lab(page, "blocked_row").select_option("" if row is None else str(row))


def explanation(page: Page) -> str:
    return page.locator(f'{ROOT} [data-lab-out="explain"]').inner_text()


def current_step(page: Page) -> str:
    step = page.locator(f'{ROOT} [data-lab-line][aria-current="step"]').get_attribute(
        "data-lab-line"
    )
    assert step is not None
    return step


def visible_cell(page: Page, step: str, row: int, col: int) -> Any:
    return page.locator(f'{ROOT} [data-lab-step="{step}"] td[data-row="{row}"][data-col="{col}"]')


# ---- The numbers -------------------------------------------------------------


def test_the_check_sees_wrong_numbers():
    assert mismatches(["NaN", "-Infinity", "1.00001"], ["NaN", "-Infinity", 1.0], "x") == []
    assert mismatches(["0"], ["NaN"], "x") != []
    assert mismatches(["-Infinity"], ["Infinity"], "x") != []
    assert mismatches(["1.0002"], [1.0], "x") != []
    assert mismatches(["50.0004"], [50.0], "x") == []  # within 1e-4 + 1e-5 * 50
    assert mismatches(["50.002"], [50.0], "x") != []


def test_every_reference_case_through_the_controls(page):
    embedded = data(page)
    cases = embedded["cases"]
    names = " | ".join(c["name"] for c in cases)
    assert len(cases) >= 10, names
    failures: list[str] = []
    for case in cases:
        page.reload(wait_until="networkidle")
        _wait_drawn(page)
        settings, expected = case["settings"], case["expected"]
        set_case(page, settings, embedded["d_k"])
        out = read(page)
        name = case["name"]
        order = ["scores", "scaled", "weights", "dropped", "context"]
        order.insert(
            3 if settings["mask_after"] else 2, "zeroed" if settings["mask_after"] else "masked"
        )
        assert out["order"] == order, name
        for step in order:
            failures += mismatches(out["steps"][step], expected[step], f"{name}: {step}")
        failures += mismatches(out["max_weight"], expected["max_weight"], f"{name}: max")
        failures += mismatches(out["entropy"], expected["entropy"], f"{name}: entropy")
        for step in ("weights", "dropped"):
            row_sums = [
                sum(number(w) for w in row) if all(number(w) == number(w) for w in row) else "NaN"
                for row in expected[step]
            ]
            failures += mismatches(out["sums"][step], row_sums, f"{name}: {step} row sums")
        row = settings["blocked_row"]
        if row is not None and not settings["mask_after"]:
            failures += mismatches(out["guarded"], expected["guarded"][row], f"{name}: guard")
            failures += mismatches(
                out["guarded_context"], expected["guarded_context"][row], f"{name}: guard ctx"
            )
        else:
            assert out["guarded"] == [], name
    assert failures == []


def test_the_broken_variants_show_what_breaks(page):
    embedded = data(page)

    def case(**change: Any) -> dict[str, Any]:
        return next(
            c for c in embedded["cases"] if c["settings"] == {**embedded["initial"], **change}
        )

    # No scaling at d_k 512: the softmax saturates (max weight near 1, entropy near 0).
    saturated = case(source="random", d_k=512, scale=False)
    set_case(page, saturated["settings"], embedded["d_k"])
    out = read(page)
    maxes = [float(v) for v in out["max_weight"][1:]]
    assert sum(maxes) / len(maxes) > 0.95
    assert "no scaling" in page.locator(f'{ROOT} [data-lab-out="saturation"]').inner_text()
    raw = [float(v) for v in out["entropy"][1:]]
    lab(page, "scale").check()
    scaled = [float(v) for v in read(page)["entropy"][1:]]
    assert sum(scaled) > 3 * sum(raw)

    # Zero after the softmax: every row but the last sums to less than one.
    set_case(page, case(mask_after=True)["settings"], embedded["d_k"])
    sums = [float(v) for v in read(page)["sums"]["zeroed"]]
    assert all(s < 0.999 for s in sums[:-1])
    assert sums[-1] == pytest.approx(1.0, abs=1e-4)

    # Training: kept weights are the evaluation weights times 1 / (1 - p) = 2.
    lab(page, "mask_after").uncheck()
    evaluation = read(page)["steps"]["dropped"]
    lab(page, "training").check()
    training = read(page)["steps"]["dropped"]
    keep = embedded["keep"]
    factor = 1 / (1 - embedded["p"])
    for i, row in enumerate(training):
        for j, w in enumerate(row):
            want = float(evaluation[i][j]) * factor if keep[i][j] else 0.0
            assert float(w) == pytest.approx(want, abs=ATOL), (i, j)

    # A fully masked row: NaN in the softmax and the context, zeros from the guard.
    lab(page, "training").uncheck()
    lab(page, "blocked_row").select_option("2")
    out = read(page)
    assert out["steps"]["weights"][2] == ["NaN"] * 6
    assert out["steps"]["context"][2] == ["NaN"] * 2
    assert [float(v) for v in out["guarded"]] == [0.0] * 6
    assert [float(v) for v in out["guarded_context"]] == [0.0] * 2
    assert "NaN" in visible_cell(page, "weights", 2, 0).inner_text()


# ---- Stepping and the terms of a cell ------------------------------------------


def test_it_starts_on_the_first_line_and_steps_with_buttons_and_keys(page):
    live = page.locator(f"{ROOT} .attn-lab-live")
    assert current_step(page) == "scores"
    assert "Step 1 of 6: scores = queries @ keys.T" in live.inner_text()
    assert "(6, 6)" in live.inner_text()
    assert lab(page, "prev").is_disabled()
    assert page.locator(f'{ROOT} [data-lab-panel="scores"]').is_visible()
    assert not page.locator(f'{ROOT} [data-lab-panel="scaled"]').is_visible()

    lab(page, "next").click()
    assert current_step(page) == "scaled"
    assert "keys.shape[-1] ** 0.5" in live.inner_text()
    assert page.locator(f'{ROOT} [data-lab-panel="scaled"]').is_visible()

    page.locator(f'{ROOT} [data-lab-line="scaled"]').focus()
    page.keyboard.press("ArrowRight")
    assert current_step(page) == "masked"
    page.keyboard.press("ArrowDown")
    assert current_step(page) == "weights"
    assert page.evaluate("() => document.activeElement.dataset.labLine") == "weights"
    page.keyboard.press("ArrowLeft")
    assert current_step(page) == "masked"
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    assert current_step(page) == "context"
    assert "Step 6 of 6: context = weights @ values" in live.inner_text()
    assert "(6, 2)" in live.inner_text()
    assert lab(page, "next").is_disabled()
    page.locator(f'{ROOT} [data-lab-line="weights"]').click()
    assert current_step(page) == "weights"


def _products(text: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(r"(-?\d+\.\d+)×(-?\d+\.\d+)", text)]


def _result(text: str) -> float:
    return float(re.findall(r"= (-?\d+\.\d+)$", text.strip())[0])


def test_a_score_spells_out_its_dot_product(page):
    embedded = data(page)
    head = embedded["inputs"]["book"]
    visible_cell(page, "scores", 1, 0).click()  # journey's query against Your's key
    text = explanation(page)
    terms = _products(text)
    assert terms == [
        pytest.approx((q, k), abs=5.1e-5)
        for q, k in zip(head["queries"][1], head["keys"][0], strict=True)
    ]
    value = float(visible_cell(page, "scores", 1, 0).get_attribute("data-value"))
    assert _result(text) == pytest.approx(value, abs=5.1e-5)
    assert sum(a * b for a, b in terms) == pytest.approx(value, abs=1e-3)

    # The keyboard moves the selection inside the grid and explains the new cell.
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.col") == "1"
    text = explanation(page)
    assert _products(text)[0] == pytest.approx(
        (head["queries"][1][0], head["keys"][1][0]), abs=5.1e-5
    )
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.dataset.row") == "2"
    assert current_step(page) == "scores"  # arrows inside the grid never change the step


def test_a_wide_dot_product_is_shortened_but_still_sums(page):
    embedded = data(page)
    set_case(page, {**embedded["initial"], "source": "random", "d_k": 512}, embedded["d_k"])
    visible_cell(page, "scores", 3, 1).click()
    text = explanation(page)
    assert "508 more terms" in text
    assert len(_products(text)) == 4


def test_softmax_dropout_and_context_cells_show_their_terms(page):
    lab(page, "next").click()
    lab(page, "next").click()
    lab(page, "next").click()
    assert current_step(page) == "weights"
    visible_cell(page, "weights", 2, 1).click()
    text = explanation(page)
    exps = [float(x) for x in re.findall(r"exp\((-?\d+\.\d+)\)", text)]
    assert len(exps) == 1 + 3  # the cell's own, then the row's three visible keys
    assert text.count("exp(−∞)") == 3  # and its three masked keys
    num, den = math.exp(exps[0]), sum(math.exp(x) for x in exps[1:])
    assert _result(text) == pytest.approx(num / den, abs=2e-4)

    lab(page, "training").check()
    lab(page, "next").click()
    assert current_step(page) == "dropped"
    keep = data(page)["keep"]
    kept = next((i, j) for i in range(6) for j in range(i + 1) if keep[i][j])
    dropped = next((i, j) for i in range(6) for j in range(i + 1) if not keep[i][j])
    visible_cell(page, "dropped", *kept).click()
    assert "× 1/(1 − 0.5)" in explanation(page)
    assert "× 2.0000" in explanation(page)
    visible_cell(page, "dropped", *dropped).click()
    assert "Dropped" in explanation(page)
    lab(page, "training").uncheck()
    assert (
        "evaluation: does nothing" in page.locator(f'{ROOT} [data-lab-line="dropped"]').inner_text()
    )

    lab(page, "next").click()
    assert current_step(page) == "context"
    visible_cell(page, "context", 3, 0).click()
    text = explanation(page)
    terms = _products(text)
    assert len(terms) == 6
    assert sum(a * b for a, b in terms) == pytest.approx(_result(text), abs=1e-3)


# ---- Accessibility, errors, weight and time ------------------------------------


def test_controls_are_named_tables_have_headers_and_steps_are_announced(page):
    unnamed = page.eval_on_selector(
        ROOT,
        """root => [...root.querySelectorAll("input, select, button")]
            .filter(e => !(e.getAttribute("aria-label") || (e.labels && e.labels.length)
                           || (e.tagName === "BUTTON" && e.textContent.trim())))
            .map(e => e.outerHTML)""",
    )
    assert unnamed == []
    tables = page.eval_on_selector(
        ROOT,
        """root => [...root.querySelectorAll("table")].map(t => [
            t.querySelectorAll("thead th[scope=col]").length,
            t.querySelectorAll("tbody th[scope=row]").length,
            t.caption ? t.caption.textContent : "", t.getAttribute("role")])""",
    )
    assert len(tables) == 6
    for cols, rows, caption, role in tables:
        assert cols > 0
        assert rows > 0
        assert "shape" in caption
        assert role == "grid"
    live = page.locator(f"{ROOT} .attn-lab-live")
    assert live.get_attribute("role") == "status"
    assert live.get_attribute("aria-live") == "polite"
    assert page.locator(f'{ROOT} [data-lab-out="explain"]').get_attribute("aria-live") == "polite"


def test_the_keyboard_reaches_every_lab_control(page):
    lab(page, "next").click()  # Previous is disabled on the first step
    page.locator("article h1").first.evaluate("h => { h.tabIndex = -1; h.focus(); }")
    reached = []
    for _ in range(25):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                """() => { const e = document.activeElement, d = e.dataset;
                   return d.lab || (d.labLine && "line") || (d.row && "cell") || ""; }"""
            )
        )
    for name in (
        "prev",
        "next",
        "line",
        "cell",
        "scale",
        "source",
        "mask_after",
        "training",
        "blocked_row",
    ):
        assert name in reached, (name, reached)


def test_no_errors_and_no_foreign_requests_while_breaking_it(opened):
    page, problems = opened
    embedded = data(page)
    for case in embedded["cases"]:
        set_case(page, case["settings"], embedded["d_k"])
        while lab(page, "next").is_enabled():
            lab(page, "next").click()
        page.locator(f"{ROOT} [data-lab-panel]:not([hidden]) td[data-row]").first.click()
        page.keyboard.press("End")
        while lab(page, "prev").is_enabled():
            lab(page, "prev").click()
    assert problems.as_dict() == {"console": [], "errors": [], "failed": [], "foreign": []}


VIEWS = [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light"), (PHONE, "dark")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
def test_axe_finds_nothing_serious_in_the_broken_lab(browser, site_url, device, mode):
    page = open_in_mode(browser, f"{site_url}/{PAGE}", mode, device)
    try:
        _wait_drawn(page)
        lab(page, "source").select_option("random")
        lab(page, "training").check()
        lab(page, "blocked_row").select_option("2")
        lab(page, "next").click()
        lab(page, "next").click()
        lab(page, "next").click()
        visible_cell(page, "weights", 2, 0).click()
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        page.evaluate(AXE_SCRIPT)
        result = page.evaluate(
            f"() => axe.run(document.querySelector('{ROOT}'), {{resultTypes: ['violations']}})"
        )
    finally:
        page.context.close()
    serious = [
        f"{v['id']} [{v['impact']}]: {v['help']}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    print(f"\naxe on the lab, {device.name} {mode}: {len(result['violations'])} violations")
    assert serious == []


def test_first_load_weight_and_time_to_first_interaction(browser, site_url):
    load = first_load(browser, site_url, PAGE)
    print(f"\nplayground.html (lab and playground) first-load weight: {load.weight / KB:.0f} KB")
    assert load.weight <= WEIGHT_LIMIT

    # Time to first interaction: from the navigation's start to the moment a
    # click on Next has moved the lab to its second step, in a fresh context.
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{site_url}/{PAGE}", wait_until="commit")
        lab(page, "next").click()
        page.wait_for_selector(f'{ROOT} [data-lab-line="scaled"][aria-current="step"]')
        in_page = page.evaluate("() => performance.now()")
        print(
            f"time to first interaction: {in_page:.0f} ms after navigation start "
            f"(test's own clock {1000 * (time.perf_counter() - started):.0f} ms)"
        )
        assert current_step(page) == "scaled"
    finally:
        context.close()
