"""Predict-then-reveal questions in a real browser.

Every question on the book's pages: the answer the page computes from the
question's data equals the one the package computed (carried in the same
data); the right answer is accepted, a wrong one is refused with feedback;
Reveal shows the answer with its working; all of it by keyboard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page

from attention.quiz import shape_question
from tests.site.conftest import new_page
from tests.site.modes import DESKTOP, PHONE, Device, Mode, open_in_mode
from tests.site.widget_checks import record_problems, severe_axe_findings

ROOT = '.attn-widget[data-attn-kind="quiz"]'
QUESTIONS = {
    "03-self-attention-without-weights.html": 1,
    "05-causal-attention.html": 1,
    "08-multi-head-attention.html": 2,
}


@pytest.fixture(params=list(QUESTIONS))
def opened(request: pytest.FixtureRequest, browser: Browser, site_url: str) -> Iterator[Page]:
    page = new_page(browser, viewport={"width": 1280, "height": 1000})
    problems = record_problems(page)
    page.goto(f"{site_url}/{request.param}", wait_until="load")
    page.wait_for_function(
        f"n => document.querySelectorAll('{ROOT}[data-quiz-ready]').length === n",
        arg=QUESTIONS[request.param],
    )
    try:
        yield page
    finally:
        page.close()
    assert problems == []


def _data(quiz: Locator) -> dict[str, Any]:
    text = quiz.locator("script.attn-data").text_content()
    assert text
    return json.loads(text)


def _right_and_wrong(data: dict[str, Any]) -> tuple[str, str]:
    """The package's answer as the reader would enter it, and a wrong one."""
    answer = data["answer"]
    if data["type"] == "attend":
        return str(answer), str((answer + 1) % len(data["tokens"]))
    if data["type"] == "shape":
        return ", ".join(map(str, answer)), ", ".join(map(str, reversed(answer)))
    return str(answer), str(answer + 1)


def _enter(quiz: Locator, data: dict[str, Any], value: str) -> None:
    if data["type"] == "attend":
        quiz.locator(f'input[type="radio"][value="{value}"]').check()
    else:
        quiz.locator('[data-quiz="input"]').fill(value)
    quiz.locator('[data-quiz="check"]').click()


def test_the_page_answers_as_the_package_and_checks_the_reader(opened: Page):
    quizzes = opened.locator(ROOT)
    for i in range(quizzes.count()):
        quiz = quizzes.nth(i)
        data = _data(quiz)
        reveal = quiz.locator('[data-quiz="reveal"]')
        assert json.loads(reveal.get_attribute("data-answer") or "null") == data["answer"]
        right, wrong = _right_and_wrong(data)
        feedback = quiz.locator('[data-quiz="feedback"]')
        _enter(quiz, data, wrong)
        assert quiz.get_attribute("data-quiz-state") == "wrong"
        assert (feedback.text_content() or "").startswith("Not quite")
        _enter(quiz, data, right)
        assert quiz.get_attribute("data-quiz-state") == "right"
        assert (feedback.text_content() or "").startswith("Right")
        assert reveal.is_hidden()
        quiz.locator('[data-quiz="reveal-button"]').click()
        assert reveal.is_visible()
        shown = reveal.locator("strong").text_content()
        expected = data["tokens"][data["answer"]] if data["type"] == "attend" else right
        assert shown == expected


def test_a_typed_answer_that_is_not_a_shape_gets_help(opened: Page):
    quizzes = opened.locator(ROOT)
    every = [quizzes.nth(i) for i in range(quizzes.count())]
    typed = [quiz for quiz in every if _data(quiz)["type"] != "attend"]
    for quiz in typed:
        _enter(quiz, _data(quiz), "six")
        assert quiz.get_attribute("data-quiz-state") == "wrong"
        assert "Type" in (quiz.locator('[data-quiz="feedback"]').text_content() or "")


def test_answering_by_keyboard(opened: Page):
    quiz = opened.locator(ROOT).first
    data = _data(quiz)
    right, _ = _right_and_wrong(data)
    if data["type"] == "attend":
        quiz.locator('input[type="radio"]').first.focus()
        opened.keyboard.press("Space")  # picks the first token
        for _ in range(int(right)):
            opened.keyboard.press("ArrowRight")
        opened.keyboard.press("Enter")  # submits the form, as Check does
    else:
        quiz.locator('[data-quiz="input"]').focus()
        opened.keyboard.type(right)
        opened.keyboard.press("Enter")
    assert quiz.get_attribute("data-quiz-state") == "right"
    quiz.locator('[data-quiz="check"]').focus()
    opened.keyboard.press("Tab")
    opened.keyboard.press("Enter")  # Reveal
    assert quiz.locator('[data-quiz="reveal"]').is_visible()


VIEWS = [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light")]


@pytest.mark.parametrize(("device", "mode"), VIEWS, ids=[f"{d.name}-{m}" for d, m in VIEWS])
@pytest.mark.parametrize("path", list(QUESTIONS))
def test_no_serious_axe_findings(
    browser: Browser, site_url: str, path: str, device: Device, mode: Mode
) -> None:
    page = open_in_mode(browser, f"{site_url}/{path}", mode, device)
    try:
        page.wait_for_selector(f"{ROOT}[data-quiz-ready]")
        quizzes = page.locator(ROOT)
        for i in range(quizzes.count()):
            quiz = quizzes.nth(i)
            data = _data(quiz)
            _enter(quiz, data, _right_and_wrong(data)[1])  # feedback shown
            quiz.locator('[data-quiz="reveal-button"]').click()  # answer shown
        assert severe_axe_findings(page, ROOT) == []
    finally:
        page.context.close()


def test_a_question_draws_itself_outside_the_book(browser: Browser):
    page = new_page(browser)
    problems = record_problems(page)
    try:
        widget = shape_question((2, 6, 20), [("view", (2, 6, 4, 5))], prompt="Shape?")
        page.set_content(f"<!doctype html><html lang='en'><body>{widget.to_html()}</body></html>")
        quiz = page.locator(f"{ROOT}[data-quiz-ready]")
        quiz.wait_for()
        assert page.locator(".attn-fallback").count() == 0
        _enter(quiz, _data(quiz), "2, 6, 4, 5")
        assert quiz.get_attribute("data-quiz-state") == "right"
    finally:
        page.close()
    assert problems == []
