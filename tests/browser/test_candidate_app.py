"""The candidate app in a real headless Chromium against a running server.

Screenshots of the main screens are written to $EXAMSERVER_ARTIFACTS (default
`.artifacts/screenshots`, ignored by git) so a reviewer can look at them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from delivery_service.storage.models import Attempt, LedgerEvent, ResponseEvent
from integrity.events import CANDIDATE_KINDS
from tests.conftest import make_settings
from tests.support import HOMEROOM, PASSWORD, Api, add_class, add_user, sample_test

SHOTS = Path(os.environ.get("EXAMSERVER_ARTIFACTS", ".artifacts")) / "screenshots"


@pytest.fixture
async def served(
    sqlite_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Served]:
    teacher_id = await add_user(sessions, "teacher", "teacher")
    student_id = await add_user(sessions, "student1")
    await add_class(sessions, HOMEROOM, teachers=[teacher_id], students=[student_id])
    async with running_server(make_settings(sqlite_url, "memory://")) as server:
        teacher = await Api.login(server.url, "teacher")
        await teacher.post("/tests", sample_test(title="Chemistry"), expect=201)
        await teacher.close()
        yield server


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    return problems


async def sign_in_and_start(page: Page, served: Served, title: str = "Chemistry") -> None:
    await page.goto(served.url + "/")
    await page.fill("input[name=username]", "student1")
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await page.click(f"#tests button >> text={title}")
    await expect(page.locator("#item-title")).to_have_text("Question 1 of 4")


async def history(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as s:
        rows = await s.scalars(select(ResponseEvent).order_by(ResponseEvent.client_seq))
        return [(r.client_seq, r.response, r.applied) for r in rows]


async def test_a_full_exam_taken_by_keyboard(
    context: BrowserContext, served: Served, sessions: async_sessionmaker[AsyncSession]
) -> None:
    page = await context.new_page()
    problems = watch(page)
    await page.goto(served.url + "/")
    await shot(page, "01-sign-in")
    await page.keyboard.type("student1")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.locator("#tests button")).to_have_count(1)
    await shot(page, "02-home")
    await page.locator("#tests button").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#item-title")).to_have_text("Question 1 of 4")

    for answer in ("B", "B", None, "A"):  # q3 is left for the review screen to report
        if answer is not None:
            await page.locator(f"#choices input[value={answer}]").focus()
            await page.keyboard.press("Space")
            await expect(page.locator("#saved")).to_have_text("All answers saved")
        title = await page.inner_text("#item-title")
        if title == "Question 2 of 4":
            await page.locator("#flag").focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#flag")).to_have_attribute("aria-pressed", "true")
            await shot(page, "03-question")
        if not title.endswith("4 of 4"):
            await page.locator("#next").focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#item-title")).not_to_have_text(title)

    await page.locator("#review").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#review-summary")).to_have_text(
        "3 of 4 answered, 1 unanswered, 1 flagged."
    )
    await shot(page, "04-review")
    await page.keyboard.press("Enter")  # the submit button has focus; the dialog is accepted
    await expect(page.locator("#done-reason")).to_have_text("Your answers were submitted.")
    await shot(page, "05-done")
    assert [(seq, response) for seq, response, _ in await history(sessions)] == [
        (1, ["B"]),
        (2, ["B"]),
        (3, ["A"]),
    ]
    assert problems == []


class Network:
    """Cuts the page's network: HTTP through the context's offline mode, and the WebSocket, which
    Chromium's offline emulation leaves open, through a proxying route that can drop it."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.down = False
        self.live: list[WebSocketRoute] = []

    async def install(self, page: Page) -> None:
        async def route(ws: WebSocketRoute) -> None:
            if self.down:
                await ws.close(code=1001, reason="network down")
                return
            ws.connect_to_server()
            self.live.append(ws)

        await page.route_web_socket("**/ws*", route)

    async def cut(self) -> None:
        self.down = True
        await self.context.set_offline(True)
        for ws in self.live:
            await ws.close(code=1001, reason="network down")
        self.live.clear()

    async def restore(self) -> None:
        self.down = False
        await self.context.set_offline(False)


async def test_answers_typed_offline_reach_the_database_exactly_once(
    context: BrowserContext, served: Served, sessions: async_sessionmaker[AsyncSession]
) -> None:
    page = await context.new_page()
    problems = watch(page)
    network = Network(context)
    await network.install(page)
    await sign_in_and_start(page, served)
    await page.check("#choices input[value=B]")
    await expect(page.locator("#saved")).to_have_text("All answers saved")

    await network.cut()
    await expect(page.locator("#link")).to_contain_text("Offline", timeout=20_000)
    await page.check("#choices input[value=C]")  # changed while offline
    await expect(page.locator("#saved")).to_contain_text("1 answer(s) waiting to be sent")
    await shot(page, "06-offline")

    await network.restore()
    await expect(page.locator("#link")).to_have_text("Connected", timeout=30_000)
    await expect(page.locator("#saved")).to_have_text("All answers saved", timeout=20_000)
    rows = await history(sessions)
    assert [seq for seq, _, _ in rows] == sorted({seq for seq, _, _ in rows}), "no seq twice"
    async with sessions() as s:
        attempt = (await s.scalars(select(Attempt))).one()
    assert [(seq, response) for seq, response, _ in rows] == [(1, ["B"]), (2, ["C"])]
    assert attempt.state == "in_progress"
    assert problems == []


async def test_a_reload_mid_exam_restores_everything(
    context: BrowserContext, served: Served
) -> None:
    page = await context.new_page()
    watch(page)
    await sign_in_and_start(page, served)
    await page.check("#choices input[value=B]")
    await page.click("#next")
    await expect(page.locator("#item-title")).to_have_text("Question 2 of 4")
    await page.click("#flag")
    await expect(page.locator("#flag")).to_have_attribute("aria-pressed", "true")
    await page.click("#next")
    await expect(page.locator("#item-title")).to_have_text("Question 3 of 4")
    await expect(page.locator("#saved")).to_have_text("All answers saved")
    await expect(page.locator("#timer")).not_to_have_text("")
    before = await page.inner_text("#timer")

    await page.reload()
    await expect(page.locator("#item-title")).to_have_text("Question 3 of 4")
    await expect(page.locator("#item-map button >> nth=0")).to_have_class("answered")
    await expect(page.locator("#item-map button >> nth=1")).to_have_class("flagged")
    await expect(page.locator("#timer")).not_to_have_text("")
    after = await page.inner_text("#timer")
    to_seconds = [int(m) * 60 + int(s) for m, s in (t.split(":") for t in (before, after))]
    assert 0 <= to_seconds[0] - to_seconds[1] <= 5, (before, after)


async def test_a_second_tab_takes_over_and_the_first_says_so(
    context: BrowserContext, served: Served
) -> None:
    first = await context.new_page()
    watch(first)
    await sign_in_and_start(first, served)
    second = await context.new_page()
    watch(second)
    await second.goto(first.url)
    await expect(second.locator("#item-title")).to_have_text("Question 1 of 4")
    await expect(first.locator("#link")).to_contain_text("opened in another tab")
    await shot(first, "07-superseded")
    await second.check("#choices input[value=A]")
    await expect(second.locator("#saved")).to_have_text("All answers saved")


async def test_the_waiting_room_opens_the_exam_by_itself(
    context: BrowserContext, served: Served, sessions: async_sessionmaker[AsyncSession]
) -> None:
    teacher = await Api.login(served.url, "teacher")
    klass = await teacher.post("/classes", {"name": "Beacon 31"}, expect=201)
    await teacher.post(f"/classes/{klass['id']}/students", {"username": "student1"}, expect=201)
    test = next(t for t in await teacher.get("/tests") if t["title"] == "Chemistry")
    sid = (
        await teacher.post(
            "/sessions",
            {
                "class_id": klass["id"],
                "test_id": test["id"],
                "title": "Monday mock",
                "scheduled_at": "2026-11-23T20:00:00Z",
            },
            expect=201,
        )  # fmt: skip
    )["id"]
    await teacher.post(f"/sessions/{sid}/start-waiting")

    page = await context.new_page()
    problems = watch(page)
    await page.goto(served.url + "/")
    await page.fill("input[name=username]", "student1")
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.locator("#tests button")).to_have_count(0)  # reserved for the session
    await page.click("#sessions button >> text=Monday mock")
    await expect(page.locator("#waiting-text")).to_contain_text("You are in the waiting room")
    await shot(page, "08-waiting-room")

    await teacher.post(f"/sessions/{sid}/start")
    await expect(page.locator("#item-title")).to_have_text("Question 1 of 4", timeout=10_000)
    await page.check("#choices input[value=B]")
    await expect(page.locator("#saved")).to_have_text("All answers saved")
    await teacher.post(f"/sessions/{sid}/notices", {"message": "Ten minutes left"}, expect=201)
    await expect(page.locator("#warning")).to_contain_text("Ten minutes left")
    grid = await teacher.get(f"/sessions/{sid}/participants")
    assert (grid[0]["connected"], grid[0]["answered"]) == (True, 1)

    # Integrity sensors: leaving the tab, copying, highlighting text of the question.
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await page.wait_for_timeout(300)
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await page.keyboard.press("Control+c")
    await page.locator("#prompt").select_text()
    for _ in range(50):
        async with sessions() as s:
            stored = list(
                await s.scalars(
                    select(LedgerEvent)
                    .where(LedgerEvent.type.in_(CANDIDATE_KINDS))
                    .order_by(LedgerEvent.id)
                )
            )
        if any(e.type == "text_highlighted" for e in stored):
            break
        await page.wait_for_timeout(100)
    kinds = [e.type for e in stored]
    # Exactly these, once each: a listener registered twice would double them.
    assert kinds == [
        "tab_hidden",
        "tab_visible",
        "tab_violation",
        "keyboard_shortcut",
        "copy",
        "text_highlighted",
    ]
    violation = next(e for e in stored if e.type == "tab_violation")
    assert violation.payload["duration_ms"] >= 250
    highlight = next(e for e in stored if e.type == "text_highlighted")
    assert (highlight.payload["text"], highlight.payload["item_id"]) == ("Question 1?", "q1")
    assert all(e.client_event_id for e in stored)
    grid = await teacher.get(f"/sessions/{sid}/participants")
    assert (grid[0]["violations"], grid[0]["highlights"]) == (1, 1)
    await teacher.close()
    assert problems == []


async def test_time_running_out_ends_the_exam_on_screen(
    context: BrowserContext, served: Served
) -> None:
    teacher = await Api.login(served.url, "teacher")
    await teacher.post("/tests", sample_test(title="Quick", time_limit_seconds=10), expect=201)
    await teacher.close()
    page = await context.new_page()
    watch(page)
    await page.goto(served.url + "/")
    await page.fill("input[name=username]", "student1")
    await page.fill("input[name=password]", PASSWORD)
    await page.keyboard.press("Enter")
    await page.click("#tests button >> text=Quick")
    await page.check("#choices input[value=B]")
    await expect(page.locator("#warning")).to_have_text("1 minute left.")
    await expect(page.locator("#done-reason")).to_have_text(
        "Time is up: the server closed the exam with your saved answers.", timeout=20_000
    )
    await shot(page, "09-time-up")


async def test_a_wrong_computer_clock_does_not_change_the_time_shown(
    context: BrowserContext, served: Served
) -> None:
    page = await context.new_page()
    watch(page)
    # The candidate's computer is two hours ahead (and could be moved at any time).
    await page.add_init_script("{ const real = Date.now; Date.now = () => real() + 7_200_000; }")
    await sign_in_and_start(page, served)
    await expect(page.locator("#timer")).not_to_have_text("")
    minutes, seconds = (int(x) for x in (await page.inner_text("#timer")).split(":"))
    assert 9 * 60 + 50 <= minutes * 60 + seconds <= 10 * 60


@pytest.mark.parametrize(
    ("name", "viewport", "scale"),
    [("zoom-200", {"width": 640, "height": 400}, 2), ("phone", {"width": 375, "height": 667}, 2)],
)
async def test_the_exam_fits_at_200_percent_zoom_and_on_a_phone(
    browser: Browser, served: Served, name: str, viewport: dict[str, int], scale: int
) -> None:
    """200% zoom of a 1280-pixel window is a 640-CSS-pixel viewport at twice the density."""
    ctx = await browser.new_context(viewport=viewport, device_scale_factor=scale)
    try:
        page = await ctx.new_page()
        watch(page)
        await sign_in_and_start(page, served)
        await expect(page.locator("#timer")).not_to_have_text("")
        overflow = await page.evaluate(
            "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
        assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px"
        for control in ("#next", "#flag", "#review", "#choices input >> nth=0"):
            box = await page.locator(control).bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= viewport["width"], control
        await shot(page, f"10-{name}")
    finally:
        await ctx.close()


async def test_a_locked_down_self_paced_exam_prompts_blocks_reports_and_flags(
    context: BrowserContext, served: Served, sessions: async_sessionmaker[AsyncSession]
) -> None:
    teacher = await Api.login(served.url, "teacher")
    lockdown = {"require_fullscreen": True, "forbid_copy_paste": True,
                "allowed_tab_switches": 0, "on_exceed": "flag"}  # fmt: skip
    await teacher.post("/tests", sample_test(title="Locked", lockdown=lockdown), expect=201)
    page = await context.new_page()
    problems = watch(page)
    await sign_in_and_start(page, served, "Locked")
    await expect(page.locator("#fullscreen-prompt")).to_be_visible()
    await shot(page, "09-fullscreen-required")

    blocked = await page.evaluate(
        """() => {
            const event = new ClipboardEvent("paste", { bubbles: true, cancelable: true });
            document.querySelector("#prompt").dispatchEvent(event);
            return event.defaultPrevented;
        }"""
    )
    assert blocked is True
    for hidden in ("true", "false"):
        script = """() => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => HIDDEN });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
        await page.evaluate(script.replace("HIDDEN", hidden))
        await page.wait_for_timeout(200)
    await expect(page.locator("#warning")).to_contain_text(
        "Integrity warning: you left the exam 1 time (allowed 0)", timeout=10_000
    )
    await expect(page.locator("#warning")).to_contain_text("marked for review")
    await shot(page, "10-integrity-warning")

    async with sessions() as s:
        attempt = await s.scalar(select(Attempt))
        assert attempt is not None
        rows = await s.scalars(
            select(LedgerEvent)
            .where(LedgerEvent.attempt_id == attempt.id, LedgerEvent.type.in_(CANDIDATE_KINDS))
            .order_by(LedgerEvent.seq)
        )
        kinds = [r.type for r in rows]
    # Self-paced sensors go over the attempt socket, batched, each event stored once.
    assert kinds == ["paste", "tab_hidden", "tab_visible", "tab_violation"]
    assert [r["rule"] for r in attempt.review or []] == ["copy_paste", "tab_switch_limit"]
    await teacher.close()
    assert problems == []
