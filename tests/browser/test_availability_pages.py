"""A test's availability in the browser: the candidate app shows each test's window and asks
for its access password, showing the server's refusals; the console's availability form sets
it all and shows the server's errors; the console says when an early waiting room may open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from tests.browser.test_candidate_app import shot, watch
from tests.conftest import make_settings
from tests.support import HOMEROOM, HOMEROOM_ID, PASSWORD, Api, add_class, add_user, sample_test


@pytest.fixture
async def served(
    sqlite_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Served]:
    teacher_id = await add_user(sessions, "teacher", "teacher")
    student_id = await add_user(sessions, "student1")
    await add_class(sessions, HOMEROOM, teachers=[teacher_id], students=[student_id])
    async with running_server(make_settings(sqlite_url, "memory://")) as server:
        yield server


def hence(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def sign_in(page: Page, url: str, username: str) -> None:
    await page.goto(url)
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")


async def test_the_candidate_app_shows_each_window_and_asks_for_the_password(
    context: BrowserContext, served: Served
) -> None:
    teacher = await Api.login(served.url, "teacher")
    try:
        for spec in (
            sample_test(title="Open paper", closes_at=hence(timedelta(hours=2))),
            sample_test(title="Later paper", opens_at=hence(timedelta(days=1))),
            sample_test(title="Guarded paper", password="plum tree 42"),
            sample_test(title="Exam room paper", allowed_networks=["10.99.0.0/16"]),
            sample_test(title="Staff paper", assigned_to=[]),
        ):
            await teacher.post("/tests", spec, expect=201)
    finally:
        await teacher.close()
    page = await context.new_page()
    problems = watch(page)
    await sign_in(page, served.url + "/", "student1")

    entries = page.locator("#tests li")
    await expect(entries).to_have_count(4)  # never the staff-only paper
    later = entries.filter(has_text="Later paper")
    await expect(later).to_contain_text("Opens at")
    await expect(later.locator("button")).to_be_disabled()
    await expect(entries.filter(has_text="Open paper")).to_contain_text("Closes at")
    await shot(page, "20-tests-with-windows")

    # Outside the exam room's network: the server's refusal, in words.
    room = entries.filter(has_text="Exam room paper")
    await room.locator("button").click()
    await expect(room.locator("[role=alert]")).to_have_text(
        "This test can only be taken from the exam room's network."
    )

    guarded = entries.filter(has_text="Guarded paper")
    password = guarded.get_by_label("Access password")
    await password.fill("pear tree 41")
    await password.press("Enter")
    await expect(guarded.locator("[role=alert]")).to_have_text(
        "That is not the access password for this test."
    )
    await expect(password).to_be_focused()
    await shot(page, "21-wrong-access-password")
    await password.fill("plum tree 42")
    await guarded.locator("button").click()
    await expect(page.locator("#item-title")).to_have_text("Question 1 of 4")
    assert problems == []


async def test_the_console_sets_a_tests_availability_and_shows_the_servers_errors(
    context: BrowserContext, served: Served
) -> None:
    teacher = await Api.login(served.url, "teacher")
    try:
        test = await teacher.post("/tests", sample_test(title="Unassigned", assigned_to=[]), 201)
    finally:
        await teacher.close()
    page = await context.new_page()
    problems = watch(page)
    await sign_in(page, f"{served.url}/console/tests.html?test={test['id']}", "teacher")
    await expect(page.locator("#facts")).to_contain_text("staff only")

    await page.get_by_label(HOMEROOM).check()
    await page.get_by_label("Closes at").fill("2031-01-05T10:30")
    await page.get_by_label("Set a new one").check()
    await page.locator("#availability input[name=password]").fill("plum tree 42")
    await page.get_by_label("One CIDR network per line").fill("10.99.0.0/16\nthe exam room")
    await page.get_by_role("button", name="Save availability").click()
    said = page.locator("#said")
    await expect(said).to_contain_text("validation_error")
    await expect(said).to_contain_text("not an IPv4 or IPv6 network")
    await shot(page, "22-availability-refused")

    await page.get_by_label("One CIDR network per line").fill("10.99.0.0/16\n2001:db8::/48")
    await page.get_by_role("button", name="Save availability").click()
    await expect(said).to_have_text("Saved.")
    await expect(page.locator("#facts")).to_contain_text("access password set")
    await expect(page.locator("#password-state")).to_contain_text("must give")
    await shot(page, "23-availability-saved")

    admin_view = await Api.login(served.url, "teacher")
    try:
        saved = await admin_view.get(f"/tests/{test['id']}")
    finally:
        await admin_view.close()
    assert saved["assigned_to"] == [str(HOMEROOM_ID)]
    assert saved["password_required"] is True
    assert saved["allowed_networks"] == ["10.99.0.0/16", "2001:db8::/48"]
    closes = datetime.fromisoformat(saved["closes_at"])
    assert closes.astimezone().replace(tzinfo=None) == datetime(2031, 1, 5, 10, 30)  # local time

    # Removing the password is one choice away; the others stay as they are.
    await page.get_by_label("Remove it").check()
    await page.get_by_role("button", name="Save availability").click()
    await expect(said).to_have_text("Saved.")
    await expect(page.locator("#password-state")).to_have_text("This test has no access password.")
    assert problems == []


async def test_the_console_tells_when_an_early_waiting_room_may_open(
    context: BrowserContext, served: Served
) -> None:
    teacher = await Api.login(served.url, "teacher")
    try:
        paper = await teacher.post("/tests", sample_test(assigned_to=[]), expect=201)
        scheduled = datetime.now(UTC) + timedelta(hours=3)
        session = await teacher.post(
            "/sessions",
            {"class_id": str(HOMEROOM_ID), "test_id": paper["id"], "title": "Evening sitting",
             "scheduled_at": scheduled.isoformat()},
            expect=201,
        )  # fmt: skip
    finally:
        await teacher.close()
    page = await context.new_page()
    problems = watch(page)
    await sign_in(page, f"{served.url}/console/?session={session['id']}", "teacher")
    await expect(page.locator("#session-state")).to_have_text("scheduled")
    await page.click("#open-waiting")
    error = page.locator("#action-error")
    await expect(error).to_contain_text("session_not_open_yet")
    opens = (scheduled - timedelta(minutes=30)).astimezone()  # the browser's zone is ours
    await expect(error).to_contain_text(f"can be opened from {opens:%b} {opens.day}, {opens:%Y}")
    await expect(error).to_contain_text(f"{int(opens.strftime('%I'))}:{opens:%M}")  # en-US clock
    await expect(page.locator("#session-state")).to_have_text("scheduled")
    await shot(page, "24-waiting-room-not-yet")
    assert problems == []
