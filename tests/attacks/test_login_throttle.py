"""Password guessing against the login throttle (live/throttle.py).

Client addresses are set with X-Forwarded-For, which the server trusts from its loopback proxy
(`FORWARDED_ALLOW_IPS`), as it would behind nginx.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from delivery_service.settings import Settings
from tests.integration.conftest import World
from tests.support import PASSWORD

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    """A small per-address limit, so a spray reaches it quickly."""
    return settings.model_copy(update={"login_max_per_address": 12})


def client(world: World, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=world.base_url, headers={"X-Forwarded-For": address}, timeout=60
    )


async def login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(LOGIN, json={"username": username, "password": password})


async def test_concurrent_guesses_get_exactly_the_limit_checked(world: World) -> None:
    """Counted before the hash, atomically: 200 guesses at once cannot slip past the limit."""
    limit = world.settings.login_max_failures
    async with client(world, "203.0.113.7") as http:
        replies = await asyncio.gather(*(login(http, "student1", f"guess-{n}") for n in range(200)))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(401) == limit
    assert codes.count(429) == 200 - limit
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.json()["error"]["code"] == "too_many_attempts"
    assert 0 < int(refused.headers["Retry-After"]) <= world.settings.login_window_seconds


async def test_a_guesser_elsewhere_cannot_lock_the_candidate_out(world: World) -> None:
    async with client(world, "198.51.100.66") as attacker:
        for n in range(world.settings.login_max_failures + 3):
            await login(attacker, "student1", f"guess-{n}")
        assert (await login(attacker, "student1", PASSWORD)).status_code == 429
    async with client(world, "192.0.2.10") as candidate:
        assert (await login(candidate, "student1", PASSWORD)).status_code == 200


async def test_a_guesser_behind_the_same_school_address_cannot_use_up_a_known_browser(
    world: World,
) -> None:
    """The candidate's browser signed in before (it holds the device cookie); a classmate at
    the same address guesses until that address is throttled for the account; the
    candidate's browser still gets in."""
    school = "192.0.2.44"
    async with client(world, school) as candidate:
        assert (await login(candidate, "student1", PASSWORD)).status_code == 200
        assert candidate.cookies.get("examserver_device")
        async with client(world, school) as classmate:
            for n in range(world.settings.login_max_failures + 3):
                await login(classmate, "student1", f"guess-{n}")
            assert (await login(classmate, "student1", PASSWORD)).status_code == 429
        assert (await login(candidate, "student1", PASSWORD)).status_code == 200


async def test_a_device_cookie_of_another_user_or_forged_counts_for_nothing(
    world: World,
) -> None:
    """A cookie issued for student2 (or made up) does not move student1's attempts out of the
    address's bucket."""
    school = "192.0.2.45"
    async with client(world, school) as other:
        await login(other, "student2", PASSWORD)
        theirs = other.cookies["examserver_device"]
    for n, cookie in enumerate((theirs, theirs[:-4] + "0000", "x.y.z")):
        async with client(world, f"192.0.2.{50 + n}") as attacker:
            attacker.cookies.set("examserver_device", cookie, path="/api/v1/auth")
            for n in range(world.settings.login_max_failures):
                await login(attacker, "student1", f"guess-{n}")
            assert (await login(attacker, "student1", PASSWORD)).status_code == 429


async def test_one_address_spraying_many_accounts_is_stopped(world: World) -> None:
    async with client(world, "203.0.113.99") as sprayer:
        codes = [
            (await login(sprayer, name, "Winter2026!")).status_code
            for name in ["student1", "student2", "student3", "teacher", "admin"] * 4
        ]
    limit = world.settings.login_max_per_address
    assert codes[:limit] == [401] * limit
    assert set(codes[limit:]) == {429}


async def test_signing_in_gives_the_address_its_try_back(world: World) -> None:
    """A school's candidates behind one address spend only their typos: successful sign-ins
    do not fill the address's bucket."""
    limit = world.settings.login_max_per_address
    async with client(world, "192.0.2.200") as school:
        for _ in range(limit // 3 + 2):
            for name in ("student1", "student2", "student3"):
                assert (await login(school, name, PASSWORD)).status_code == 200
