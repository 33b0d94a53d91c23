"""Who may take a test self-paced, and when (issue 19), on both deployments: the audience, the
window, proctored sessions' papers, the access password, the allowed networks, and the
waiting room's lead time before a scheduled session."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from delivery_service.settings import Settings
from delivery_service.storage.models import LedgerEvent
from tests.integration.conftest import World
from tests.support import HOMEROOM_ID, Api, Socket

HOMEROOM = str(HOMEROOM_ID)


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    """A small guess limit for the access-password throttle."""
    return settings.model_copy(update={"access_password_max_failures": 3})


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def attempt_refused(api: Api, test_id: str, status: int, **body: Any) -> dict[str, Any]:
    reply = await api.post("/attempts", {"test_id": test_id, **body}, expect=status)
    return dict(reply["error"])


async def class_of(world: World, name: str, *students: str) -> str:
    klass = await world.teacher.post("/classes", {"name": name}, expect=201)
    for username in students:
        await world.teacher.post(f"/classes/{klass['id']}/students", {"username": username}, 201)
    return str(klass["id"])


async def titles(api: Api) -> set[str]:
    return {t["title"] for t in await api.get("/tests")}


# ---- the audience -------------------------------------------------------------------------------


async def test_a_student_sees_and_takes_only_tests_assigned_to_their_classes(world: World) -> None:
    elsewhere = await class_of(world, "Elsewhere", "student3")
    mine = await world.new_test(title="Mine")
    theirs = await world.new_test(title="Theirs", assigned_to=[elsewhere])
    staff_only = await world.new_test(title="Staff only", assigned_to=[])

    assert await titles(world.student) == {"Mine"}
    assert await titles(world.teacher) >= {"Mine", "Theirs", "Staff only"}
    shown = await world.student.get(f"/tests/{mine}")
    assert shown["assigned_to"] == [HOMEROOM]
    assert shown["window"] == "open"
    assert shown["allowed_networks"] is None  # staff only
    for hidden in (theirs, staff_only):
        missing = await world.student.get(f"/tests/{hidden}", expect=404)
        assert missing["error"]["code"] == "test_not_found"
        assert (await attempt_refused(world.student, hidden, 404))["code"] == "test_not_found"
    # A student of another class sees theirs, and of its audience only their own class.
    student3 = await Api.login(world.base_url, "student3")
    try:
        assert await titles(student3) == {"Mine", "Theirs"}
        assert (await student3.get(f"/tests/{theirs}"))["assigned_to"] == [elsewhere]
        assert (await student3.get(f"/tests/{mine}"))["assigned_to"] == [HOMEROOM]
        await student3.post("/attempts", {"test_id": theirs}, expect=201)
    finally:
        await student3.close()
    await world.student.post("/attempts", {"test_id": mine}, expect=201)
    # Staff may still open a preview of any test.
    await world.teacher.post("/attempts", {"test_id": staff_only}, expect=201)


async def test_an_archived_class_no_longer_gives_its_students_the_test(world: World) -> None:
    archived = await class_of(world, "Last year", "student3")
    test_id = await world.new_test(title="Last year's", assigned_to=[archived])
    await world.teacher.http.delete(f"/classes/{archived}")
    student3 = await Api.login(world.base_url, "student3")
    try:
        assert "Last year's" not in await titles(student3)
        assert (await attempt_refused(student3, test_id, 404))["code"] == "test_not_found"
    finally:
        await student3.close()


# ---- the window ---------------------------------------------------------------------------------


async def test_an_upcoming_test_is_listed_with_its_opening_time_and_refused_until_then(
    world: World,
) -> None:
    opens = datetime.now(UTC) + timedelta(hours=2)
    test_id = await world.new_test(title="Later", opens_at=opens.isoformat())
    (listed,) = [t for t in await world.student.get("/tests") if t["id"] == test_id]
    assert listed["window"] == "upcoming"
    assert datetime.fromisoformat(listed["opens_at"]) == opens.replace(
        microsecond=opens.microsecond // 1000 * 1000
    )
    refused = await attempt_refused(world.student, test_id, 409)
    assert refused["code"] == "test_not_open"
    assert refused["details"]["opens_at"] == listed["opens_at"]


async def test_a_closed_test_is_not_listed_and_refused(world: World) -> None:
    test_id = await world.new_test(
        title="Over", opens_at=at(-timedelta(hours=2)), closes_at=at(-timedelta(hours=1))
    )
    assert "Over" not in await titles(world.student)
    assert (await world.student.get(f"/tests/{test_id}"))["window"] == "closed"
    assert (await attempt_refused(world.student, test_id, 409))["code"] == "test_closed"


async def test_an_attempt_ends_when_the_window_closes_whatever_its_time_limit(
    world: World,
) -> None:
    closes = datetime.now(UTC) + timedelta(seconds=3)
    test_id = await world.new_test(time_limit_seconds=600, closes_at=closes.isoformat())
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    aid = attempt["id"]
    started = await world.student.post(f"/attempts/{aid}/start")
    deadline = datetime.fromisoformat(started["timer"]["deadline"])
    assert abs((deadline - closes).total_seconds()) < 0.002  # the window's end, not 10 minutes
    await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q1", "response": "B", "client_seq": 1}
    )
    async with asyncio.timeout(15):
        while (await world.student.get(f"/attempts/{aid}"))["state"] != "expired":
            await asyncio.sleep(0.2)
    late = await world.student.post(
        f"/attempts/{aid}/answers", {"item_id": "q2", "response": "B", "client_seq": 2}, 409
    )
    assert late["error"]["code"] == "deadline_passed"
    review = await world.teacher.get(f"/attempts/{aid}")
    assert review["score"] == 1.0  # the saved answer was scored, as at any deadline


async def test_an_attempt_created_in_the_window_cannot_start_after_it_closed(
    world: World,
) -> None:
    test_id = await world.new_test()
    attempt = await world.student.post("/attempts", {"test_id": test_id}, expect=201)
    await world.teacher.put(
        f"/tests/{test_id}/availability",
        {"assigned_to": [HOMEROOM], "closes_at": at(-timedelta(minutes=1))},
    )
    refused = await world.student.post(f"/attempts/{attempt['id']}/start", expect=409)
    assert refused["error"]["code"] == "test_closed"


# ---- proctored sessions' papers ----------------------------------------------------------------


async def test_a_completed_sessions_paper_is_never_self_paced_not_even_to_who_never_joined(
    world: World,
) -> None:
    klass = await class_of(world, "Beacon 31", "student1", "student2")
    paper = await world.new_test(title="Paper")  # assigned to Homeroom as well
    session = await world.teacher.post(
        "/sessions",
        {"class_id": klass, "test_id": paper, "title": "Mock", "scheduled_at": at(timedelta())},
        expect=201,
    )
    sid = session["id"]
    assert "Paper" not in await titles(world.student)  # scheduled: already a session's paper
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    ticket = await world.student.ticket()
    base = world.base_url.replace("http://", "ws://")
    async with Socket.open(f"{base}/api/v1/sessions/{sid}/ws?ticket={ticket}") as ws:
        await ws.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        await ws.until("session_started")
    await world.teacher.post(f"/sessions/{sid}/complete", {"reason": "done"})
    assert (await world.teacher.get(f"/sessions/{sid}"))["state"] == "completed"
    assert (await world.teacher.get(f"/tests/{paper}"))["reserved_for_session"] is True

    # student1 sat it; student2, of the same class, never joined: neither takes it alone now.
    for api in (world.student, world.other):
        assert "Paper" not in await titles(api)
        refused = await attempt_refused(api, paper, 409)
        assert refused["code"] == "reserved_for_session"
        assert refused["details"] == {"session_id": sid}
    # A student of the audience outside the session's class is refused without its id.
    student3 = await Api.login(world.base_url, "student3")
    try:
        refused = await attempt_refused(student3, paper, 409)
        assert (refused["code"], refused.get("details")) == ("reserved_for_session", None)
    finally:
        await student3.close()


# ---- the access password -----------------------------------------------------------------------


async def test_a_password_protected_test_needs_its_password_and_throttles_guesses(
    world: World,
) -> None:
    test_id = await world.new_test(password="plum tree 42")
    shown = await world.student.get(f"/tests/{test_id}")
    assert shown["password_required"] is True
    assert "password" not in shown
    assert "plum" not in str(shown)
    assert (await attempt_refused(world.student, test_id, 403))["code"] == "password_required"
    for _ in range(3):  # the limit in this module's settings
        wrong = await attempt_refused(world.student, test_id, 403, password="guess")
        assert wrong["code"] == "password_incorrect"
    reply = await world.student.http.post(
        "/attempts", json={"test_id": test_id, "password": "plum tree 42"}
    )
    assert reply.status_code == 429, reply.text  # counted before it is checked: even the right one
    assert reply.json()["error"]["code"] == "too_many_attempts"
    assert int(reply.headers["retry-after"]) > 0
    # Another student's guesses are their own.
    created = await world.other.post(
        "/attempts", {"test_id": test_id, "password": "plum tree 42"}, expect=201
    )
    # Once in, a retried create returns the attempt without asking again.
    again = await world.other.post("/attempts", {"test_id": test_id}, expect=200)
    assert again["id"] == created["id"]


async def test_the_author_sets_keeps_and_clears_the_password(world: World) -> None:
    test_id = await world.new_test()
    path = f"/tests/{test_id}/availability"
    body: dict[str, Any] = {"assigned_to": [HOMEROOM]}
    assert (await world.teacher.put(path, body | {"password": "secret one"}))["password_required"]
    assert (await world.teacher.put(path, body))["password_required"]  # omitted: kept
    wrong = await attempt_refused(world.student, test_id, 403, password="secret two")
    assert wrong["code"] == "password_incorrect"
    await world.student.post(
        "/attempts", {"test_id": test_id, "password": "secret one"}, expect=201
    )
    assert not (await world.teacher.put(path, body | {"password": None}))["password_required"]
    await world.other.post("/attempts", {"test_id": test_id}, expect=201)


# ---- networks -----------------------------------------------------------------------------------


async def test_allowed_networks_guard_every_attempt_request_behind_the_trusted_proxy(
    world: World,
) -> None:
    exam_room = "10.99.0.0/16"
    test_id = await world.new_test(allowed_networks=["10.99.1.2/16"])
    assert (await world.teacher.get(f"/tests/{test_id}"))["allowed_networks"] == [exam_room]
    refused = await attempt_refused(world.student, test_id, 403)
    assert refused["code"] == "network_not_allowed"
    # Through the proxy the server trusts (127.0.0.1), the candidate's own address counts.
    inside = {"X-Forwarded-For": "10.99.7.7"}
    created = await world.student.http.post("/attempts", json={"test_id": test_id}, headers=inside)
    assert created.status_code == 201, created.text
    aid = created.json()["id"]
    assert (await world.student.http.post(f"/attempts/{aid}/start", headers=inside)).is_success
    answer = {"item_id": "q1", "response": "B", "client_seq": 1}
    saved = await world.student.http.post(f"/attempts/{aid}/answers", json=answer, headers=inside)
    assert saved.is_success, saved.text

    # From anywhere else, every request about the attempt is refused; staff are not held to it.
    for method, path, body in (("GET", "", None), ("GET", "/current", None),
                               ("POST", "/answers", answer | {"client_seq": 2})):  # fmt: skip
        reply = await world.student.http.request(method, f"/attempts/{aid}{path}", json=body)
        assert reply.status_code == 403, reply.text
        assert reply.json()["error"]["code"] == "network_not_allowed"
    assert (await world.teacher.get(f"/attempts/{aid}"))["state"] == "in_progress"

    # The socket's handshake likewise (its address: the peer's, 127.0.0.1 here).
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        error = await ws.receive()
        assert error["type"] == "error"
        assert error["data"]["code"] == "network_not_allowed"
        with pytest.raises(ConnectionClosed):
            await ws.receive(timeout=5)
        assert ws.connection.close_code == 4403
    async with Socket.open(
        world.student.ws_url(aid, ticket=await world.student.ticket()),
        additional_headers=inside,
    ) as ws:
        assert (await ws.until("attempt_state"))["data"]["id"] == aid

    async with world.sessions() as s:
        refusals = list(
            await s.scalars(select(LedgerEvent).where(LedgerEvent.type == "network_refused"))
        )
    assert len(refusals) == 4  # three REST requests and the socket, on the attempt's chain
    assert {r.chain for r in refusals} == {f"attempt:{aid}"}
    assert {r.payload["client"] for r in refusals} == {"127.0.0.1"}


async def test_a_session_paper_with_allowed_networks_admits_its_students_only_from_them(
    world: World,
) -> None:
    klass = await class_of(world, "Beacon 31", "student1")
    paper = await world.new_test(assigned_to=[], allowed_networks=["10.99.0.0/16"])
    session = await world.teacher.post(
        "/sessions",
        {"class_id": klass, "test_id": paper, "title": "Room 4", "scheduled_at": at(timedelta())},
        expect=201,
    )
    sid = session["id"]
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    url = world.base_url.replace("http://", "ws://") + f"/api/v1/sessions/{sid}/ws?ticket="
    async with Socket.open(url + await world.student.ticket()) as ws:
        error = await ws.receive()
        assert error["data"]["code"] == "network_not_allowed"
        with pytest.raises(ConnectionClosed):
            await ws.receive(timeout=5)
        assert ws.connection.close_code == 4403
    grid = await world.teacher.get(f"/sessions/{sid}/participants")
    assert grid[0]["joined_at"] is None  # refused before joining
    inside = {"X-Forwarded-For": "10.99.0.12"}
    async with Socket.open(url + await world.student.ticket(), additional_headers=inside) as ws:
        await ws.until("state_sync_response")
    # The proctor is staff: not held to the candidates' networks.
    async with Socket.open(url + await world.teacher.ticket()) as ws:
        await ws.until("state_sync_response")


async def test_an_untrusted_proxys_forwarded_address_is_ignored(
    world: World, settings: Settings
) -> None:
    # This world's server trusts 127.0.0.1; one that trusts another proxy must not read
    # X-Forwarded-For from here.
    from delivery_service.embedded import running_server

    test_id = await world.new_test(allowed_networks=["10.99.0.0/16"])
    untrusting = settings.model_copy(update={"forwarded_allow_ips": "192.0.2.1"})
    async with running_server(untrusting) as served:
        student = await Api.login(served.url, "student1")
        try:
            reply = await student.http.post(
                "/attempts", json={"test_id": test_id}, headers={"X-Forwarded-For": "10.99.7.7"}
            )
        finally:
            await student.close()
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "network_not_allowed"


# ---- authoring ----------------------------------------------------------------------------------


async def test_only_the_author_or_an_admin_changes_availability_and_it_is_on_the_ledger(
    world: World,
) -> None:
    test_id = await world.new_test()
    path = f"/tests/{test_id}/availability"
    theirs = await world.teacher2.post("/classes", {"name": "Teacher 2's"}, expect=201)
    refused = await world.teacher2.put(path, {"assigned_to": [theirs["id"]]}, expect=403)
    assert refused["error"]["code"] == "forbidden"
    assert (await world.student.put(path, {}, expect=403))["error"]["code"] == "forbidden"
    # The author may only add classes they teach.
    refused = await world.teacher.put(path, {"assigned_to": [theirs["id"]]}, expect=403)
    assert refused["error"]["code"] == "forbidden"
    both = [HOMEROOM, theirs["id"]]
    assert (await world.admin.put(path, {"assigned_to": both}))["assigned_to"] == both
    # Of the audience a teacher sees, and replaces, only the classes they teach: what an admin
    # gave another class stays.
    assert (await world.teacher.get(f"/tests/{test_id}"))["assigned_to"] == [HOMEROOM]
    window = {"opens_at": "2026-01-05T09:00:00+01:00", "closes_at": "2026-01-05T10:00:00Z"}
    changed = await world.teacher.put(
        path, {"assigned_to": [HOMEROOM], **window, "allowed_networks": ["2001:DB8::/48"]}
    )
    assert changed["assigned_to"] == [HOMEROOM]
    assert sorted((await world.admin.get(f"/tests/{test_id}"))["assigned_to"]) == sorted(both)
    # Removing the teacher's own class leaves the admin's.
    emptied = await world.teacher.put(path, {"assigned_to": []})
    assert emptied["assigned_to"] == []
    assert (await world.admin.get(f"/tests/{test_id}"))["assigned_to"] == [theirs["id"]]
    changed = await world.teacher.put(
        path, {"assigned_to": [HOMEROOM], **window, "allowed_networks": ["2001:DB8::/48"]}
    )
    assert (changed["opens_at"], changed["closes_at"]) == (
        "2026-01-05T08:00:00.000Z",
        "2026-01-05T10:00:00.000Z",
    )
    assert changed["allowed_networks"] == ["2001:db8::/48"]
    missing = await world.admin.put(
        path, {"assigned_to": ["00000000-0000-4000-8000-000000000000"]}, expect=404
    )
    assert missing["error"]["code"] == "class_not_found"
    for bad in (
        {"opens_at": "2026-01-05T10:00:00Z", "closes_at": "2026-01-05T10:00:00Z"},
        {"opens_at": "2026-01-05T10:00:00"},  # no offset
        {"allowed_networks": ["the exam room"]},
        {"password": ""},
    ):
        invalid = await world.teacher.put(path, bad, expect=422)
        assert invalid["error"]["code"] == "validation_error", bad
    async with world.sessions() as s:
        changes = list(
            await s.scalars(
                select(LedgerEvent)
                .where(LedgerEvent.type == "availability_changed")
                .order_by(LedgerEvent.id)
            )
        )
    assert [c.chain for c in changes] == [f"test:{test_id}"] * 4
    assert changes[-1].payload["after"]["allowed_networks"] == ["2001:db8::/48"]
    assert changes[-1].payload["password"] == "kept"
    assert all(c.source == "staff" for c in changes)


async def test_a_test_is_created_only_for_classes_its_author_teaches(world: World) -> None:
    theirs = await world.teacher2.post("/classes", {"name": "Teacher 2's"}, expect=201)
    refused = await world.teacher.post(
        "/tests", {**_minimal(), "assigned_to": [theirs["id"]]}, expect=403
    )
    assert refused["error"]["code"] == "forbidden"
    created = await world.admin.post(
        "/tests", {**_minimal(), "assigned_to": [theirs["id"]]}, expect=201
    )
    assert created["assigned_to"] == [theirs["id"]]


def _minimal() -> dict[str, Any]:
    choices = [{"identifier": "A", "text": "a"}, {"identifier": "B", "text": "b"}]
    item = {"identifier": "q1", "prompt": "?", "choices": choices, "correct": ["A"]}
    return {"title": "Minimal", "time_limit_seconds": 60, "items": [item]}


# ---- scheduled sessions -------------------------------------------------------------------------


async def test_a_waiting_room_opens_no_sooner_than_its_lead_time(world: World) -> None:
    klass = await class_of(world, "Beacon 31", "student1")
    paper = await world.new_test(assigned_to=[])
    scheduled = datetime.now(UTC) + timedelta(hours=2)
    session = await world.teacher.post(
        "/sessions",
        {
            "class_id": klass,
            "test_id": paper,
            "title": "Later",
            "scheduled_at": scheduled.isoformat(),
        },
        expect=201,
    )
    refused = await world.teacher.post(f"/sessions/{session['id']}/start-waiting", expect=409)
    assert refused["error"]["code"] == "session_not_open_yet"
    opens = datetime.fromisoformat(refused["error"]["details"]["opens_at"])
    assert abs((scheduled - timedelta(minutes=30) - opens).total_seconds()) < 0.002
    assert (await world.teacher.get(f"/sessions/{session['id']}"))["state"] == "scheduled"
    soon = await world.teacher.post(
        "/sessions",
        {
            "class_id": klass,
            "test_id": paper,
            "title": "Soon",
            "scheduled_at": at(timedelta(minutes=29)),
        },
        expect=201,
    )
    opened = await world.teacher.post(f"/sessions/{soon['id']}/start-waiting")
    assert opened["state"] == "waiting"
