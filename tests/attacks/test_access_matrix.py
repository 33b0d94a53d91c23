"""Broken object-level authorisation, tried on every route the server publishes.

A teacher of another class and a student of another class walk every operation in
`/openapi.json` with the ids of a victim's class, session, attempts and results filled in, and
with bodies that pass validation (so the access check, not the validator, answers). Every
operation on a foreign object must be refused, and no reply, of any route, may carry a byte that
names the victim (their id, username, attempts, session or class). Afterwards the victim's exam
is exactly as it was. A route added later is walked too: the walk fails on any operation it has
no body for, so nobody can add a route without this test looking at it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from delivery_service.storage import models
from tests.integration.conftest import World
from tests.support import Api, Socket, add_user, sample_test

ESSAY = {"identifier": "essay", "type": "extended_text", "prompt": "Explain.", "points": 4}
SOON = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()  # its waiting room may open
VICTIM = "victim-ada-lovelace"


@dataclass
class Victim:
    user_id: str
    class_id: str
    session_id: str
    session_attempt: str
    own_attempt: str  # self-paced, submitted, with an essay in the grading queue
    test_id: str
    teacher_id: str

    def markers(self) -> list[str]:
        """What no attacker may ever read back."""
        return [VICTIM, self.user_id, self.class_id, self.session_id, self.session_attempt,
                self.own_attempt]  # fmt: skip


async def victim_with_an_exam(world: World) -> Victim:
    """A class of the teacher's with one student, its session running, the student in it; and
    a self-paced attempt of the same student, submitted with an essay waiting for a grade."""
    user_id = await add_user(world.sessions, VICTIM)
    klass = await world.teacher.post("/classes", {"name": "Class A"}, expect=201)
    await world.teacher.post(f"/classes/{klass['id']}/students", {"username": VICTIM}, 201)
    test_id = await world.new_test(title="Paper A", time_limit_seconds=3600)
    session = await world.teacher.post(
        "/sessions",
        {"class_id": klass["id"], "test_id": test_id, "title": "Sitting A", "scheduled_at": SOON},
        expect=201,
    )
    sid = session["id"]
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    victim = await Api.login(world.base_url, VICTIM)
    try:
        base = world.base_url.replace("http://", "ws://")
        ticket = await victim.ticket()
        async with Socket.open(f"{base}/api/v1/sessions/{sid}/ws?ticket={ticket}") as ws:
            await ws.until("state_sync_response")
            await world.teacher.post(f"/sessions/{sid}/start")
            started = await ws.until("session_started")
            session_attempt = str(started["data"]["attempt_id"])
            await ws.request(
                "answer_submitted", {"item_id": "q1", "response": "B", "client_seq": 1}
            )
        essay_test = await world.new_test(
            title="Essay A",
            items=[*sample_test()["items"], ESSAY],
            attempt_limit=3,
            assigned_to=[klass["id"]],
        )
        own = await victim.post("/attempts", {"test_id": essay_test}, expect=201)
        await victim.post(f"/attempts/{own['id']}/start")
        await victim.post(
            f"/attempts/{own['id']}/answers",
            {"item_id": "essay", "response": "Because.", "client_seq": 1},
        )
        await victim.post(f"/attempts/{own['id']}/submit")
    finally:
        await victim.close()
    teacher_id = (await world.teacher.get("/auth/me"))["id"]
    return Victim(str(user_id), klass["id"], sid, session_attempt, own["id"], test_id,
                  teacher_id)  # fmt: skip


# ---- the walk ---------------------------------------------------------------------------------

# Bodies that pass validation, by operation; the walk refuses an operation missing here that
# takes a body. "{…}" placeholders are filled from the victim.
BODIES: dict[str, Any] = {
    "POST /api/v1/auth/login": {"username": VICTIM, "password": "not the password at all"},
    "POST /api/v1/ws-tickets": {"attempt_id": "{attempt}"},
    "POST /api/v1/tests": sample_test(title="Attacker's own"),
    "PUT /api/v1/tests/{test_id}/lockdown": {"require_fullscreen": True},
    "PUT /api/v1/tests/{test_id}/availability": {"assigned_to": ["{class}"],
                                                 "password": "the attacker's own"},
    "POST /api/v1/items": {"identifier": "attacker-item", "prompt": "Mine?", "points": 1,
                           "choices": [{"identifier": "A", "text": "a"}], "correct": ["A"]},
    "PUT /api/v1/items/{identifier}": {"item": {"identifier": "q-none", "prompt": "x"}},
    "POST /api/v1/items/{identifier}/retire": {"reason": "attack"},
    "POST /api/v1/attempts": {"test_id": "{test}"},
    "POST /api/v1/attempts/{attempt_id}/answers": {"item_id": "q2", "response": "A",
                                                   "client_seq": 99},
    "POST /api/v1/attempts/{attempt_id}/navigate": {"to": 2},
    "POST /api/v1/attempts/{attempt_id}/flags": {"item_id": "q2", "flagged": True},
    "POST /api/v1/attempts/{attempt_id}/pause": {"reason": "attack"},
    "POST /api/v1/attempts/{attempt_id}/resume": {"reason": "attack"},
    "POST /api/v1/attempts/{attempt_id}/terminate": {"reason": "attack"},
    "POST /api/v1/attempts/{attempt_id}/extend": {"seconds": 600, "reason": "attack"},
    "POST /api/v1/grading/{attempt_id}/{item_id}": {"score": 4, "reason": "attack"},
    "POST /api/v1/classes": {"name": "Attacker's class"},
    "PUT /api/v1/classes/{class_id}": {"name": "Taken over"},
    "POST /api/v1/classes/{class_id}/students": {"username": "student2"},
    "POST /api/v1/classes/{class_id}/teachers": {"username": "teacher2"},
    "POST /api/v1/sessions": {"class_id": "{class}", "test_id": "{test}", "title": "Mine",
                              "scheduled_at": SOON},
    "POST /api/v1/sessions/{session_id}/complete": {"reason": "attack"},
    "PUT /api/v1/sessions/{session_id}/participants/{student_id}/accommodation":
        {"extra_seconds": 600, "reason": "attack"},
    "POST /api/v1/sessions/{session_id}/participants/{student_id}/extend":
        {"seconds": 600, "reason": "attack"},
    "POST /api/v1/sessions/{session_id}/participants/{student_id}/pause": {"reason": "attack"},
    "POST /api/v1/sessions/{session_id}/participants/{student_id}/resume": {"reason": "attack"},
    "POST /api/v1/sessions/{session_id}/participants/{student_id}/terminate":
        {"reason": "attack"},
    "POST /api/v1/sessions/{session_id}/notices": {"message": "hello from outside"},
    "POST /api/v1/attempts/{attempt_id}/events":
        {"events": [{"type": "tab_violation", "data": {"duration_ms": 5000}}]},
    # A CSV (sent as text/csv): rename the victim and enrol them in their own class again.
    "POST /api/v1/users/import":
        f"username,display_name,role,class\n{VICTIM},Hacked,student,Class A\n",
    "POST /api/v1/auth/password": {"current_password": "not the password at all",
                                   "new_password": "an attacker's passphrase"},
    "POST /api/v1/users": {"username": "attacker-made", "class_ids": ["{class}"]},
    "PATCH /api/v1/users/{user_id}": {"disabled": True},
    "POST /api/v1/users/{user_id}/password": {"password": "an attacker's passphrase"},
}  # fmt: skip

# Operations that are the caller's own or the school's (the item bank and tests are shared by
# all staff), so they may succeed; what they return is still scanned for the victim.
NOT_FOREIGN = {
    "POST /api/v1/auth/login", "GET /api/v1/auth/me", "POST /api/v1/ws-tickets",
    "GET /api/v1/users", "GET /api/v1/tests", "POST /api/v1/tests", "GET /api/v1/tests/{test_id}",
    "POST /api/v1/items", "GET /api/v1/items", "GET /api/v1/items/{identifier}",
    "PUT /api/v1/items/{identifier}", "POST /api/v1/items/{identifier}/retire",
    "POST /api/v1/qti/import", "GET /api/v1/tests/{test_id}/qti", "POST /api/v1/attempts",
    "POST /api/v1/users/import",
    "GET /api/v1/attempts", "GET /api/v1/grading", "GET /api/v1/tests/{test_id}/results",
    "GET /api/v1/classes", "POST /api/v1/classes", "GET /api/v1/sessions",
    "POST /api/v1/auth/password",
    "GET /api/v1/sessions/my-sessions", "GET /api/v1/integrity/review", "GET /api/v1/audit",
    "GET /healthz", "GET /readyz", "GET /metrics",
}  # fmt: skip
# OpenID Connect sign-in: public, and about nobody's data (off in this suite: 200 or 404).
NOT_FOREIGN |= {
    "GET /api/v1/auth/oidc", "GET /api/v1/auth/oidc/login", "GET /api/v1/auth/oidc/callback",
}  # fmt: skip


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, ident in ids.items():
            value = value.replace("{" + key + "}", ident)
        return value
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in openapi["paths"].items()
        for method, operation in methods.items()
    ]


def request_for(
    method: str, path: str, operation: dict[str, Any], victim: Victim, attempt_id: str
) -> tuple[str, dict[str, str], Any]:
    """The request an attacker sends: the victim's ids in the path and the query."""
    by_name = {
        "attempt_id": attempt_id,
        "session_id": victim.session_id,
        "class_id": victim.class_id,
        "student_id": victim.user_id,
        "teacher_id": victim.teacher_id,
        "test_id": victim.test_id,
        "user_id": victim.user_id,
        "item_id": "essay",
        "identifier": "q1",
        "actor_id": victim.teacher_id,
    }
    url = path
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if parameter["in"] == "path":
            url = url.replace("{" + name + "}", by_name[name])
        elif parameter["in"] == "query" and name in by_name:
            query[name] = by_name[name]
    name = f"{method} {path}"
    body = None
    if "requestBody" in operation and path != "/api/v1/qti/import":
        assert name in BODIES, f"{name} takes a body: add one to BODIES so the walk covers it"
        ids = {"attempt": attempt_id, "test": victim.test_id, "class": victim.class_id}
        body = fill(BODIES[name], ids)
    return url, query, body


async def walk(world: World, attacker: Api, victim: Victim) -> list[str]:
    """Every operation, once per victim attempt; the problems found (empty: none)."""
    openapi = (await attacker.http.get(world.base_url + "/openapi.json")).json()
    problems = []
    for attempt_id in (victim.session_attempt, victim.own_attempt):
        for method, path, operation in operations(openapi):
            url, query, body = request_for(method, path, operation, victim, attempt_id)
            payload = (
                {"content": body, "headers": {"Content-Type": "text/csv"}}
                if isinstance(body, str)
                else {"json": body}
            )
            reply = await attacker.http.request(
                method, world.base_url + url, params=query, **payload
            )
            name = f"{method} {path}"
            text = reply.text
            # An id the attacker sent, echoed in "attempt … not found", tells them nothing.
            sent = f"{url} {query} {json.dumps(body)}"
            leaked = [m for m in victim.markers() if m in text and m not in sent]
            if leaked:
                problems.append(f"{name} -> {reply.status_code} leaks {leaked}: {text[:200]}")
            if name not in NOT_FOREIGN and reply.status_code not in (403, 404):
                problems.append(f"{name} -> {reply.status_code} (not refused): {text[:200]}")
            if reply.status_code >= 500:
                problems.append(f"{name} -> {reply.status_code}: {text[:200]}")
    return problems


async def snapshot(world: World, victim: Victim) -> dict[str, Any]:
    """The victim's exam as the database holds it."""
    async with world.sessions() as s:
        attempts = {
            str(a.id): (a.state, a.deadline, a.extra_seconds, a.version, a.score, a.paused_at)
            for a in await s.scalars(
                select(models.Attempt).where(models.Attempt.user_id == uuid.UUID(victim.user_id))
            )
        }
        session = await s.get(models.GroupSession, uuid.UUID(victim.session_id))
        roster = set(
            await s.scalars(
                select(models.ClassStudent.user_id).where(
                    models.ClassStudent.class_id == uuid.UUID(victim.class_id)
                )
            )
        )
        test = await s.get(models.Test, uuid.UUID(victim.test_id))
        user = await s.get(models.User, uuid.UUID(victim.user_id))
    assert session is not None
    assert test is not None
    assert user is not None
    availability = (test.assigned_to, test.opens_at, test.closes_at, test.allowed_networks,
                    test.access_password_hash)  # fmt: skip
    return {"attempts": attempts, "session": (session.state, session.version),
            "roster": roster, "lockdown": test.lockdown, "availability": availability,
            "account": (user.display_name, user.password_hash, user.role, user.disabled,
                        user.token_version, user.must_change_password)}  # fmt: skip


async def test_a_teacher_of_another_class_gets_nothing_of_its_exams(world: World) -> None:
    victim = await victim_with_an_exam(world)
    before = await snapshot(world, victim)
    assert await walk(world, world.teacher2, victim) == []
    assert await snapshot(world, victim) == before


async def test_a_student_of_another_class_gets_nothing_of_its_exams(world: World) -> None:
    victim = await victim_with_an_exam(world)
    before = await snapshot(world, victim)
    assert await walk(world, world.other, victim) == []
    assert await snapshot(world, victim) == before


async def test_the_victims_own_teacher_is_not_refused_by_the_same_walk(world: World) -> None:
    """The walk refuses for the right reason: the class's teacher reads the same objects."""
    victim = await victim_with_an_exam(world)
    for path in (f"/attempts/{victim.session_attempt}", f"/attempts/{victim.own_attempt}",
                 f"/attempts/{victim.own_attempt}/integrity",
                 f"/sessions/{victim.session_id}/participants"):  # fmt: skip
        assert victim.user_id in str(await world.teacher.get(path)), path
    for path in (f"/attempts?user_id={victim.user_id}", "/grading",
                 f"/tests/{victim.test_id}/results"):  # fmt: skip
        assert victim.user_id in str(await world.teacher.get(path)), path


async def test_the_sockets_of_another_class_are_closed_to_outsiders(world: World) -> None:
    victim = await victim_with_an_exam(world)
    base = world.base_url.replace("http://", "ws://")
    cases = [
        (world.teacher2, f"/api/v1/sessions/{victim.session_id}/ws", 4403),
        (world.other, f"/api/v1/sessions/{victim.session_id}/ws", 4404),
        (world.teacher2, f"/api/v1/attempts/{victim.session_attempt}/ws", 4403),
        (world.other, f"/api/v1/attempts/{victim.session_attempt}/ws", 4404),
        (world.other, f"/api/v1/attempts/{victim.own_attempt}/ws", 4404),
    ]
    for api, path, code in cases:
        async with Socket.open(f"{base}{path}?ticket={await api.ticket()}") as ws:
            message = await ws.receive()
            assert message["type"] == "error", path
            assert not [m for m in victim.markers() if m in str(message) and m not in path]
            try:
                await ws.receive(timeout=5)
            except ConnectionClosed:
                pass
            assert ws.connection.close_code == code, path
