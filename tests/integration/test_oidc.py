"""OpenID Connect sign-in against a stand-in provider served over real HTTP
(tests/oidc_provider.py).

A browser is played by an httpx client that follows the redirects one at a time and keeps
cookies, so each step (our login route, the provider, our callback) is seen as a browser sees it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from delivery_service.embedded import Served, running_server
from delivery_service.settings import Settings
from delivery_service.storage.models import LedgerEvent, User
from tests.conftest import make_settings
from tests.oidc_provider import StandInProvider, other_key, stand_in_provider
from tests.support import Api, add_user


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    """The embedded deployment; the flow across two servers below runs on PostgreSQL + Redis."""
    return make_settings(sqlite_url, "memory://")


@pytest.fixture
async def provider() -> AsyncIterator[StandInProvider]:
    async with stand_in_provider() as running:
        yield running


@asynccontextmanager
async def server(base: Settings, provider: StandInProvider, **oidc: Any) -> AsyncIterator[Served]:
    settings = Settings(**(base.model_dump() | provider.settings(**oidc)))
    async with running_server(settings) as served:
        yield served


class Browser:
    """Cookies and one redirect at a time, like a browser's address bar."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=20)
        self.page = secrets.token_hex(16)  # the page's own value, as web/lib/oidc.js sends

    async def start(self, base_url: str, next_path: str = "/console/") -> httpx.Response:
        return await self.http.get(
            f"{base_url}/api/v1/auth/oidc/login", params={"next": next_path, "page": self.page}
        )

    async def at_provider(self, started: httpx.Response) -> str:
        """The provider's redirect back to our callback."""
        assert started.status_code == 302, started.text
        answer = await self.http.get(started.headers["location"])
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    async def callback(self, url: str) -> Landing:
        answer = await self.http.get(url)
        assert answer.status_code == 303, answer.text
        landing = Landing(answer.headers["location"])
        if "oidc_token" in landing.fragment:
            # The page takes the token only beside the value it chose (a planted one fails).
            assert landing.fragment["oidc_page"] == self.page
        return landing

    async def sign_in(self, base_url: str, next_path: str = "/console/") -> Landing:
        return await self.callback(await self.at_provider(await self.start(base_url, next_path)))

    async def close(self) -> None:
        await self.http.aclose()


class Landing:
    """Where the callback sent the browser: a path on our server and its fragment."""

    def __init__(self, location: str) -> None:
        parts = urlsplit(location)
        self.location = location
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.host = parts.netloc
        self.fragment = {k: v[0] for k, v in parse_qs(parts.fragment).items()}

    @property
    def token(self) -> str:
        assert "oidc_token" in self.fragment, self.fragment
        return self.fragment["oidc_token"]

    @property
    def error(self) -> str | None:
        return self.fragment.get("oidc_error")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = Browser()
    yield b
    await b.close()


async def me(base_url: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        reply = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def user_named(sessions: async_sessionmaker[AsyncSession], username: str) -> User | None:
    async with sessions() as s:
        found: User | None = await s.scalar(select(User).where(User.username == username))
        return found


# ---- the flow ---------------------------------------------------------------------------------


async def test_oidc_is_off_unless_an_issuer_is_set(settings: Settings) -> None:
    async with running_server(settings) as served, httpx.AsyncClient(base_url=served.url) as http:
        assert (await http.get("/api/v1/auth/oidc")).json() == {
            "enabled": False,
            "label": None,
            "login_url": None,
        }
        refused = await http.get("/api/v1/auth/oidc/login")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "oidc_not_configured"


async def test_existing_user_signs_in_and_the_page_gets_a_token_in_the_fragment(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    teacher_id = await add_user(sessions, "teacher", "teacher")
    provider.user = {"sub": "t-9", "preferred_username": "teacher"}
    async with server(settings, provider) as served:
        async with httpx.AsyncClient(base_url=served.url) as http:
            info = (await http.get("/api/v1/auth/oidc")).json()
        assert info == {
            "enabled": True,
            "label": "Stand-in ID",
            "login_url": "/api/v1/auth/oidc/login",
        }
        started = await browser.start(served.url, "/console/?session=abc#grid")
        authorize = parse_qs(urlsplit(started.headers["location"]).query)
        assert authorize["code_challenge_method"] == ["S256"]
        assert authorize["nonce"]
        assert authorize["state"]
        assert started.headers["cache-control"] == "no-store"
        landing = await browser.callback(await browser.at_provider(started))

        # Back on the page that asked (its fragment dropped), never another host.
        assert landing.host == ""
        assert landing.path == "/console/?session=abc"
        assert landing.fragment["expires_in"] == str(served.runtime.tokens.ttl_seconds)
        assert await me(served.url, landing.token) == {
            "id": str(teacher_id),
            "username": "teacher",
            "role": "teacher",
            "must_change_password": False,
        }
        # The token is the server's own, as a password sign-in's: the same API accepts it.
        api = Api(served.url, landing.token)
        assert await api.get("/users?role=student") == []
        await api.close()
    # PKCE: the code was exchanged with its verifier (the provider checked it).
    assert provider.token_requests[0]["code_verifier"]
    async with sessions() as s:
        logins = list(
            await s.scalars(
                select(LedgerEvent).where(
                    LedgerEvent.candidate_id == teacher_id, LedgerEvent.type == "login"
                )
            )
        )
    assert [e.payload["method"] for e in logins] == ["oidc"]
    assert logins[0].payload["role"] == "teacher"


async def test_first_sign_in_creates_the_user_when_allowed(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    provider.user = {"sub": "n-1", "preferred_username": "newbie", "name": "Nora Newbie"}
    async with server(
        settings, provider, oidc_create_users=True, oidc_default_role="student"
    ) as served:
        landing = await browser.sign_in(served.url, "/")
        assert (await me(served.url, landing.token))["role"] == "student"
        # A second sign-in finds the same user rather than creating another.
        again = await browser.sign_in(served.url, "/")
        assert (await me(served.url, again.token))["username"] == "newbie"
        async with httpx.AsyncClient(base_url=served.url) as http:
            password = await http.post(
                "/api/v1/auth/login", json={"username": "newbie", "password": "!oidc"}
            )
        assert password.status_code == 401  # created without a usable password
    created = await user_named(sessions, "newbie")
    assert created is not None
    assert (created.display_name, created.role) == ("Nora Newbie", "student")
    async with sessions() as s:
        first = await s.scalar(
            select(LedgerEvent).where(LedgerEvent.candidate_id == created.id).limit(1)
        )
    assert first is not None
    assert first.payload["created"] is True


async def test_first_sign_in_is_refused_when_creation_is_off(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    provider.user = {"sub": "n-2", "preferred_username": "stranger"}
    async with server(settings, provider) as served:
        landing = await browser.sign_in(served.url, "/")
    assert landing.error == "oidc_user_unknown"
    assert "stranger" in landing.fragment["oidc_message"]
    assert "oidc_token" not in landing.fragment
    assert await user_named(sessions, "stranger") is None


ROLE_MAPPING = {
    "oidc_role_claim": "groups",
    "oidc_role_map": {"pupils": "student", "staff": "teacher", "it": "admin"},
    "oidc_create_users": True,
}


@pytest.mark.parametrize(
    ("groups", "role"),
    [(["pupils"], "student"), (["pupils", "staff"], "teacher"), ("it", "admin")],
)
async def test_a_new_users_role_comes_from_the_role_claim(
    settings: Settings,
    provider: StandInProvider,
    browser: Browser,
    groups: list[str] | str,
    role: str,
) -> None:
    provider.user = {"sub": "g", "preferred_username": "grouped", "groups": groups}
    async with server(settings, provider, **ROLE_MAPPING) as served:
        landing = await browser.sign_in(served.url, "/")
        assert (await me(served.url, landing.token))["role"] == role


async def test_a_user_whose_role_cannot_be_decided_is_refused(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    provider.user = {"sub": "g", "preferred_username": "ungrouped", "groups": ["visitors"]}
    async with server(settings, provider, **ROLE_MAPPING) as served:
        landing = await browser.sign_in(served.url, "/")
    assert landing.error == "oidc_role_unknown"
    assert await user_named(sessions, "ungrouped") is None


async def test_an_existing_users_role_must_agree_with_the_role_claim(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    """A provider account renamed to an admin's username lacks the admin's groups."""
    await add_user(sessions, "admin", "admin")
    await add_user(sessions, "student1")
    async with server(settings, provider, **ROLE_MAPPING) as served:
        provider.user = {"sub": "x", "preferred_username": "admin", "groups": ["pupils"]}
        refused = await browser.sign_in(served.url, "/console/")
        provider.user = {"sub": "y", "preferred_username": "student1", "groups": ["pupils"]}
        allowed = await browser.sign_in(served.url, "/")
    assert refused.error == "oidc_role_mismatch"
    assert refused.path == "/console/"
    assert allowed.error is None


async def test_a_disabled_user_is_refused(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    await add_user(sessions, "student1")
    async with sessions() as s, s.begin():
        await s.execute(update(User).where(User.username == "student1").values(disabled=True))
    async with server(settings, provider) as served:
        landing = await browser.sign_in(served.url, "/")
    assert landing.error == "account_disabled"
    assert "oidc_token" not in landing.fragment


# ---- the flow's own checks ----------------------------------------------------------------------


async def test_an_unknown_state_is_refused(
    settings: Settings, provider: StandInProvider, browser: Browser
) -> None:
    async with server(settings, provider) as served:
        landing = await browser.callback(
            f"{served.url}/api/v1/auth/oidc/callback?state=forged&code=whatever"
        )
    assert landing.error == "oidc_state_invalid"
    assert landing.path == "/"


async def test_a_callback_is_good_once(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    await add_user(sessions, "student1")
    async with server(settings, provider) as served:
        callback = await browser.at_provider(await browser.start(served.url, "/"))
        first = await browser.callback(callback)
        # The same callback again from the same browser (its cookie still there): taken.
        assert browser.http.cookies.get("examserver_oidc")
        replay = await browser.callback(callback)
    assert first.error is None
    assert replay.error == "oidc_state_invalid"


async def test_flows_started_in_two_tabs_of_one_browser_both_finish(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    await add_user(sessions, "student1")
    async with server(settings, provider) as served:
        first = await browser.at_provider(await browser.start(served.url, "/"))
        second = await browser.at_provider(await browser.start(served.url, "/console/"))
        assert (await browser.callback(second)).error is None
        assert (await browser.callback(first)).error is None


async def test_a_callback_in_another_browser_is_refused(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    """Login CSRF: a callback URL from the attacker's own flow, opened in the victim's
    browser, lacks the cookie that binds the flow to the browser that started it."""
    await add_user(sessions, "student1")
    async with server(settings, provider) as served:
        callback = await browser.at_provider(await browser.start(served.url, "/"))
        victim = Browser()
        try:
            landing = await victim.callback(callback)
        finally:
            await victim.close()
        assert landing.error == "oidc_state_invalid"
        # The flow is still the starter's to finish.
        assert (await browser.callback(callback)).error is None


@pytest.mark.parametrize(
    ("misbehaviour", "reason"),
    [
        ({"tamper": {"nonce": "not-the-one-we-sent"}}, "'nonce'"),
        ({"tamper": {"aud": "another-client"}}, "'aud'"),
        ({"tamper": {"iss": "https://impostor.example"}}, "'iss'"),
        ({"tamper": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}}, "expired"),
        ({"signing_key": other_key()}, "signature"),
    ],
    ids=["wrong-nonce", "wrong-audience", "wrong-issuer", "expired", "forged-signature"],
)
async def test_an_id_token_that_fails_a_check_is_refused(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
    misbehaviour: dict[str, Any],
    reason: str,
) -> None:
    await add_user(sessions, "student1")
    for name, value in misbehaviour.items():
        setattr(provider, name, value)
    async with server(settings, provider) as served:
        landing = await browser.sign_in(served.url, "/")
    assert landing.error == "oidc_token_invalid"
    assert reason in landing.fragment["oidc_message"]
    assert "oidc_token" not in landing.fragment


async def test_a_replayed_id_token_is_refused_by_its_nonce(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
    browser: Browser,
) -> None:
    """An ID token captured from one sign-in, answered again in a later one: signed, fresh
    and for us, but its nonce belongs to the earlier flow."""
    await add_user(sessions, "student1")
    async with server(settings, provider) as served:
        assert (await browser.sign_in(served.url, "/")).error is None
        provider.replay_id_token = provider.id_tokens[0]
        landing = await browser.sign_in(served.url, "/")
    assert landing.error == "oidc_token_invalid"
    assert "'nonce'" in landing.fragment["oidc_message"]


async def test_a_refusal_at_the_provider_comes_back_to_the_page(
    settings: Settings, provider: StandInProvider, browser: Browser
) -> None:
    provider.error = "access_denied"
    async with server(settings, provider) as served:
        landing = await browser.sign_in(served.url, "/console/")
    assert (landing.path, landing.error) == ("/console/", "oidc_provider_error")
    assert "access_denied" in landing.fragment["oidc_message"]


async def test_an_unreachable_provider_comes_back_to_the_page(
    settings: Settings, provider: StandInProvider, browser: Browser
) -> None:
    async with server(settings, provider, oidc_issuer="http://127.0.0.1:9") as served:
        started = await browser.start(served.url, "/console/")
    assert started.status_code == 303
    assert Landing(started.headers["location"]).error == "oidc_unavailable"


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "evil.example",
        "javascript:alert(1)",
    ],
)
async def test_a_next_that_leaves_the_server_is_refused(
    settings: Settings, provider: StandInProvider, browser: Browser, next_path: str
) -> None:
    async with server(settings, provider) as served:
        refused = await browser.start(served.url, next_path)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_next"
    assert provider.grants == {}


# ---- stateless workers ----------------------------------------------------------------------


async def test_a_flow_started_on_one_server_finishes_on_another(
    real_settings: Settings, provider: StandInProvider, browser: Browser
) -> None:
    """Two workers sharing PostgreSQL and Redis, as behind a load balancer: the flow begun on
    one is finished on the other, and the replay of its callback on the first is refused."""
    from delivery_service.storage.database import create_engine, create_sessionmaker

    engine = create_engine(real_settings)
    student = await add_user(create_sessionmaker(engine), "student1")
    await engine.dispose()
    shared = {"redis_prefix": f"t{uuid.uuid4().hex[:10]}:exam:v1"}
    async with (
        server(real_settings, provider, **shared) as first,
        server(real_settings, provider, **shared) as second,
    ):
        callback = await browser.at_provider(await browser.start(first.url, "/"))
        assert callback.startswith(first.url)
        landing = await browser.callback(callback.replace(first.url, second.url))
        assert (await me(first.url, landing.token))["id"] == str(student)
        replay = await browser.callback(callback)
    assert replay.error == "oidc_state_invalid"


async def test_a_provider_user_renamed_to_a_bound_username_is_refused(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: StandInProvider,
) -> None:
    """The first OpenID sign-in binds the account to the provider's subject; later sign-ins
    match on it, so another provider user who renames themselves to that username (the
    default matching claim, preferred_username, is often theirs to edit) is refused, and the
    bound user still gets in after renaming themselves."""
    student_id = await add_user(sessions, "student1")
    async with server(settings, provider) as served:
        provider.user = {"sub": "real-1", "preferred_username": "student1"}
        first = Browser()
        try:
            assert (await me(served.url, (await first.sign_in(served.url, "/")).token))["id"] == (
                str(student_id)
            )
        finally:
            await first.close()

        provider.user = {"sub": "impostor-7", "preferred_username": "student1"}
        impostor = Browser()
        try:
            landing = await impostor.sign_in(served.url, "/")
        finally:
            await impostor.close()
        assert landing.error == "oidc_account_bound_elsewhere"
        assert "oidc_token" not in landing.fragment

        provider.user = {"sub": "real-1", "preferred_username": "student.one"}
        again = Browser()
        try:
            signed_in = await me(served.url, (await again.sign_in(served.url, "/")).token)
        finally:
            await again.close()
        assert (signed_in["id"], signed_in["username"]) == (str(student_id), "student1")
