"""Tokens, tried as an attacker would: every forged, stale or malformed JWT is refused over REST
and over the socket's first-message auth; a validly signed token stops working the moment its
user is disabled, revoked or gone, and an open socket of theirs is closed within the re-check
interval, with nothing it sends processed after."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from delivery_service.settings import Settings
from delivery_service.storage.models import ResponseEvent
from tests.integration.conftest import World
from tests.support import PASSWORD, Api, Socket, add_user

ISSUER = AUDIENCE = "examserver"


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    """Re-check open sockets every half second, so a revocation is seen quickly."""
    return settings.model_copy(update={"token_recheck_seconds": 0.5})


def claims_of(user: dict[str, Any], **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {"sub": user["id"], "username": user["username"], "role": user["role"],
              "tv": 0, "iss": ISSUER, "aud": AUDIENCE, "iat": now,
              "exp": now + timedelta(hours=1)}  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not DROP}


DROP = object()


async def until_closed(ws: Socket) -> None:
    """Read (and keep) whatever comes until the server closes the socket."""
    try:
        while True:
            await ws.receive(timeout=5)
    except ConnectionClosed:
        return


def forgeries(secret: str) -> dict[str, Callable[[dict[str, Any]], str]]:
    """Tokens for `user` that must all be refused, by what is wrong with them."""
    hs = "HS256"
    past = datetime.now(UTC) - timedelta(hours=2)
    future = datetime.now(UTC) + timedelta(hours=1)
    other = "another-secret-that-is-long-enough-0123456789"

    def sign(claims: dict[str, Any], key: str = secret, algorithm: str = hs, **kw: Any) -> str:
        with warnings.catch_warnings():  # the attacker does not mind a short key
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, key, algorithm=algorithm, **kw)

    def unsigned(claims: dict[str, Any]) -> str:
        return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]

    return {
        "alg none": lambda u: unsigned(claims_of(u)),
        "wrong key": lambda u: sign(claims_of(u), other),
        "HS512 with the right key": lambda u: sign(claims_of(u), algorithm="HS512"),
        "expired": lambda u: sign(claims_of(u, iat=past, exp=past + timedelta(minutes=5))),
        "issued in the future": lambda u: sign(claims_of(u, iat=future)),
        "not yet valid": lambda u: sign(claims_of(u, nbf=future)),
        "no exp": lambda u: sign(claims_of(u, exp=DROP)),
        "no iat": lambda u: sign(claims_of(u, iat=DROP)),
        "no sub": lambda u: sign(claims_of(u, sub=DROP)),
        "no iss": lambda u: sign(claims_of(u, iss=DROP)),
        "no aud": lambda u: sign(claims_of(u, aud=DROP)),
        "wrong iss": lambda u: sign(claims_of(u, iss="elsewhere")),
        "wrong aud": lambda u: sign(claims_of(u, aud="elsewhere")),
        "unknown role": lambda u: sign(claims_of(u, role="superuser")),
        "sub not a uuid": lambda u: sign(claims_of(u, sub="1 OR 1=1")),
        "token version a string": lambda u: sign(claims_of(u, tv="0")),
        "old token version": lambda u: sign(claims_of(u, tv=-1)),
        "a user who does not exist": lambda u: sign(claims_of(u, sub=str(uuid.uuid4()))),
        "a jwk header of the attacker's": lambda u: sign(
            claims_of(u), other, headers={"jwk": {"kty": "oct", "k": "YXR0YWNrZXI"}}
        ),
        "truncated signature": lambda u: sign(claims_of(u))[:-6],
        "garbage": lambda u: "not.a.token",
        "empty": lambda u: "-",
    }  # fmt: skip


async def test_every_forged_or_stale_token_is_refused_over_rest(world: World) -> None:
    me = await world.student.get("/auth/me")
    for name, forge in forgeries(world.settings.jwt_secret).items():
        api = Api(world.base_url, forge(me))
        try:
            for path in ("/auth/me", f"/attempts?user_id={me['id']}"):
                reply = await api.http.get(path)
                assert reply.status_code == 401, (name, path, reply.text)
                assert reply.json()["error"]["code"] in ("unauthorized", "token_revoked"), name
            ticket = await api.http.post("/ws-tickets", json={})
            assert ticket.status_code == 401, name
        finally:
            await api.close()


async def test_every_forged_or_stale_token_is_refused_on_the_socket(world: World) -> None:
    aid = await world.started_attempt()
    me = await world.student.get("/auth/me")
    url = world.student.ws_url(aid)
    for name, forge in forgeries(world.settings.jwt_secret).items():
        async with Socket.open(url) as ws:
            await ws.send("auth", {"token": forge(me)})
            reply = await ws.receive()
            assert reply["type"] == "error", name
            assert reply["data"]["code"] in ("unauthorized", "token_revoked"), name
            with pytest.raises(ConnectionClosed):
                await ws.receive(timeout=5)
            assert ws.connection.close_code == 4401, name


async def test_a_valid_token_of_a_user_who_is_gone_is_refused(world: World) -> None:
    """The user existed when the token was signed; a token outlives nothing it speaks for."""
    ghost = {"id": str(uuid.uuid4()), "username": "ghost", "role": "admin"}
    token = jwt.encode(claims_of(ghost), world.settings.jwt_secret, algorithm="HS256")
    api = Api(world.base_url, token)
    try:
        reply = await api.http.get("/users")
        assert reply.status_code == 401
        assert "ghost" not in reply.text
    finally:
        await api.close()


async def test_revoking_ends_every_earlier_token_and_only_those(world: World) -> None:
    runtime = world.served.runtime
    await add_user(world.sessions, "leaky")
    first = await Api.login(world.base_url, "leaky")
    second = await Api.login(world.base_url, "leaky")
    user_id = uuid.UUID((await first.get("/auth/me"))["id"])
    await runtime.revocations.revoke(user_id)
    for api in (first, second):
        refused = await api.get("/auth/me", expect=401)
        assert refused["error"]["code"] == "token_revoked"
        await api.post("/ws-tickets", {}, expect=401)
    fresh = await Api.login(world.base_url, "leaky")
    assert (await fresh.get("/auth/me"))["username"] == "leaky"
    for api in (first, second, fresh):
        await api.close()


async def test_a_disabled_user_cannot_sign_in_and_their_tokens_stop(world: World) -> None:
    runtime = world.served.runtime
    await add_user(world.sessions, "leaver")
    api = await Api.login(world.base_url, "leaver")
    user_id = uuid.UUID((await api.get("/auth/me"))["id"])
    await runtime.revocations.revoke(user_id, disable=True)
    await api.get("/auth/me", expect=401)
    await api.close()
    async with httpx.AsyncClient() as http:
        login = "/api/v1/auth/login"
        right = await http.post(world.base_url + login,
                                json={"username": "leaver", "password": PASSWORD})  # fmt: skip
        wrong = await http.post(world.base_url + login,
                                json={"username": "leaver", "password": "guess"})  # fmt: skip
    assert (right.status_code, right.json()["error"]["code"]) == (403, "account_disabled")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_credentials")
    await runtime.revocations.revoke(user_id, disable=False)
    back = await Api.login(world.base_url, "leaver")
    await back.get("/auth/me")
    await back.close()


async def test_a_revoked_users_open_socket_closes_and_processes_nothing_after(
    world: World,
) -> None:
    aid = await world.started_attempt()
    runtime = world.served.runtime
    user_id = uuid.UUID((await world.student.get("/auth/me"))["id"])
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await ws.until("attempt_state")
        ack = await ws.request("submit_answer", {"item_id": "q1", "response": "B",
                                                 "client_seq": 1})  # fmt: skip
        assert ack["type"] == "answer_feedback"
        await runtime.revocations.revoke(user_id)
        revoked = await ws.until("error", timeout=5)
        assert revoked["data"]["code"] == "token_revoked"
        # Anything sent now is not processed: the socket is closing.
        try:
            await ws.send("submit_answer", {"item_id": "q2", "response": "C", "client_seq": 2})
        except ConnectionClosed:
            pass
        await until_closed(ws)
        assert ws.connection.close_code == 4401
    await asyncio.sleep(0.3)
    async with world.sessions() as s:
        seqs = sorted(await s.scalars(
            select(ResponseEvent.client_seq).where(ResponseEvent.attempt_id == uuid.UUID(aid))
        ))  # fmt: skip
    assert seqs == [1]


async def test_a_ticket_issued_before_a_revocation_opens_nothing(world: World) -> None:
    aid = await world.started_attempt()
    ticket = await world.student.ticket()
    user_id = uuid.UUID((await world.student.get("/auth/me"))["id"])
    await world.served.runtime.revocations.revoke(user_id)
    async with Socket.open(world.student.ws_url(aid, ticket=ticket)) as ws:
        reply = await ws.receive()
        assert (reply["type"], reply["data"]["code"]) == ("error", "token_revoked")
        with pytest.raises(ConnectionClosed):
            await ws.receive(timeout=5)
        assert ws.connection.close_code == 4401


async def test_account_changes_over_rest_close_the_users_open_socket(world: World) -> None:
    """A reset password, a disabled account and a password the user changed themselves each
    end the sockets the user had open (as a revocation does), not only their REST tokens."""
    student_id = (await world.student.get("/auth/me"))["id"]
    student = await Api.login(world.base_url, "student1")

    async def change_own() -> None:
        await student.post(
            "/auth/password", {"current_password": PASSWORD, "new_password": "my own passphrase"}
        )

    async def reset() -> None:
        await world.admin.post(f"/users/{student_id}/password", {"password": "a reset phrase"})

    async def disable() -> None:
        await world.admin.patch(f"/users/{student_id}", {"disabled": True})

    try:
        for change in (change_own, reset, disable):
            aid = await world.started_attempt()
            ticket = await student.ticket()
            async with Socket.open(student.ws_url(aid, ticket=ticket)) as ws:
                await ws.until("attempt_state")
                await change()
                revoked = await ws.until("error", timeout=5)
                assert revoked["data"]["code"] == "token_revoked", change.__name__
                await until_closed(ws)
                assert ws.connection.close_code == 4401, change.__name__
            # Back to the suite's password, signed in afresh (world.started_attempt uses it).
            await world.admin.patch(f"/users/{student_id}", {"disabled": False})
            await world.admin.post(f"/users/{student_id}/password", {"password": PASSWORD})
            await student.close()
            student = await Api.login(world.base_url, "student1")
            chosen = await student.post(
                "/auth/password", {"current_password": PASSWORD, "new_password": PASSWORD}
            )
            await student.close()
            student = Api(world.base_url, chosen["access_token"])
            world.student.http.headers["Authorization"] = f"Bearer {chosen['access_token']}"
    finally:
        await student.close()
