"""Every interaction type answered through the candidate app's widgets in a real Chromium: what
the widgets send is what the server stores and scores; per-item feedback shows and locks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from delivery_service.storage.models import Attempt, Item, ItemState
from tests.browser.test_candidate_app import shot, watch
from tests.conftest import make_settings
from tests.integration.test_item_bank import EVERY_TYPE
from tests.support import FOR_HOMEROOM, HOMEROOM, PASSWORD, Api, add_class, add_user


@pytest.fixture
async def served(
    sqlite_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Served]:
    teacher_id = await add_user(sessions, "teacher", "teacher")
    student_id = await add_user(sessions, "student1")
    await add_class(sessions, HOMEROOM, teachers=[teacher_id], students=[student_id])
    async with running_server(make_settings(sqlite_url, "memory://")) as server:
        teacher = await Api.login(server.url, "teacher")
        await teacher.post("/tests", {**FOR_HOMEROOM, "title": "Every type",
                                      "time_limit_seconds": 900, "items": EVERY_TYPE},
                           expect=201)  # fmt: skip
        feedback = {"feedback": "per_item"}
        await teacher.post("/tests", {**FOR_HOMEROOM, "title": "Feedback",
                                      "time_limit_seconds": 900, "items": EVERY_TYPE[:2],
                                      "policies": feedback}, expect=201)  # fmt: skip
        await teacher.close()
        yield server


async def start(page: Page, served: Served, title: str, total: int) -> None:
    await page.goto(served.url + "/")
    await page.fill("input[name=username]", "student1")
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await page.click(f"#tests button >> text={title}")
    await expect(page.locator("#item-title")).to_have_text(f"Question 1 of {total}")


async def saved_then_next(page: Page, title: str) -> None:
    await expect(page.locator("#saved")).to_have_text("All answers saved")
    await page.click("#next")
    await expect(page.locator("#item-title")).not_to_have_text(title)


async def responses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as s:
        rows = await s.execute(
            select(Item.identifier, ItemState.response).join(Item, Item.id == ItemState.item_id)
        )
        return {identifier: response for identifier, response in rows}


async def test_every_interaction_type_is_answered_with_its_widget(
    context: BrowserContext, served: Served, sessions: async_sessionmaker[AsyncSession]
) -> None:
    page = await context.new_page()
    problems = watch(page)
    await start(page, served, "Every type", 8)
    fieldset = page.locator("#choices")

    await fieldset.locator("input[value=B]").check()  # choice
    await saved_then_next(page, "Question 1 of 8")

    await fieldset.locator("input[type=text]").fill("  roma ")  # text entry
    await saved_then_next(page, "Question 2 of 8")

    await fieldset.locator("input[inputmode=decimal]").fill("3,14")  # numeric
    await saved_then_next(page, "Question 3 of 8")

    await fieldset.locator("textarea").fill("Water is wet because of hydrogen bonds.")
    await expect(fieldset.locator(".count")).to_have_text("39 characters")
    await saved_then_next(page, "Question 4 of 8")

    await expect(page.locator("#choices .inline-prompt")).to_contain_text("Ice is")
    await fieldset.locator("select").select_option("cold")  # inline choice
    await saved_then_next(page, "Question 5 of 8")

    # Order: A B C as delivered; the answer is C B A, by keyboard on the move buttons.
    await fieldset.get_by_role("button", name='Move "Choice C" up').click()
    await fieldset.get_by_role("button", name='Move "Choice C" up').click()
    await fieldset.get_by_role("button", name='Move "Choice A" down').click()
    await expect(fieldset.locator("ol.order li span")).to_have_text(
        ["Choice C", "Choice B", "Choice A"]
    )
    await shot(page, "10-order")
    await saved_then_next(page, "Question 6 of 8")

    await fieldset.get_by_label("x matches 1").check()  # match grid
    await fieldset.get_by_label("y matches 2").check()
    await shot(page, "11-match")
    await saved_then_next(page, "Question 7 of 8")

    await fieldset.get_by_label("gap G1").select_option("dog")  # gap match
    await expect(page.locator("#saved")).to_have_text("All answers saved")
    await shot(page, "12-gap-match")

    # Back to the text entry: what was typed comes back from the server's state.
    await page.locator("#item-map button", has_text="2").click()
    await expect(page.locator("#item-title")).to_have_text("Question 2 of 8")
    await expect(fieldset.locator("input[type=text]")).to_have_value("  roma ")

    assert await responses(sessions) == {
        "c": ["B"], "t": "roma", "n": 3.14, "e": "Water is wet because of hydrogen bonds.",
        "i": "cold", "o": ["C", "B", "A"], "m": [["x", "one"], ["y", "two"]],
        "g": [["dog", "G1"]],
    }  # fmt: skip
    await page.click("#review")
    await page.click("#submit")
    await expect(page.locator("#done-reason")).to_have_text("Your answers were submitted.")
    async with sessions() as s:
        attempt = (await s.scalars(select(Attempt))).one()
    assert (attempt.score, attempt.max_score, attempt.pending_grades) == (9.0, 14.0, 1)
    assert problems == []


async def test_per_item_feedback_is_shown_and_the_item_locked(
    context: BrowserContext, served: Served
) -> None:
    page = await context.new_page()
    problems = watch(page)
    await start(page, served, "Feedback", 2)
    await page.check("#choices input[value=A]")
    await expect(page.locator("#feedback")).to_have_text(
        "Your answer is not correct: 0 of 2 points."
    )
    await expect(page.locator("#choices input[value=B]")).to_be_disabled()
    await expect(page.locator("#choices-legend")).to_contain_text("your answer is final")
    await shot(page, "13-feedback")
    await page.click("#next")
    await expect(page.locator("#item-title")).to_have_text("Question 2 of 2")
    await expect(page.locator("#feedback")).to_be_hidden()
    await page.fill("#choices input[type=text]", "Rome")
    await page.locator("#choices input[type=text]").press("Tab")
    await expect(page.locator("#feedback")).to_have_text("Your answer is correct: 1 of 1 points.")
    # After a reload the item is still locked (the server says so).
    await page.reload()
    await expect(page.locator("#item-title")).to_have_text("Question 2 of 2")
    await expect(page.locator("#choices input[type=text]")).to_be_disabled()
    await expect(page.locator("#choices input[type=text]")).to_have_value("Rome")
    assert problems == []
