"""Accounts over REST on both deployments: creating users, one-time set-password links,
passwords that must be changed, admins looking after accounts, teachers resetting their
students' passwords, and every change that takes something away ending the user's tokens."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from delivery_service.security.passwords import hash_password
from delivery_service.storage.models import User
from tests.integration.conftest import World
from tests.support import HOMEROOM, PASSWORD, Api

NEW_PASSWORD = "a sturdy new passphrase"


async def sign_in(world: World, username: str, password: str, expect: int = 200) -> Any:
    async with httpx.AsyncClient(base_url=world.base_url, timeout=20) as http:
        reply = await http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
    assert reply.status_code == expect, reply.text
    return reply.json()


async def change_password(world: World, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=world.base_url, timeout=20) as http:
        reply = await http.post("/api/v1/auth/password", json=body, headers=headers)
    return reply


async def homeroom_id(world: World) -> str:
    classes = await world.teacher.get("/classes")
    return str(next(c["id"] for c in classes if c["name"] == HOMEROOM))


async def test_a_user_with_a_temporary_password_must_choose_their_own_before_anything(
    world: World,
) -> None:
    created = await world.admin.post(
        "/users",
        {"username": "ms.jones", "display_name": "Ms Jones", "role": "teacher",
         "password": "temporary passphrase 1"},
        expect=201,
    )  # fmt: skip
    assert created["must_change_password"] is True
    assert created["set_password_token"] is None

    signed_in = await sign_in(world, "ms.jones", "temporary passphrase 1")
    assert signed_in["must_change_password"] is True
    limited = Api(world.base_url, signed_in["access_token"])
    try:
        refused = await limited.get("/tests", expect=403)
        assert refused["error"]["code"] == "password_change_required"
        await limited.post("/ws-tickets", expect=403)
        me = await limited.get("/auth/me")
        assert me["must_change_password"] is True
    finally:
        await limited.close()

    weak = await change_password(
        world,
        {"current_password": "temporary passphrase 1", "new_password": "password2026!"},
        signed_in["access_token"],
    )
    assert weak.status_code == 422
    assert weak.json()["error"]["code"] == "weak_password"
    wrong = await change_password(
        world,
        {"current_password": "not it at all, no", "new_password": NEW_PASSWORD},
        signed_in["access_token"],
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "current_password_incorrect"

    changed = await change_password(
        world,
        {"current_password": "temporary passphrase 1", "new_password": NEW_PASSWORD},
        signed_in["access_token"],
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["must_change_password"] is False
    fresh = Api(world.base_url, changed.json()["access_token"])
    old = Api(world.base_url, signed_in["access_token"])
    try:
        await fresh.get("/tests")
        revoked = await old.get("/auth/me", expect=401)
        assert revoked["error"]["code"] == "token_revoked"
    finally:
        await fresh.close()
        await old.close()
    await sign_in(world, "ms.jones", "temporary passphrase 1", expect=401)
    await sign_in(world, "ms.jones", NEW_PASSWORD)


async def test_a_set_password_link_works_once_and_the_account_is_closed_until_then(
    world: World,
) -> None:
    created = await world.admin.post(
        "/users", {"username": "newstudent", "role": "student"}, expect=201
    )
    token = created["set_password_token"]
    assert created["set_password_path"] == f"/#set-password={token}"
    assert created["display_name"] == "newstudent"
    # A link token is not a sign-in.
    as_bearer = Api(world.base_url, token)
    try:
        await as_bearer.get("/auth/me", expect=401)
    finally:
        await as_bearer.close()

    used = await change_password(world, {"token": token, "new_password": NEW_PASSWORD})
    assert used.status_code == 200, used.text
    assert used.json()["user"]["username"] == "newstudent"
    again = await change_password(world, {"token": token, "new_password": NEW_PASSWORD + "!"})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invalid_set_password_token"
    await sign_in(world, "newstudent", NEW_PASSWORD)

    both = await change_password(
        world, {"token": token, "current_password": "x", "new_password": NEW_PASSWORD}
    )
    assert both.status_code == 422


async def test_teachers_create_students_in_their_own_classes_only(world: World) -> None:
    homeroom = await homeroom_id(world)
    created = await world.teacher.post(
        "/users",
        {"username": "transfer", "display_name": "Transfer Student", "class_ids": [homeroom]},
        expect=201,
    )
    roster = await world.teacher.get(f"/classes/{homeroom}")
    assert "transfer" in {s["username"] for s in roster["students"]}
    assert created["role"] == "student"

    staff = await world.teacher.post(
        "/users", {"username": "friend", "role": "teacher", "password": NEW_PASSWORD}, expect=403
    )
    assert staff["error"]["code"] == "forbidden"
    elsewhere = await world.teacher2.post(
        "/users", {"username": "stray", "class_ids": [homeroom]}, expect=403
    )
    assert elsewhere["error"]["code"] == "forbidden"
    unknown = await world.admin.post(
        "/users", {"username": "stray", "class_ids": [str(uuid.uuid4())]}, expect=422
    )
    assert unknown["error"]["code"] == "unknown_class"
    await world.student.post("/users", {"username": "sneaky"}, expect=403)
    taken = await world.admin.post("/users", {"username": "student1"}, expect=409)
    assert taken["error"]["code"] == "username_taken"
    bad_name = await world.admin.post("/users", {"username": "has space"}, expect=422)
    assert bad_name["error"]["code"] == "validation_error"
    # Nothing of the refused ones exists.
    found = await world.admin.get("/users?q=s")
    assert not {"friend", "stray", "sneaky"} & {u["username"] for u in found}


async def test_admins_search_and_page_users_and_teachers_see_their_classes_only(
    world: World,
) -> None:
    async with httpx.AsyncClient(
        base_url=f"{world.base_url}/api/v1",
        headers={"Authorization": f"Bearer {world.admin.token}"},
    ) as http:
        page = await http.get("/users", params={"role": "student", "limit": 2, "offset": 1})
        assert page.status_code == 200
        assert page.headers["X-Total-Count"] == "3"
        assert [u["username"] for u in page.json()] == ["student2", "student3"]
        named = await http.get("/users", params={"q": "STUDENT2"})
        assert [u["username"] for u in named.json()] == ["student2"]
        by_name = await http.get("/users", params={"q": "udent"})  # a part of a display name
        assert {u["username"] for u in by_name.json()} == {"student1", "student2", "student3"}
        wildcard = await http.get("/users", params={"q": "%"})
        assert wildcard.json() == []

    teacher2_sees = {u["username"] for u in await world.teacher2.get("/users")}
    assert teacher2_sees == {"teacher2"}
    student_id = (await world.admin.get("/users?q=student1"))[0]["id"]
    await world.teacher2.get(f"/users/{student_id}", expect=404)
    one = await world.teacher.get(f"/users/{student_id}")
    assert one["username"] == "student1"
    assert one["disabled"] is False
    await world.student.get("/users", expect=403)


async def test_disabling_or_demoting_ends_tokens_and_the_last_admin_stays(world: World) -> None:
    users = {u["username"]: u["id"] for u in await world.admin.get("/users")}
    disabled = await world.admin.patch(f"/users/{users['student1']}", {"disabled": True})
    assert disabled["disabled"] is True
    revoked = await world.student.get("/auth/me", expect=401)
    assert revoked["error"]["code"] == "token_revoked"
    refused = await sign_in(world, "student1", PASSWORD, expect=403)
    assert refused["error"]["code"] == "account_disabled"
    await world.admin.patch(f"/users/{users['student1']}", {"disabled": False})
    await sign_in(world, "student1", PASSWORD)

    renamed = await world.admin.patch(f"/users/{users['teacher2']}", {"display_name": "T. Two"})
    assert renamed["display_name"] == "T. Two"
    await world.teacher2.get("/auth/me")  # a new name ends nothing
    await world.admin.patch(f"/users/{users['teacher2']}", {"role": "student"})
    await world.teacher2.get("/auth/me", expect=401)

    last = await world.admin.patch(f"/users/{users['admin']}", {"disabled": True}, expect=409)
    assert last["error"]["code"] == "last_admin"
    await world.admin.patch(f"/users/{users['admin']}", {"role": "teacher"}, expect=409)
    await world.teacher.patch(f"/users/{users['student2']}", {"disabled": True}, expect=403)
    nulled = await world.admin.patch(f"/users/{users['student2']}", {"role": None}, expect=422)
    assert nulled["error"]["code"] == "validation_error"


async def test_an_admin_resets_a_forgotten_password_and_teachers_may_not(world: World) -> None:
    users = {u["username"]: u["id"] for u in await world.admin.get("/users")}
    reset = await world.admin.post(
        f"/users/{users['student1']}/password", {"password": "exam day passphrase"}
    )
    assert reset == {
        "must_change_password": True,
        "set_password_token": None,
        "set_password_path": None,
    }
    await world.student.get("/auth/me", expect=401)
    signed_in = await sign_in(world, "student1", "exam day passphrase")
    assert signed_in["must_change_password"] is True

    # A teacher may enrol any student into their class, so a teacher's reset would be a way
    # into any student's account: resets are an admin's.
    refused = await world.teacher.post(f"/users/{users['student2']}/password", {}, expect=403)
    assert refused["error"]["code"] == "forbidden"
    await world.other.post(f"/users/{users['student1']}/password", {}, expect=403)
    await sign_in(world, "student2", PASSWORD)

    link = await world.admin.post(f"/users/{users['teacher2']}/password")
    assert link["must_change_password"] is False
    assert link["set_password_token"]
    await sign_in(world, "teacher2", PASSWORD, expect=401)


async def test_a_cheap_hash_is_brought_up_to_the_server_cost_at_sign_in(world: World) -> None:
    async with world.sessions() as s, s.begin():
        user = await s.scalar(select(User).where(User.username == "student2"))
        assert user is not None
        user.password_hash = hash_password(PASSWORD, cost=2**4)
    await sign_in(world, "student2", PASSWORD)
    async with world.sessions() as s:
        stored = await s.scalar(select(User.password_hash).where(User.username == "student2"))
    assert stored is not None
    assert int(stored.split("$")[1]) == world.settings.password_hash_cost
    await sign_in(world, "student2", PASSWORD)


async def test_a_link_used_twice_at_once_sets_one_password(world: World) -> None:
    created = await world.admin.post("/users", {"username": "twice"}, expect=201)
    token = created["set_password_token"]
    replies = await asyncio.gather(
        *(
            change_password(world, {"token": token, "new_password": f"{word} and more words"})
            for word in ("first", "second", "third")
        )
    )
    assert sorted(r.status_code for r in replies) == [200, 400, 400]
    winner = next(r for r in replies if r.status_code == 200)
    assert winner.headers["cache-control"] == "no-store"
    assert {r.json()["error"]["code"] for r in replies if r.status_code == 400} == {
        "invalid_set_password_token"
    }


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(world: World) -> None:
    second = await world.admin.post(
        "/users",
        {"username": "admin2", "role": "admin", "password": "second admin passphrase",
         "must_change_password": False},
        expect=201,
    )  # fmt: skip
    other = await Api.login(world.base_url, "admin2", "second admin passphrase")
    try:
        first_id = (await world.admin.get("/auth/me"))["id"]
        replies = await asyncio.gather(
            world.admin.http.patch(f"/users/{second['id']}", json={"role": "teacher"}),
            other.http.patch(f"/users/{first_id}", json={"role": "teacher"}),
        )
    finally:
        await other.close()
    # The loser is refused as the last admin (both at once) or, if the winner's change landed
    # first, because demoting them ended their token.
    codes = sorted(r.status_code for r in replies)
    assert codes in ([200, 401], [200, 409]), [r.text for r in replies]
    async with world.sessions() as s:
        admins = list(
            await s.scalars(
                select(User.username).where(User.role == "admin", User.disabled.is_(False))
            )
        )
    assert len(admins) == 1
