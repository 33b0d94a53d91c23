"""The proctor console in a real headless Chromium against a running server."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import running_server
from tests.conftest import make_settings
from tests.support import PASSWORD, Api, Socket, add_user, sample_test


def clock_seconds(text: str) -> int:
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)


async def row(page: Page, username: str) -> object:
    return page.locator("#grid tbody tr", has_text=username)


async def test_the_console_shows_students_live_and_applies_an_extension(
    browser: Browser, sqlite_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for name, role in [("teacher", "teacher"), ("student1", "student"), ("student2", "student")]:
        await add_user(sessions, name, role)
    async with running_server(make_settings(sqlite_url, "memory://")) as served:
        teacher = await Api.login(served.url, "teacher")
        klass = await teacher.post("/classes", {"name": "Beacon 31"}, expect=201)
        for name in ("student1", "student2"):
            await teacher.post(f"/classes/{klass['id']}/students", {"username": name}, expect=201)
        test = await teacher.post("/tests", sample_test(assigned_to=[]), expect=201)
        session = await teacher.post(
            "/sessions",
            {"class_id": klass["id"], "test_id": test["id"], "title": "Live console",
             "scheduled_at": datetime.now(UTC).isoformat()},
            expect=201,
        )  # fmt: skip
        sid = session["id"]

        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        await page.goto(f"{served.url}/console/?session={sid}")
        await page.fill("input[name=username]", "teacher")
        await page.fill("input[name=password]", PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.locator("#session-title")).to_contain_text("Live console")
        await expect(page.locator("#grid tbody tr")).to_have_count(2)
        await expect(await row(page, "student1")).to_contain_text("offline")

        await page.click("#open-waiting")
        await expect(page.locator("#session-state")).to_have_text("waiting")

        students = [await Api.login(served.url, n) for n in ("student1", "student2")]
        base = served.url.replace("http://", "ws://")
        urls = [f"{base}/api/v1/sessions/{sid}/ws?ticket={await s.ticket()}" for s in students]
        async with Socket.open(urls[0]) as one, Socket.open(urls[1]) as two:
            await one.until("state_sync_response")
            await two.until("state_sync_response")
            await expect(await row(page, "student1")).to_contain_text("online")
            await expect(await row(page, "student2")).to_contain_text("online")

            await page.click("#start")
            await expect(page.locator("#session-state")).to_have_text("in_progress")
            first = (await one.until("session_started"))["data"]
            await two.until("session_started")

            await one.request(
                "answer_submitted", {"item_id": "q1", "response": "B", "client_seq": 1}
            )
            await one.request("tab_violation", {"duration_ms": 6000})
            await one.request(
                "text_highlighted",
                {"text": "Berlin Wall", "item_id": "q4", "position_start": 28, "position_end": 39},
            )
            cells = (await row(page, "student1")).locator("td")  # type: ignore[attr-defined]
            await expect(cells.nth(4)).to_have_text("1/4")
            await expect(cells.nth(6)).to_have_text("1")
            await expect(cells.nth(7)).to_have_text("1")
            await expect(page.locator("#feed")).to_contain_text("Berlin Wall")
            # The tab switch is one incident line, with a link to the attempt's report.
            await expect(page.locator("#feed li.serious, #feed li")).to_contain_text(
                ["student1: tab violation, away 6 s"]
            )

            await (await row(page, "student1")).click()  # type: ignore[attr-defined]
            await expect(page.locator("#detail-title")).to_have_text("student1")
            await expect(page.locator("#timeline")).to_contain_text("tab_violation")
            await page.fill("#extend input[name=seconds]", "300")
            await page.fill("#extend input[name=reason]", "fire alarm")
            await page.click("#extend button")
            extended = await one.until("timer")
            moved = datetime.fromisoformat(
                extended["data"]["timer"]["deadline"]
            ) - datetime.fromisoformat(first["deadline"])
            assert moved.total_seconds() == 300
            await expect(page.locator("#timeline")).to_contain_text("time_extended (fire alarm)")
            mine = cells.nth(5)
            theirs = (await row(page, "student2")).locator("td").nth(5)  # type: ignore[attr-defined]
            await page.wait_for_timeout(1200)  # one tick of the countdown
            gap = clock_seconds(await mine.inner_text()) - clock_seconds(await theirs.inner_text())
            assert 295 <= gap <= 301, gap
        await expect(await row(page, "student1")).to_contain_text("offline")

        # The integrity report of student1's attempt, as staff read it for an appeal.
        await page.click("#report-link")
        await expect(page.locator("#verdict")).to_contain_text("Ledger verified")
        await expect(page.locator("#events")).to_contain_text("time extended")
        await expect(page.locator("#events")).to_contain_text("reason: fire alarm")
        await expect(page.locator("#incidents")).to_contain_text("tab violation ×1")
        await page.screenshot(path=".artifacts/screenshots/20-integrity-report.png", full_page=True)
        assert problems == []
        for api in (teacher, *students):
            await api.close()
