"""The in-page engine (attention-engine.js) computes what the package computes.

Every widget script does its arithmetic with window.AttentionEngine; these
tests run the engine's functions in the browser, on a built page that loads
it, and hold their results to the package's, computed in float64. Both sides
work in double precision but may add in another order, so the comparison
allows ``TOL`` (absolute and relative), far below the 1e-4 the book prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from playwright.sync_api import Browser, Page

from attention import causal_mask, masked_softmax, simple_self_attention, toy_inputs
from tests.site.conftest import SITE, new_page
from tests.site.widget_checks import record_problems

#: Absolute and relative tolerance between the page's float64 and torch's.
TOL = 1e-12
#: Pages with widgets: the engine loads before any widget script.
PAGES = ("03-self-attention-without-weights.html", "playground.html")


@pytest.fixture(scope="module")
def page(browser: Browser, site_url: str) -> Iterator[Page]:
    page = new_page(browser)
    problems = record_problems(page)
    page.goto(f"{site_url}/{PAGES[0]}", wait_until="load")
    page.wait_for_function("() => window.AttentionEngine !== undefined")
    try:
        yield page
    finally:
        page.close()
    assert problems == []


def _close(got: Any, expected: torch.Tensor) -> None:
    actual = torch.tensor(got, dtype=torch.float64)
    torch.testing.assert_close(actual, expected.double(), atol=TOL, rtol=TOL, equal_nan=True)


@pytest.mark.parametrize("name", PAGES)
def test_pages_load_the_engine_before_the_widget_scripts(name: str):
    html = (SITE / name).read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]*src="_static/(attention-[a-z-]+)\.js', html)
    assert scripts[0] == "attention-engine", scripts
    assert scripts.count("attention-engine") == 1
    assert len(scripts) >= 2  # and the widget scripts after it


def test_softmax_with_the_packages_guard_for_a_row_masked_everywhere(page: Page):
    torch.manual_seed(0)
    scores = torch.randn(4, 5, dtype=torch.float64) * 3
    blocked = causal_mask(5)[:4].clone()
    blocked[2] = True  # a row masked everywhere
    expected = masked_softmax(scores, blocked)
    got = page.evaluate(
        """([scores, blocked]) => scores.map((row, i) =>
             AttentionEngine.softmax(row.map((s, j) => (blocked[i][j] ? -Infinity : s))))""",
        [scores.tolist(), blocked.tolist()],
    )
    _close(got, expected)
    assert got[2] == [0.0] * 5  # exact: the guard writes zeros, as the package's masked_fill


def test_the_raw_softmax_is_torchs_nan_for_a_row_masked_everywhere(page: Page):
    scores = torch.tensor([[1.0, -2.0, 0.5], [-torch.inf, -torch.inf, -torch.inf]]).double()
    got = page.evaluate(
        """(rows) => rows.map((row) => AttentionEngine
             .softmaxRaw(row.map((s) => (s === null ? -Infinity : s))).map(String))""",
        [[1.0, -2.0, 0.5], [None, None, None]],
    )
    # None stands for -inf on the way in; the engine gives NaN (0 / 0) for the masked row.
    assert got[1] == ["NaN"] * 3
    _close([[float(v) for v in got[0]]], torch.softmax(scores[:1], dim=-1))
    assert torch.softmax(scores, dim=-1)[1].isnan().all()


def test_attention_on_the_toy_inputs_is_the_packages(page: Page):
    x = toy_inputs().double()
    context, weights = simple_self_attention(x, return_weights=True)
    got = page.evaluate(
        "(x) => AttentionEngine.attention({ queries: x, keys: x, values: x })", x.tolist()
    )
    _close(got["scores"], x @ x.T)
    _close(got["weights"], weights)
    _close(got["context"], context)


def test_scaled_causal_attention_is_the_packages(page: Page):
    torch.manual_seed(1)
    x = toy_inputs().double()
    w_q, w_k, w_v = (torch.randn(3, 2, dtype=torch.float64) for _ in range(3))
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    scores = q @ k.T / k.shape[-1] ** 0.5
    weights = masked_softmax(scores, causal_mask(6))
    got = page.evaluate(
        """([q, k, v]) => AttentionEngine.attention(
             { queries: q, keys: k, values: v, scale: true, causal: true })""",
        [q.tolist(), k.tolist(), v.tolist()],
    )
    _close(got["weights"], weights)
    _close(got["context"], weights @ v)
    mask = page.evaluate("() => AttentionEngine.causalMask(6)")
    assert mask == causal_mask(6).tolist()


def test_dropout_rescales_as_torch(page: Page):
    p = 0.5
    weights = torch.softmax(torch.randn(6, 6, dtype=torch.float64), dim=-1)
    torch.manual_seed(3)
    dropped = F.dropout(weights, p=p, training=True)
    torch.manual_seed(3)
    keep = F.dropout(torch.ones_like(weights), p=p, training=True) != 0
    got = page.evaluate(
        "([w, keep, p]) => AttentionEngine.dropout(w, keep, p)",
        [weights.tolist(), keep.tolist(), p],
    )
    _close(got, dropped)
