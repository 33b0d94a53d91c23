"""The grading page in a real headless Chromium: a teacher reads an essay, grades it, the
result becomes final; the server's refusals (out of range, a change without a reason) show."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import BrowserContext, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import running_server
from tests.conftest import make_settings
from tests.support import HOMEROOM, PASSWORD, Api, add_class, add_user, sample_test

ESSAY = {"identifier": "essay", "type": "extended_text", "prompt": "Why is the sky blue?",
         "points": 4}  # fmt: skip
SHOTS = Path(os.environ.get("EXAMSERVER_ARTIFACTS", ".artifacts")) / "screenshots"


async def test_a_teacher_grades_an_essay_and_the_result_becomes_final(
    context: BrowserContext, sqlite_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    teacher_id = await add_user(sessions, "teacher", "teacher")
    student_id = await add_user(sessions, "student1")
    # The teacher grades the essays of the classes they teach.
    await add_class(sessions, HOMEROOM, teachers=[teacher_id], students=[student_id])
    async with running_server(make_settings(sqlite_url, "memory://")) as served:
        teacher = await Api.login(served.url, "teacher")
        student = await Api.login(served.url, "student1")
        spec = sample_test(title="Physics", items=sample_test()["items"][:1] + [ESSAY],
                           policies={"pass_mark": 0.5})  # fmt: skip
        test = await teacher.post("/tests", spec, expect=201)
        attempt = await student.post("/attempts", {"test_id": test["id"]}, expect=201)
        aid = attempt["id"]
        await student.post(f"/attempts/{aid}/start")
        await student.post(f"/attempts/{aid}/answers",
                           {"item_id": "essay", "response": "Rayleigh scattering:\nshort waves.",
                            "client_seq": 1})  # fmt: skip
        await student.post(f"/attempts/{aid}/submit")

        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{served.url}/console/")
        await page.fill("input[name=username]", "teacher")
        await page.fill("input[name=password]", PASSWORD)
        await page.keyboard.press("Enter")
        await page.click("text=Grading")
        await expect(page.locator("#who")).to_contain_text("teacher")
        task = page.locator("article.task")
        await expect(task).to_have_count(1)
        await expect(task).to_contain_text("student1 — Physics — essay")
        await expect(task).to_contain_text("Why is the sky blue?")
        await expect(task.locator(".response")).to_have_text("Rayleigh scattering:\nshort waves.")

        await task.locator("input[name=score]").fill("3")
        await task.locator("input[name=score]").evaluate("e => e.max = ''")  # let the server say
        await task.locator("input[name=score]").fill("9")
        await task.locator("button[type=submit]").click()
        await expect(task.locator(".said")).to_contain_text("grade_out_of_range")

        await task.locator("input[name=score]").fill("3")
        await task.locator("button[type=submit]").click()
        await expect(task.locator(".said")).to_contain_text("The result is final: 3 / 5 — passed")
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "20-grading.png"), full_page=True)
        result = await student.get(f"/attempts/{aid}/review")
        assert result["result"]["final"] is True
        assert result["result"]["score"] == 3.0

        # A change needs a reason; the page shows the server's refusal, then takes one.
        await task.locator("input[name=score]").fill("2")
        await task.locator("button[type=submit]").click()
        await expect(task.locator(".said")).to_contain_text("reason_required")
        await task.locator("input[name=reason]").fill("rubric point 2 missed")
        await task.locator("button[type=submit]").click()
        await expect(task.locator(".said")).to_contain_text("The result is final: 2 / 5")
        assert (await student.get(f"/attempts/{aid}/review"))["result"]["score"] == 2.0

        # The pending queue is empty now; the graded one lists it with its grade.
        await page.reload()
        await expect(page.locator("#status")).to_have_text("Nothing here.")
        await page.select_option("select[name=status]", "graded")
        await expect(page.locator("article.task")).to_contain_text("graded 2 / 4")
        assert problems == []
        for api in (teacher, student):
            await api.close()
