"""Accounts in a real headless Chromium: an admin adds people on the console's users page,
a new teacher chooses a password from their one-time link, a student whose password a teacher
reset must choose their own before anything else, and a disabled user is shown as such."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Dialog, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from tests.conftest import make_settings
from tests.support import HOMEROOM, PASSWORD, add_class, add_user

STRONG = "tuba lessons on tuesday"


@pytest.fixture
async def served(
    sqlite_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Served]:
    await add_user(sessions, "admin", "admin")
    teacher = await add_user(sessions, "teacher", "teacher")
    students = [await add_user(sessions, f"student{n}") for n in (1, 2)]
    await add_class(sessions, HOMEROOM, teachers=[teacher], students=students)
    async with running_server(make_settings(sqlite_url, "memory://")) as server:
        yield server


def watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


async def sign_in(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(url)
    await page.fill("#login-form input[name=username]", username)
    await page.fill("#login-form input[name=password]", password)
    await page.keyboard.press("Enter")


async def test_an_admin_adds_a_teacher_who_chooses_a_password_from_the_link(
    context: BrowserContext, served: Served
) -> None:
    page = await context.new_page()
    problems = watch(page)
    await sign_in(page, served.url + "/console/users.html", "admin")
    await expect(page.locator("#who")).to_contain_text("admin (admin)")
    await expect(page.locator("#count")).to_have_text("1–4 of 4")

    await page.fill("#create input[name=username]", "ms.jones")
    await page.fill("#create input[name=display_name]", "Ms Jones")
    await page.select_option("#create select[name=role]", "teacher")
    await page.click("#create button[type=submit]")
    link = page.locator("#issued code.link")
    await expect(link).to_contain_text("/#set-password=")
    url = await link.text_content()
    assert url is not None
    await expect(page.locator("#users tr[data-username='ms.jones'] .state")).to_have_text("active")

    # A taken username is refused in the form, and nothing else changes.
    await page.fill("#create input[name=username]", "ms.jones")
    await page.click("#create button[type=submit]")
    await expect(page.locator("#create-error")).to_contain_text("username_taken")

    await page.fill("#search input[name=q]", "jones")
    await page.click("#search button[type=submit]")
    await expect(page.locator("#users tbody tr")).to_have_count(1)

    newcomer = await context.browser.new_context()  # type: ignore[union-attr]
    try:
        theirs = await newcomer.new_page()
        their_problems = watch(theirs)
        await theirs.goto(url)
        await expect(theirs.locator("form.choose-password h3")).to_have_text("Choose your password")
        assert "set-password" not in theirs.url  # out of the address bar and history
        await theirs.fill("form.choose-password input[name=new]", "password2026!")
        await theirs.fill("form.choose-password input[name=again]", "password2026!")
        await theirs.click("form.choose-password button")
        await expect(theirs.locator("form.choose-password .error")).to_contain_text("common")
        await theirs.fill("form.choose-password input[name=new]", STRONG)
        await theirs.fill("form.choose-password input[name=again]", STRONG)
        await theirs.click("form.choose-password button")
        await expect(theirs.locator("#who")).to_have_text("ms.jones")
        assert their_problems == []
        # The link worked once.
        await theirs.evaluate("sessionStorage.clear()")
        await theirs.goto("about:blank")  # a new fragment alone would not reload the page
        await theirs.goto(url)
        await theirs.fill("form.choose-password input[name=new]", STRONG + "!")
        await theirs.fill("form.choose-password input[name=again]", STRONG + "!")
        await theirs.click("form.choose-password button")
        await expect(theirs.locator("form.choose-password .error")).to_contain_text(
            "used or replaced"
        )
    finally:
        await newcomer.close()
    assert problems == []


async def test_a_reset_student_chooses_their_own_password_before_anything_else(
    context: BrowserContext, served: Served
) -> None:
    staff = await context.new_page()
    problems = watch(staff)

    async def answer(dialog: Dialog) -> None:
        await dialog.accept("exam day passphrase" if dialog.type == "prompt" else None)

    staff.on("dialog", answer)
    await sign_in(staff, served.url + "/console/users.html", "teacher")
    await expect(staff.locator("#count")).to_have_text("1–3 of 3")  # themselves and 2 students
    await expect(staff.locator("#create option[value=teacher]")).to_be_disabled()
    mine = staff.locator("#users tr[data-username='student1']")
    await expect(mine.locator("button")).to_have_count(0)  # resets and disabling: an admin's
    await staff.evaluate("sessionStorage.clear()")
    await sign_in(staff, served.url + "/console/users.html", "admin")
    row = staff.locator("#users tr[data-username='student1']")
    await row.locator("text=Reset password").click()
    await expect(staff.locator("#issued")).to_contain_text("student1: temporary password set")
    await expect(row.locator(".state")).to_have_text("must change password")

    student = await context.browser.new_context()  # type: ignore[union-attr]
    try:
        page = await student.new_page()
        their_problems = watch(page)
        await sign_in(page, served.url + "/", "student1", "exam day passphrase")
        form = page.locator("form.choose-password")
        await expect(form.locator("h3")).to_have_text("Choose a new password")
        await expect(page.locator("#home")).to_be_hidden()
        await form.locator("input[name=new]").fill(STRONG)
        await form.locator("input[name=again]").fill(STRONG + "x")
        await form.locator("button").click()
        await expect(form.locator(".error")).to_have_text("The two passwords differ.")
        await form.locator("input[name=again]").fill(STRONG)
        await form.locator("button").click()
        await expect(page.locator("#home")).to_be_visible()
        await expect(page.locator("#who")).to_have_text("student1")
        assert their_problems == []
    finally:
        await student.close()
    await staff.reload()
    await expect(staff.locator("#users tr[data-username='student1'] .state")).to_have_text("active")
    assert problems == []


async def test_an_admin_disables_a_student_who_is_then_refused(
    context: BrowserContext, served: Served
) -> None:
    page = await context.new_page()
    problems = watch(page)
    page.on("dialog", lambda dialog: dialog.accept())
    await sign_in(page, served.url + "/console/users.html", "admin")
    row = page.locator("#users tr[data-username='student2']")
    await row.locator("text=Disable").click()
    await expect(row.locator(".state")).to_have_text("disabled")
    await expect(row.locator("text=Enable")).to_be_visible()

    candidate = await context.browser.new_context()  # type: ignore[union-attr]
    try:
        theirs = await candidate.new_page()
        await sign_in(theirs, served.url + "/", "student2")
        await expect(theirs.locator("#login-error")).to_contain_text("disabled")
    finally:
        await candidate.close()
    assert problems == []


async def test_a_csv_is_checked_refused_rows_shown_then_imported_with_passwords_once(
    context: BrowserContext, served: Served, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "username,display_name,role,class,password\n"
        "new.one,New One,student,Homeroom,\n"
        "has space,Broken,student,Homeroom,\n"
    )
    good = tmp_path / "good.csv"
    good.write_text(
        "username,display_name,role,class,password\n"
        "new.one,New One,student,Homeroom,\n"
        "new.two,New Two,student,Year 9,\n"
    )
    page = await context.new_page()
    problems = watch(page)
    await sign_in(page, served.url + "/console/users.html", "admin")
    await page.set_input_files("#import input[name=file]", str(bad))
    await page.click("#check")
    refused = page.locator("#report tr.refused")
    await expect(refused).to_have_count(1)
    await expect(refused.locator("td").first).to_have_text("3")
    await expect(page.locator("#import-error")).to_contain_text("Fix the refused rows")
    await expect(page.locator("#apply")).to_be_disabled()

    await page.set_input_files("#import input[name=file]", str(good))
    await page.click("#check")
    await expect(page.locator("#import-status")).to_contain_text("Checked 2 rows: 2 to create")
    await expect(page.locator("#import-status")).to_contain_text("1 new classes")
    await expect(page.locator("#passwords")).to_be_hidden()
    await page.click("#apply")
    await expect(page.locator("#import-status")).to_contain_text("Imported 2 rows")
    await expect(page.locator("#passwords tbody tr")).to_have_count(2)
    generated = (
        await page.locator("#passwords tr", has_text="new.two").locator("td.secret").inner_text()
    )
    await expect(page.locator("#users tr[data-username='new.two'] .state")).to_have_text(
        "must change password"
    )

    candidate = await context.browser.new_context()  # type: ignore[union-attr]
    try:
        theirs = await candidate.new_page()
        await sign_in(theirs, served.url + "/", "new.two", generated.strip())
        await expect(theirs.locator("form.choose-password h3")).to_have_text(
            "Choose a new password"
        )
    finally:
        await candidate.close()
    assert problems == []
