"""Signing in with the OpenID provider's button, in headless Chromium, through a stand-in
provider served over HTTP (tests/oidc_provider.py): the browser really goes to the provider and
back, carrying the flow's cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from tests.browser.test_candidate_app import shot, watch
from tests.conftest import make_settings
from tests.oidc_provider import StandInProvider, stand_in_provider
from tests.support import HOMEROOM, Api, add_class, add_user, sample_test


@pytest.fixture
async def provider() -> AsyncIterator[StandInProvider]:
    async with stand_in_provider() as running:
        yield running


@pytest.fixture
async def served(
    sqlite_url: str, sessions: async_sessionmaker[AsyncSession], provider: StandInProvider
) -> AsyncIterator[Served]:
    teacher_id = await add_user(sessions, "teacher", "teacher")
    student_id = await add_user(sessions, "student1")
    # The test is assigned to the Homeroom class: its student sees it once signed in.
    await add_class(sessions, HOMEROOM, teachers=[teacher_id], students=[student_id])
    settings = make_settings(sqlite_url, "memory://", **provider.settings())
    async with running_server(settings) as server:
        teacher = await Api.login(server.url, "teacher")
        await teacher.post("/tests", sample_test(title="Chemistry"), expect=201)
        await teacher.close()
        yield server


async def test_the_candidate_signs_in_with_the_provider_button(
    context: BrowserContext, served: Served, provider: StandInProvider
) -> None:
    provider.user = {"sub": "s-1", "preferred_username": "student1"}
    page = await context.new_page()
    problems = watch(page)
    await page.goto(served.url + "/")
    button = page.get_by_role("button", name="Sign in with Stand-in ID")
    await expect(button).to_be_visible()
    await shot(page, "oidc-01-sign-in")
    await button.click()

    await expect(page.locator("#who")).to_have_text("student1")
    await expect(page.locator("#tests button")).to_have_count(1)
    await shot(page, "oidc-02-home")
    # The token left the address bar and the history entry, and sits where a password
    # sign-in keeps it.
    assert "oidc_token" not in page.url
    assert page.url == served.url + "/"
    stored = await page.evaluate("localStorage.getItem('examserver.token')")
    assert isinstance(stored, str)
    assert stored.count(".") == 2
    assert problems == []


async def test_the_console_shows_a_refusal_with_its_code(
    context: BrowserContext, served: Served, provider: StandInProvider
) -> None:
    provider.user = {"sub": "x-1", "preferred_username": "nobody"}
    page = await context.new_page()
    problems = watch(page)
    await page.goto(served.url + "/console/")
    await page.get_by_role("button", name="Sign in with Stand-in ID").click()

    await expect(page.locator("#login-error")).to_contain_text("(oidc_user_unknown)")
    await expect(page.locator("#login-error")).to_contain_text("there is no account for 'nobody'")
    assert page.url == served.url + "/console/"
    assert await page.evaluate("sessionStorage.getItem('examserver.token')") is None
    assert problems == []
