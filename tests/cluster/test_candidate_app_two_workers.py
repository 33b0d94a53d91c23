"""The candidate app in headless Chromium against two real workers (one PostgreSQL, one Redis):
the exam reopened on the other worker continues exactly where it was, and the first tab learns
it was superseded although its socket lives on another process."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from delivery_service.storage.models import ResponseEvent
from tests.browser.conftest import browser  # noqa: F401 - the fixture, shared with tests/browser
from tests.cluster.conftest import Cluster
from tests.support import PASSWORD, Api, sample_test

SHOTS = Path(".artifacts") / "screenshots"


async def open_exam(page: Page, base_url: str) -> None:
    await page.goto(base_url + "/")
    await page.fill("input[name=username]", "student1")
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await page.click("#tests button >> text=Chemistry")


def seconds(clock: str) -> int:
    minutes, secs = clock.split(":")
    return int(minutes) * 60 + int(secs)


async def test_the_exam_reopened_on_another_worker_continues_exactly(
    cluster: Cluster,
    browser: Browser,  # noqa: F811 - the imported fixture
) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    await teacher.post("/tests", sample_test(title="Chemistry"), expect=201)
    problems: list[str] = []

    first_context = await browser.new_context(viewport={"width": 1000, "height": 760})
    first = await first_context.new_page()
    first.on("pageerror", lambda error: problems.append(str(error)))
    await open_exam(first, a.base_url)
    await expect(first.locator("#item-title")).to_have_text("Question 1 of 4")
    await first.check("#choices input[value=B]")
    await first.click("text=Flag for review")
    await first.click("text=Next")
    await expect(first.locator("#item-title")).to_have_text("Question 2 of 4")
    await expect(first.locator("#saved")).to_have_text("All answers saved")

    # Another computer (another origin, so nothing shared in the browser) on the other worker.
    second_context = await browser.new_context(viewport={"width": 1000, "height": 760})
    second = await second_context.new_page()
    second.on("pageerror", lambda error: problems.append(str(error)))
    await open_exam(second, b.base_url)
    await expect(second.locator("#item-title")).to_have_text("Question 2 of 4")
    await expect(first.locator("#link")).to_contain_text("opened in another tab or window")
    await first.screenshot(path=str(SHOTS / "11-superseded-across-workers.png"))

    for page in (first, second):
        await expect(page.locator("#timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
    clocks = [seconds(await p.locator("#timer").inner_text()) for p in (first, second)]
    assert abs(clocks[0] - clocks[1]) <= 2, clocks
    await second.click("#item-map button >> text=1")
    await expect(second.locator("#item-title")).to_have_text("Question 1 of 4")
    await expect(second.locator("#choices input[value=B]")).to_be_checked()
    await expect(second.locator("#item-map button >> text=1")).to_have_attribute(
        "aria-label", "Question 1, answered, flagged"
    )
    await second.check("#choices input[value=D]")
    await expect(second.locator("#saved")).to_have_text("All answers saved")

    async with cluster.sessions() as s:
        rows = await s.scalars(select(ResponseEvent).order_by(ResponseEvent.client_seq))
        answers = [(r.client_seq, r.response) for r in rows]
    # The second computer numbered its answer above the first one's: nothing overwritten twice.
    assert answers == [(1, ["B"]), (2, ["D"])]
    await first_context.close()
    await second_context.close()
    await teacher.close()
    assert problems == []
