"""Chapter 12's trained model in the browser (the last section of docs/playground.md).

The page runs the model's forward pass on the float32 weights the package
exported at build time. Its numbers are held to the package within
``attention.model_lab.TOLERANCE`` (1e-4): to the reference cases the package
embedded in the page at build time, and, for sequences typed or drawn in the
page, to what the package computes here from the page's own exported weights
(whose round trip is exact: tests/test_model_lab.py). Run with ``-s`` to see
the page's weight and its time to first interaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import torch
from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Browser, Page, expect

from attention.model_lab import (
    TOLERANCE,
    encode,
    import_weights,
    lab_reference,
    ov_circuit,
)
from tests.site.conftest import SITE, new_page
from tests.site.modes import DESKTOP, PHONE, Device, Mode, open_in_mode
from tests.site.test_playground import Problems, mismatches
from tests.site.test_weight import first_load

PAGE = "playground.html"
ROOT = '.attn-widget[data-attn-kind="model-lab"]'
KB = 1000

# What the page computed last, as plain lists (-inf where masked).
RESULT = "root => root.attnModelLab"


def _wait_drawn(page: Page) -> None:
    page.wait_for_selector(f'{ROOT} [data-ml-out="heads"] td[data-row="0"][data-col="0"]')


@pytest.fixture
def opened(browser: Browser, site_url: str) -> Iterator[tuple[Page, Problems]]:
    """The playground page with the model drawn, and a record of what went wrong."""
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
    """The page; the test fails if it logged an error or warning or asked another host."""
    page, problems = opened
    yield page
    assert problems.as_dict() == {"console": [], "errors": [], "failed": [], "foreign": []}


def data(page: Page) -> dict[str, Any]:
    """The widget's JSON, as the package embedded it at build time."""
    return json.loads(page.eval_on_selector(f"{ROOT} script.attn-data", "s => s.textContent"))


def result(page: Page) -> dict[str, Any]:
    out: dict[str, Any] = page.eval_on_selector(ROOT, RESULT)
    return out


def masked(value: Any) -> Any:
    """-inf as None, as the package's JSON writes a masked score."""
    if isinstance(value, list):
        return [masked(v) for v in value]
    return None if value == -math.inf else value


def compare(got: dict[str, Any], expected: dict[str, Any], where: str) -> list[str]:
    """Every number of the page's result that differs from the package's."""
    assert got["ids"] == expected["tokens"], where
    assert got["period"] == expected["period"], where
    problems = []
    for key in ("logits", "weights", "previous", "induction", "scores"):
        if key not in expected:
            continue
        if expected[key] is None:
            problems += [] if got[key] is None else [f"{where}: {key} should be None"]
            continue
        problems += mismatches(got[key], expected[key], f"{where}: {key}")  # None: -inf
    return problems


def type_sequence(page: Page, text: str) -> None:
    page.locator(f'{ROOT} [data-ml="text"]').fill(text)


def package_model(page: Page) -> Any:
    """The model rebuilt by the package from the weights in the page."""
    return import_weights(data(page)["model"]).eval()


# ---- The numbers ---------------------------------------------------------------


def test_the_tolerance_is_the_packages(page):
    assert data(page)["tolerance"] == TOLERANCE == 1e-4


def test_the_page_opens_on_the_first_reference_case(page):
    first = data(page)["cases"][0]
    assert page.locator(f'{ROOT} [data-ml="text"]').input_value() == first["text"]
    assert first["period"] is not None  # a repeated string: both stripes show
    assert compare(result(page), first, "opening") == []


def test_every_reference_case_typed_into_the_box(page):
    cases = data(page)["cases"]
    assert len(cases) >= 3
    assert any(c["period"] is None for c in cases)  # one that never repeats
    for case in cases:
        type_sequence(page, case["text"])
        assert compare(result(page), case, case["text"]) == []


@pytest.mark.parametrize(
    "text",
    [
        "Hello World Hello World",  # typed, spaces skipped: period 10
        "abcdefghijklmnopqrstuvwxyzABCDEF",  # the longest the model reads, no repeat
        "zz",
        "?",
    ],
)
def test_typed_sequences_match_the_package(page, text):
    model = package_model(page)
    type_sequence(page, text)
    expected = lab_reference(model, encode(text))
    assert compare(result(page), expected, text) == []


def test_random_repeated_strings_match_the_package_and_show_the_stripes(page):
    model = package_model(page)
    button = page.locator(f'{ROOT} [data-ml="random"]')
    seen = set()
    for _ in range(3):
        button.click()
        text = page.locator(f'{ROOT} [data-ml="text"]').input_value()
        seen.add(text)
        ids = encode(text)
        half = len(ids) // 2
        assert ids[:half] == ids[half:]  # a string written twice
        expected = lab_reference(model, ids)
        assert compare(result(page), expected, text) == []
    assert len(seen) == 3  # each click draws a new one


def test_the_heatmaps_show_the_computed_weights_and_scores(page):
    out = result(page)
    for n, layer in enumerate(out["weights"]):
        for h, weights in enumerate(layer):
            fig = page.locator(f'{ROOT} [data-ml-out="heads"] [data-layer="{n}"][data-head="{h}"]')
            cells = fig.locator("td[data-value]").evaluate_all(
                "els => els.map(e => [+e.dataset.row, +e.dataset.col, e.dataset.value])"
            )
            assert len(cells) == len(weights) ** 2
            for i, j, value in cells:
                # Above the diagonal exp(-inf) = 0: a masked key gets no weight.
                assert float(value) == pytest.approx(weights[i][j] if j <= i else 0.0, abs=1e-12)
            caption = fig.locator("caption").inner_text()
            assert f"previous-token {out['previous'][n][h]:.3f}" in caption
            assert f"induction {out['induction'][n][h]:.3f}" in caption


def test_inspecting_a_head_shows_its_scores_and_ov_circuit(page):
    model = package_model(page)
    symbols = data(page)["symbols"]
    choice = page.locator(f'{ROOT} [data-ml="head"]')
    for n in range(2):
        for h in range(2):
            choice.select_option(f"{n},{h}")
            out = result(page)
            qk = page.locator(f'{ROOT} [data-ml-out="qk"] td').evaluate_all(
                "els => els.map(e => [+e.dataset.row, +e.dataset.col, e.dataset.value])"
            )
            scores = masked(out["scores"][n][h])
            for i, j, value in qk:
                want = scores[i][j]
                assert (value == "-inf") == (want is None)
                if want is not None:
                    assert float(value) == pytest.approx(want, abs=1e-12)
            circuit = ov_circuit(model, n, h)
            rows = page.locator(f'{ROOT} [data-ml-out="ov"] tbody tr').evaluate_all(
                "rows => rows.map(r => [+r.dataset.source,"
                " [...r.querySelectorAll('td')].map(c => [+c.dataset.output, +c.dataset.value])])"
            )
            assert [s for s, _ in rows] == list(dict.fromkeys(out["ids"]))  # each token once
            for source, top in rows:
                want = torch.topk(circuit[source], 3)
                assert [o for o, _ in top] == want.indices.tolist()
                torch.testing.assert_close(
                    torch.tensor([v for _, v in top], dtype=torch.float64),
                    want.values.double(),
                    atol=TOLERANCE,
                    rtol=0.0,
                )
            copies = int((circuit.argmax(dim=-1) == torch.arange(len(symbols))).sum())
            copying = page.locator(f'{ROOT} [data-ml-out="copying"]').inner_text()
            assert f"for {copies} of {len(symbols)} tokens" in copying


def test_the_induction_head_copies_in_the_page(page):
    copying = data(page)["copying"]
    page.locator(f'{ROOT} [data-ml="head"]').select_option("1,0")
    copies = round(copying[1][0] * 64)
    text = page.locator(f'{ROOT} [data-ml-out="copying"]').inner_text()
    assert f"for {copies} of 64 tokens" in text
    assert ("this head copies" in text) == (copies > 32)


def test_the_predictions_are_the_argmax_of_the_logits(page):
    out = result(page)
    symbols = data(page)["symbols"]
    shown = page.locator(f'{ROOT} [data-ml-out="predictions"] td[data-pred]').evaluate_all(
        "els => els.map(e => [+e.dataset.pred, e.textContent])"
    )
    best = [max(range(len(row)), key=row.__getitem__) for row in out["logits"]]
    assert [p for p, _ in shown] == best
    assert [t for _, t in shown] == [symbols[b] for b in best]


# ---- Input errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ab~c", "Cannot run: “~” (character 3) is not a token of this model."),
        ("   ", "Cannot run: Type at least one token."),
        ("a" * 33, "Cannot run: 33 tokens: the model reads at most 32."),
    ],
)
def test_invalid_input_is_named_and_hides_the_outputs(page, text, message):
    status = page.locator(f'{ROOT} [data-ml-out="status"]')
    heads = page.locator(f'{ROOT} [data-ml-out="heads"]')
    type_sequence(page, text)
    expect(status).to_have_text(message)
    expect(heads).to_be_hidden()
    assert result(page) == {"error": message.removeprefix("Cannot run: ")}
    type_sequence(page, "abab")
    expect(heads).to_be_visible()
    assert result(page)["period"] == 2
    assert "Cannot run" not in status.inner_text()


# ---- Keyboard, errors, requests, accessibility, weight ----------------------------


def test_the_keyboard_drives_the_lab(page):
    box = page.locator(f'{ROOT} [data-ml="text"]')
    box.focus()
    page.keyboard.press("Control+a")
    page.keyboard.type("xyzxyz")
    assert result(page)["ids"] == encode("xyzxyz")
    page.keyboard.press("Tab")
    expect(page.locator(f'{ROOT} [data-ml="random"]')).to_be_focused()
    page.keyboard.press("Enter")
    assert box.input_value() != "xyzxyz"
    assert result(page)["period"] is not None
    choice = page.locator(f'{ROOT} [data-ml="head"]')
    for _ in range(12):  # past the four heads' scrolling heatmaps
        page.keyboard.press("Tab")
        if choice.evaluate("e => e === document.activeElement"):
            break
    expect(choice).to_be_focused()
    before = choice.input_value()
    page.keyboard.press("ArrowUp")
    assert choice.input_value() != before
    n, h = map(int, choice.input_value().split(","))
    expect(page.locator(f'{ROOT} [data-ml-out="qk"] caption')).to_contain_text(
        f"Layer {n}, head {h}"
    )


def test_no_errors_and_no_foreign_requests_while_playing(opened):
    page, problems = opened
    type_sequence(page, "a~")
    type_sequence(page, "attentionattention")
    page.locator(f'{ROOT} [data-ml="random"]').click()
    for value in ("0,0", "0,1", "1,1"):
        page.locator(f'{ROOT} [data-ml="head"]').select_option(value)
    assert problems.as_dict() == {"console": [], "errors": [], "failed": [], "foreign": []}


VIEWS = [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
def test_axe_finds_nothing_in_the_lab(browser, site_url, device: Device, mode: Mode):
    page = open_in_mode(browser, f"{site_url}/{PAGE}", mode, device)
    try:
        _wait_drawn(page)
        page.evaluate(AXE_SCRIPT)
        found = page.evaluate(
            f"() => axe.run(document.querySelector('{ROOT}'), {{resultTypes: ['violations']}})"
        )
    finally:
        page.context.close()
    violations = [(v["id"], v["impact"], len(v["nodes"])) for v in found["violations"]]
    assert violations == []  # none at all, serious, critical or lesser


def test_the_page_is_light_and_quick_to_start(browser, site_url):
    load = first_load(browser, site_url, PAGE)
    model_bytes = len(json.dumps(data_from_file()["model"], separators=(",", ":")))
    page = new_page(browser, viewport={"width": 1280, "height": 1000})
    try:
        page.goto(f"{site_url}/{PAGE}")
        _wait_drawn(page)
        ready = float(page.eval_on_selector(ROOT, "root => root.dataset.mlReadyMs"))
    finally:
        page.close()
    print(
        f"\nexported weights: {model_bytes / KB:.0f} KB of JSON;"
        f" {PAGE} first load: {load.weight / KB:.0f} KB;"
        f" model lab ready {ready:.0f} ms after navigation started"
    )
    assert load.weight < 1000 * KB
    assert model_bytes < 300 * KB
    assert ready > 0  # the lab recorded when it became usable


def data_from_file() -> dict[str, Any]:
    """The widget's JSON, read from the built page itself."""
    html = (SITE / PAGE).read_text(encoding="utf-8")
    start = html.index('data-attn-kind="model-lab"')
    begin = html.index('class="attn-data">', start) + len('class="attn-data">')
    end = html.index("</script>", begin)
    return json.loads(html[begin:end].replace("<\\/", "</"))
