"""Shared by the layout and quiz browser tests: problems logged, axe on one widget."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Page

from tests.site.modes import assert_settled

SEVERE = ("serious", "critical")


def record_problems(page: Page) -> list[str]:
    """A list that fills with every console error or warning and page error."""
    problems: list[str] = []
    logged = ("error", "warning")
    page.on(
        "console",
        lambda m: problems.append(f"{m.type}: {m.text}") if m.type in logged else None,
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    return problems


def severe_axe_findings(page: Page, selector: str) -> list[str]:
    """axe-core's serious and critical findings inside the elements ``selector`` matches."""
    assert_settled(page)
    assert page.locator(selector).count() > 0, f"nothing matches {selector}"
    page.evaluate(AXE_SCRIPT)
    result: dict[str, Any] = page.evaluate(
        "(sel) => axe.run({include: [...document.querySelectorAll(sel)].map((e) => [e])},"
        " {resultTypes: ['violations']})",
        selector,
    )
    return [
        f"{v['id']} [{v['impact']}]: {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in SEVERE
    ]
