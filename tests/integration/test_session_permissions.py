"""Every class and session route refuses the wrong caller with the right status and code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from delivery_service.domain.principal import Principal
from delivery_service.security.tokens import TokenService
from tests.integration.conftest import World
from tests.integration.test_classes_and_sessions import scheduled
from tests.support import Api

STUDENT_READABLE = {"GET /classes/{cid}", "GET /sessions/{sid}"}
EVERYONE_LISTS = {"GET /classes", "GET /sessions", "GET /sessions/my-sessions"}


def routes(cid: str, sid: str, student: str, teacher2: str) -> list[tuple[str, str, Any]]:
    p = f"/sessions/{sid}/participants/{student}"
    table = [
        ("GET", "/classes", None),
        ("GET", "/classes/{cid}", None),
        ("PUT", "/classes/{cid}", {"name": "x"}),
        ("DELETE", "/classes/{cid}", None),
        ("POST", "/classes/{cid}/students", {"username": "student3"}),
        ("DELETE", f"/classes/{{cid}}/students/{student}", None),
        ("POST", "/classes/{cid}/teachers", {"username": "teacher2"}),
        ("DELETE", f"/classes/{{cid}}/teachers/{teacher2}", None),
        (
            "POST",
            "/sessions",
            {
                "class_id": cid,
                "test_id": "TEST",
                "title": "x",
                "scheduled_at": datetime.now(UTC).isoformat(),
            },
        ),  # fmt: skip
        ("GET", "/sessions", None),
        ("GET", "/sessions/my-sessions", None),
        ("GET", "/sessions/{sid}", None),
        ("POST", "/sessions/{sid}/start-waiting", None),
        ("POST", "/sessions/{sid}/start", None),
        ("POST", "/sessions/{sid}/complete", {"reason": "x"}),
        ("POST", "/sessions/{sid}/cancel", None),
        ("DELETE", "/sessions/{sid}", None),
        ("GET", "/sessions/{sid}/stats", None),
        ("GET", "/sessions/{sid}/participants", None),
        ("GET", f"{p}/timeline".replace(sid, "{sid}"), None),
        ("PUT", f"{p}/accommodation".replace(sid, "{sid}"), {"extra_seconds": 60, "reason": "x"}),
        ("POST", f"{p}/extend".replace(sid, "{sid}"), {"seconds": 60, "reason": "x"}),
        ("POST", f"{p}/pause".replace(sid, "{sid}"), None),
        ("POST", f"{p}/resume".replace(sid, "{sid}"), None),
        ("POST", f"{p}/terminate".replace(sid, "{sid}"), {"reason": "x"}),
        ("POST", "/sessions/{sid}/notices", {"message": "x"}),
        ("GET", "/sessions/{sid}/audit", None),
    ]
    return table


async def call(api: Api, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    reply = await api.http.request(method, path, json=body)
    return reply.status_code, (reply.json() if reply.content else {})


@pytest.fixture
async def ids(world: World) -> dict[str, str]:
    cid, sid = await scheduled(world, "student1")
    klass = await world.teacher.get(f"/classes/{cid}")
    teacher2 = (await world.teacher2.get("/auth/me"))["id"]
    return {"cid": cid, "sid": sid, "student": klass["students"][0]["id"], "teacher2": teacher2,
            "test": (await world.teacher.get(f"/sessions/{sid}"))["test_id"]}  # fmt: skip


def expand(ids: dict[str, str]) -> list[tuple[str, str, str, Any]]:
    out = []
    for method, template, body in routes(ids["cid"], ids["sid"], ids["student"], ids["teacher2"]):
        path = template.replace("{cid}", ids["cid"]).replace("{sid}", ids["sid"])
        if isinstance(body, dict) and body.get("test_id") == "TEST":
            body = body | {"test_id": ids["test"]}
        out.append((f"{method} {template}", method, path, body))
    return out


async def test_a_teacher_of_another_class_is_refused_everywhere(
    world: World, ids: dict[str, str]
) -> None:
    for name, method, path, body in expand(ids):
        status, reply = await call(world.teacher2, method, path, body)
        if name in EVERYONE_LISTS:
            assert status == 200, name
            assert ids["sid"] not in str(reply), name
            assert ids["cid"] not in str(reply), name
            continue
        assert (status, reply["error"]["code"]) == (403, "forbidden"), name


async def test_a_student_of_the_class_may_only_read(world: World, ids: dict[str, str]) -> None:
    for name, method, path, body in expand(ids):
        status, reply = await call(world.student, method, path, body)
        if name in STUDENT_READABLE or name in EVERYONE_LISTS:
            assert status == 200, name
            continue
        assert (status, reply["error"]["code"]) == (403, "forbidden"), name


async def test_a_student_of_another_class_learns_nothing(world: World, ids: dict[str, str]) -> None:
    for name, method, path, body in expand(ids):
        status, reply = await call(world.other, method, path, body)
        if name in EVERYONE_LISTS:
            # Their own homeroom (without its roster) and nothing of this class.
            assert status == 200, name
            assert ids["sid"] not in str(reply), name
            assert ids["cid"] not in str(reply), name
            assert ids["student"] not in str(reply), name
        elif status == 404:
            assert reply["error"]["code"] in ("class_not_found", "session_not_found"), name
        else:  # staff-only routes refuse a student before looking anything up
            assert (status, reply["error"]["code"]) == (403, "forbidden"), name


@pytest.mark.parametrize("token", ["none", "expired", "forged"])
async def test_no_valid_token_is_refused_everywhere(
    world: World, ids: dict[str, str], token: str
) -> None:
    me = await world.student.get("/auth/me")
    secret = world.settings.jwt_secret if token == "expired" else "another-secret-" + "x" * 32
    issued = TokenService(secret=secret, issuer="examserver", audience="examserver",
                          ttl_seconds=60).issue(
        Principal(me["id"], "student1", "student"),
        now=datetime.now(UTC) - timedelta(hours=1 if token == "expired" else 0),
    )  # fmt: skip
    api = Api(world.base_url, issued)
    if token == "none":
        api.http.headers.pop("Authorization")
    try:
        for name, method, path, body in expand(ids):
            status, reply = await call(api, method, path, body)
            assert (status, reply["error"]["code"]) == (401, "unauthorized"), name
    finally:
        await api.close()
