"""Guessing a test's access password (live/guesses.py): counted before the check, atomically,
per student and test, so a crowd of guesses gets exactly the limit checked and a classmate
behind the same school address is not locked out."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from delivery_service.settings import Settings
from tests.integration.conftest import World

SECRET = "plum tree 42"


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"access_password_max_failures": 5})


async def test_concurrent_guesses_get_exactly_the_limit_checked(world: World) -> None:
    test_id = await world.new_test(password=SECRET)
    school = {"X-Forwarded-For": "203.0.113.20"}  # every candidate of the school behind it

    async def guess(n: int) -> httpx.Response:
        body = {"test_id": test_id, "password": f"guess {n}"}
        return await world.student.http.post("/attempts", json=body, headers=school)

    replies = await asyncio.gather(*(guess(n) for n in range(40)))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(403) == 5, codes
    assert codes.count(429) == 35, codes
    assert {r.json()["error"]["code"] for r in replies if r.status_code == 403} == {
        "password_incorrect"
    }
    # The guesser's own tries are spent, the right password included; a classmate at the same
    # address still gets in with it.
    own = await world.student.http.post(
        "/attempts", json={"test_id": test_id, "password": SECRET}, headers=school
    )
    assert own.status_code == 429
    classmate = await world.other.http.post(
        "/attempts", json={"test_id": test_id, "password": SECRET}, headers=school
    )
    assert classmate.status_code == 201, classmate.text
