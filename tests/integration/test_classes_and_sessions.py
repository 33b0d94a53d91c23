"""Classes and proctored sessions on both deployments: rules, permissions, the live flow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed, InvalidStatus

from delivery_service.storage.models import LedgerEvent
from integrity.events import CANDIDATE_KINDS as SENSORS
from tests.integration.conftest import World
from tests.support import Api, Socket

# Within the waiting room's lead time (30 minutes before), so it may open at once.
SOON = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()


async def beacon(world: World, *students: str) -> dict[str, Any]:
    klass = await world.teacher.post(
        "/classes", {"name": "Beacon 31", "description": "Monday evening"}, expect=201
    )
    for username in students:
        klass = await world.teacher.post(
            f"/classes/{klass['id']}/students", {"username": username}, expect=201
        )
    return dict(klass)


async def scheduled(world: World, *students: str, **test: object) -> tuple[str, str]:
    klass = await beacon(world, *students)
    test_id = await world.new_test(**test)
    session = await world.teacher.post(
        "/sessions",
        {"class_id": klass["id"], "test_id": test_id, "title": "Mock IELTS", "scheduled_at": SOON},
        expect=201,
    )
    return str(klass["id"]), str(session["id"])


async def session_socket(api: Api, session_id: str, **query: str) -> Any:
    ticket = await api.ticket()
    base = api.base_url.replace("http://", "ws://")
    suffix = "&".join(f"{k}={v}" for k, v in ({"ticket": ticket} | query).items())
    return Socket.open(f"{base}/api/v1/sessions/{session_id}/ws?{suffix}")


# ---- classes -----------------------------------------------------------------------------------


async def test_a_teacher_runs_a_class(world: World) -> None:
    klass = await beacon(world, "student1", "student2")
    assert [t["username"] for t in klass["teachers"]] == ["teacher"]
    assert [s["username"] for s in klass["students"]] == ["student1", "student2"]
    cid = klass["id"]

    again = await world.teacher.post(
        f"/classes/{cid}/students", {"username": "student1"}, expect=409
    )
    assert again["error"]["code"] == "already_enrolled"
    wrong = await world.teacher.post(
        f"/classes/{cid}/students", {"username": "teacher2"}, expect=409
    )
    assert wrong["error"]["code"] == "not_a_student"
    ghost = await world.teacher.post(f"/classes/{cid}/students", {"username": "nobody"}, expect=404)
    assert ghost["error"]["code"] == "student_not_found"

    student2 = next(s for s in klass["students"] if s["username"] == "student2")
    await world.teacher.http.delete(f"/classes/{cid}/students/{student2['id']}")
    gone = await world.teacher.http.delete(f"/classes/{cid}/students/{student2['id']}")
    assert gone.json()["error"]["code"] == "enrollment_not_found"

    renamed = await world.teacher.http.put(f"/classes/{cid}", json={"name": "Beacon 32"})
    assert renamed.json()["name"] == "Beacon 32"
    both = await world.teacher.post(
        f"/classes/{cid}/teachers", {"username": "teacher2"}, expect=201
    )
    assert [t["username"] for t in both["teachers"]] == ["teacher", "teacher2"]
    assert (await world.teacher2.get(f"/classes/{cid}"))["name"] == "Beacon 32"

    assert cid in [c["id"] for c in await world.student.get("/classes")]
    await world.other.get(f"/classes/{cid}", expect=404)


async def test_a_class_cannot_be_archived_while_its_session_runs(world: World) -> None:
    cid, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as ws:
        await ws.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        refused = await world.teacher.http.delete(f"/classes/{cid}")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "session_in_progress"
    await world.teacher.post(f"/sessions/{sid}/complete", {"reason": "test"})
    archived = await world.teacher.http.delete(f"/classes/{cid}")
    assert archived.json()["state"] == "archived"
    closed = await world.teacher.post(
        f"/classes/{cid}/students", {"username": "student2"}, expect=409
    )
    assert closed["error"]["code"] == "class_archived"


# ---- permissions -------------------------------------------------------------------------------


async def test_only_the_classs_teachers_or_an_admin_manage_it(world: World) -> None:
    cid, sid = await scheduled(world, "student1")
    for path, body in [
        (f"/classes/{cid}/students", {"username": "student2"}),
        (f"/sessions/{sid}/start-waiting", None),
        (f"/sessions/{sid}/start", None),
        (f"/sessions/{sid}/complete", None),
        (f"/sessions/{sid}/cancel", None),
        (f"/sessions/{sid}/notices", {"message": "hello"}),
    ]:
        refused = await world.teacher2.post(path, body, expect=403)
        assert refused["error"]["code"] == "forbidden", path
        as_student = await world.student.post(path, body, expect=None)
        assert as_student["error"]["code"] == "forbidden", path
    for path in (
        f"/sessions/{sid}/stats",
        f"/sessions/{sid}/participants",
        f"/sessions/{sid}/audit",
    ):
        assert (await world.teacher2.get(path, expect=403))["error"]["code"] == "forbidden"
        assert (await world.student.get(path, expect=403))["error"]["code"] == "forbidden"
    hidden = await world.teacher2.post(
        "/sessions",
        {"class_id": cid, "test_id": await world.new_test(), "title": "x", "scheduled_at": SOON},
        expect=403,
    )
    assert hidden["error"]["code"] == "forbidden"
    await world.other.get(f"/sessions/{sid}", expect=404)  # a student of no class of it
    assert (await world.admin.post(f"/sessions/{sid}/start-waiting"))["state"] == "waiting"


async def test_requests_without_or_with_an_expired_token_are_refused(world: World) -> None:
    from delivery_service.domain.principal import Principal
    from delivery_service.security.tokens import TokenService

    _, sid = await scheduled(world, "student1")
    me = await world.student.get("/auth/me")
    tokens = TokenService(
        secret=world.settings.jwt_secret, issuer="examserver", audience="examserver",
        ttl_seconds=60,
    )  # fmt: skip
    expired = tokens.issue(
        Principal(me["id"], "student1", "student"), now=datetime.now(UTC) - timedelta(hours=1)
    )
    for token in (None, expired):
        api = Api(world.base_url, token or "")
        if token is None:
            api.http.headers.pop("Authorization")
        for path in (f"/sessions/{sid}", "/sessions/my-sessions", "/classes"):
            refused = await api.get(path, expect=401)
            assert refused["error"]["code"] == "unauthorized"
        await api.close()


async def test_a_student_of_another_class_cannot_open_the_session_socket(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    async with await session_socket(world.other, sid) as ws:
        error = await ws.until("error")
        assert error["data"]["code"] == "session_not_found"
        with pytest.raises(ConnectionClosed):
            await ws.receive(timeout=5)
        assert ws.connection.close_code == 4404
    ticket = await world.student.post("/ws-tickets", {"session_id": sid}, expect=201)
    base = world.base_url.replace("http://", "ws://")
    other_sid = (await scheduled(world))[1]
    url = f"{base}/api/v1/sessions/{other_sid}/ws?ticket={ticket['ticket']}"
    with pytest.raises(InvalidStatus):  # a ticket bound to another session
        await Socket.open(url).__aenter__()


# ---- the session's life --------------------------------------------------------------------------


async def test_the_session_state_machine(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    early = await world.teacher.post(f"/sessions/{sid}/start", expect=409)
    assert early["error"]["code"] == "invalid_transition"
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    empty = await world.teacher.post(f"/sessions/{sid}/start", expect=409)
    assert empty["error"]["code"] == "no_students_connected"
    cancelled = await world.teacher.post(f"/sessions/{sid}/cancel")
    assert cancelled["state"] == "cancelled"
    again = await world.teacher.post(f"/sessions/{sid}/start-waiting", expect=409)
    assert again["error"]["code"] == "invalid_transition"
    refused = await world.teacher.http.delete(f"/sessions/{sid}")
    assert refused.status_code == 403
    assert (await world.admin.http.delete(f"/sessions/{sid}")).status_code == 204
    await world.teacher.get(f"/sessions/{sid}", expect=404)


async def test_a_running_session_cannot_be_deleted(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as ws:
        await ws.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        refused = await world.admin.http.delete(f"/sessions/{sid}")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "session_in_progress"


async def test_the_proctor_sees_each_notice_once(world: World) -> None:
    """A notice to everyone goes out on the session channel, which the proctors hear too; only
    one to a single student needs the proctor feed, or the console would list it twice."""
    _, sid = await scheduled(world, "student1")
    me = (await world.student.get("/auth/me"))["id"]
    async with await session_socket(world.teacher, sid) as proctor:
        await proctor.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/notices", {"message": "all"}, expect=201)
        await world.teacher.post(
            f"/sessions/{sid}/notices", {"message": "one", "student_id": me}, expect=201
        )
        await world.teacher.post(f"/sessions/{sid}/notices", {"message": "last"}, expect=201)
        messages = []
        while not messages or messages[-1] != "last":
            messages.append((await proctor.until("notice"))["data"]["message"])
        assert messages == ["all", "one", "last"]


async def test_the_proctor_sees_the_session_live(world: World) -> None:
    _, sid = await scheduled(world, "student1", "student2")
    async with await session_socket(world.teacher, sid) as proctor:
        hello = await proctor.until("connected")
        assert hello["data"]["role"] == "proctor"
        grid = (await proctor.until("state_sync_response"))["data"]["participants"]
        assert [(r["student"]["username"], r["connected"]) for r in grid] == [
            ("student1", False),
            ("student2", False),
        ]
        await world.teacher.post(f"/sessions/{sid}/start-waiting")
        assert (await proctor.until("waiting_room_opened"))["data"]["session_id"] == sid

        async with await session_socket(world.student, sid) as student:
            assert (await student.until("connected"))["data"]["role"] == "student"
            sync = await student.until("state_sync_response")
            assert (sync["data"]["session"]["state"], sync["data"]["attempt"]) == ("waiting", None)
            joined = await proctor.until("participant_joined")
            assert (joined["data"]["username"], joined["data"]["connected_count"]) == (
                "student1",
                1,
            )

            await world.teacher.post(f"/sessions/{sid}/start")
            started = await student.until("session_started")
            attempt_id = started["data"]["attempt_id"]
            assert attempt_id
            assert "assignments" not in started["data"]
            seen = await proctor.until("session_started")
            assert list(seen["data"]["assignments"]) == [joined["data"]["student_id"]]

            ack = await student.request(
                "answer_submitted", {"question_id": "q1", "answer": "B", "client_seq": 1}
            )
            assert (ack["type"], ack["data"]["applied"]) == ("answer_feedback", True)
            answered = await proctor.until("answer_submitted")
            assert answered["data"] | {"at": None} == answered["data"] | {
                "item_id": "q1", "response": ["B"], "answered": 1, "at": None,
            }  # fmt: skip

            recorded = await student.request(
                "tab_violation", {"violation_type": "tab_switch", "duration_ms": 4200}
            )
            assert recorded["type"] == "event_recorded"
            violation = await proctor.until("tab_violation")
            assert (violation["data"]["duration_ms"], violation["data"]["count"]) == (4200, 1)

            await student.request(
                "text_highlighted",
                {
                    "text": "the Treaty of",
                    "passage_id": "q2",
                    "position_start": 4,
                    "position_end": 17,
                },
            )
            highlight = await proctor.until("text_highlighted")
            assert highlight["data"] | {"at": None} == highlight["data"] | {
                "text": "the Treaty of", "item_id": "q2", "position_start": 4,
                "position_end": 17, "at": None,
            }  # fmt: skip

            moved = await student.request("progress_update", {"position": 2})
            assert (moved["type"], moved["data"]["position"]) == ("question", 2)
            assert (await proctor.until("progress_update"))["data"]["position"] == 2

        left = await proctor.until("participant_disconnected")
        assert left["data"]["connected_count"] == 0

    async with world.sessions() as s:
        events = [
            (e.type, e.attempt_id is not None)
            for e in await s.scalars(select(LedgerEvent).where(LedgerEvent.type.in_(SENSORS)))
        ]
    assert sorted(events) == [("tab_violation", True), ("text_highlighted", True)]
    grid = await world.teacher.get(f"/sessions/{sid}/participants")
    me = next(r for r in grid if r["student"]["username"] == "student1")
    assert {k: me[k] for k in ("attempt_id", "state", "position", "answered")} == {
        "attempt_id": attempt_id, "state": "in_progress", "position": 2, "answered": 1,
    }  # fmt: skip
    assert {k: me[k] for k in ("violations", "highlights", "connected")} == {
        "violations": 1, "highlights": 1, "connected": False,
    }  # fmt: skip
    assert me["last_activity"] is not None
    timeline = await world.teacher.get(
        f"/sessions/{sid}/participants/{me['student']['id']}/timeline"
    )
    assert [t["type"] for t in timeline if t["kind"] in ("answer", "event")] == [
        "answer_saved",
        "tab_violation",
        "text_highlighted",
    ]
    server = [t["type"] for t in timeline if t["kind"] == "server"]
    assert server[:3] == ["connection_opened", "attempt_created", "attempt_started"]


async def test_a_late_joiner_gets_less_time_but_keeps_their_accommodation(world: World) -> None:
    _, sid = await scheduled(world, "student1", "student2", "student3")
    klass = (await world.teacher.get(f"/sessions/{sid}"))["class_id"]
    students = {
        s["username"]: s["id"] for s in (await world.teacher.get(f"/classes/{klass}"))["students"]
    }
    row = await world.teacher.http.put(
        f"/sessions/{sid}/participants/{students['student2']}/accommodation",
        json={"time_multiplier": 1.5, "extra_seconds": 60, "reason": "documented need"},
    )
    assert (row.json()["time_multiplier"], row.json()["extra_seconds"]) == (1.5, 60)
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as first:
        await first.until("state_sync_response")
        session = await world.teacher.post(f"/sessions/{sid}/start")
        started_at = datetime.fromisoformat(session["started_at"])
        on_time = (await first.until("session_started"))["data"]
        assert on_time["deadline"] == session["ends_at"]
        async with await session_socket(world.other, sid) as late:
            attempt = (await late.until("state_sync_response"))["data"]["attempt"]
            deadline = datetime.fromisoformat(attempt["timer"]["deadline"])
            assert deadline == started_at + timedelta(seconds=600 * 1.5 + 60)
            started = datetime.fromisoformat(attempt["started_at"])
            assert started > started_at, "a late joiner starts later and so has less time"


async def test_proctor_actions_reach_the_student_and_are_audited(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as ws:
        await ws.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        start = (await ws.until("session_started"))["data"]
        me = (await world.student.get("/auth/me"))["id"]
        base = f"/sessions/{sid}/participants/{me}"

        timer = await world.teacher.post(f"{base}/extend", {"seconds": 120, "reason": "fire alarm"})
        event = await ws.until("timer")
        assert event["data"]["timer"]["deadline"] == timer["deadline"]
        moved = datetime.fromisoformat(timer["deadline"]) - datetime.fromisoformat(
            start["deadline"]
        )
        assert moved == timedelta(seconds=120)

        await world.teacher.post(
            f"/sessions/{sid}/notices",
            {"message": "Ten minutes left", "student_id": me},
            expect=201,
        )
        assert (await ws.until("notice"))["data"]["message"] == "Ten minutes left"
        await world.teacher.post(
            f"/sessions/{sid}/notices", {"message": "Pens down soon"}, expect=201
        )
        assert (await ws.until("notice"))["data"]["message"] == "Pens down soon"

        paused = await world.teacher.post(f"{base}/pause", {"reason": "toilet break"})
        assert paused["state"] == "paused"
        assert (await ws.until("timer"))["data"]["timer"]["running"] is False
        student_pause = await world.student.post(
            f"/attempts/{start['attempt_id']}/resume", expect=403
        )
        assert student_pause["error"]["code"] == "forbidden"
        await world.teacher.post(f"{base}/resume", {"reason": "back"})
        assert (await ws.until("timer"))["data"]["timer"]["running"] is True

        missing = await world.teacher.post(f"{base}/terminate", {}, expect=422)
        assert missing["error"]["code"] == "validation_error"
        done = await world.teacher.post(f"{base}/terminate", {"reason": "phone on desk"})
        assert done["reason"] == "terminated"
        assert (await ws.until("assessment_completed"))["data"]["reason"] == "terminated"
        refused = await ws.request(
            "answer_submitted", {"item_id": "q1", "response": "A", "client_seq": 9}
        )
        assert refused["data"]["code"] == "attempt_not_in_progress"

    audit = await world.teacher.get(f"/sessions/{sid}/audit")
    assert [(a["action"], a["reason"], a["actor"]["username"]) for a in audit] == [
        ("time_extended", "fire alarm", "teacher"),
        ("notice_sent", None, "teacher"),
        ("notice_sent", None, "teacher"),
        ("attempt_paused", "toilet break", "teacher"),
        ("attempt_resumed", "back", "teacher"),
        ("attempt_terminated", "phone on desk", "teacher"),
    ]
    async with world.sessions() as s:
        staff = await s.scalars(select(LedgerEvent).where(LedgerEvent.source == "staff"))
        assert len(list(staff)) == 6


async def test_an_accommodation_during_the_exam_moves_only_that_deadline(world: World) -> None:
    _, sid = await scheduled(world, "student1", "student2")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with (
        await session_socket(world.student, sid) as one,
        await session_socket(world.other, sid) as two,
    ):
        await one.until("state_sync_response")
        await two.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        first = (await one.until("session_started"))["data"]["deadline"]
        second = (await two.until("session_started"))["data"]["deadline"]
        me = (await world.student.get("/auth/me"))["id"]
        await world.teacher.http.put(
            f"/sessions/{sid}/participants/{me}/accommodation",
            json={"extra_seconds": 300, "reason": "late start for medical reason"},
        )
        timer = await one.until("timer")
        moved = datetime.fromisoformat(timer["data"]["timer"]["deadline"]) - datetime.fromisoformat(
            first
        )
        assert moved == timedelta(seconds=300)
        grid = {
            r["student"]["username"]: r
            for r in await world.teacher.get(f"/sessions/{sid}/participants")
        }
        assert grid["student2"]["deadline"] == second
        assert grid["student1"]["extra_seconds"] == 300


async def test_force_complete_ends_every_attempt_and_the_stats_add_up(world: World) -> None:
    _, sid = await scheduled(world, "student1", "student2", "student3")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with (
        await session_socket(world.student, sid) as one,
        await session_socket(world.other, sid) as two,
    ):
        await one.until("state_sync_response")
        await two.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        await one.until("session_started")
        await two.until("session_started")
        await one.request("answer_submitted", {"item_id": "q1", "response": "B", "client_seq": 1})
        await one.request("answer_submitted", {"item_id": "q2", "response": "B", "client_seq": 2})
        await two.request("answer_submitted", {"item_id": "q1", "response": "A", "client_seq": 1})
        done = await world.teacher.post(f"/sessions/{sid}/complete", {"reason": "power cut"})
        assert done["state"] == "completed"
        assert (await one.until("session_completed"))["data"]["session_id"] == sid
        ended = [m for m in one.seen if m["type"] == "assessment_completed"]
        assert [m["data"]["reason"] for m in ended] == ["expired"]
    stats = await world.teacher.get(f"/sessions/{sid}/stats")
    assert stats | {"students": None, "average_time_used_seconds": None} == {
        "session_id": sid, "state": "completed", "enrolled": 3, "joined": 2, "not_joined": 1,
        "by_state": {"expired": 2}, "completion_rate": 2 / 3, "average_score": 1.0,
        "highest_score": 2.0, "lowest_score": 0.0, "max_score": 4.0,
        "average_time_used_seconds": None, "students": None,
    }  # fmt: skip
    assert stats["average_time_used_seconds"] >= 0


async def test_a_second_student_socket_supersedes_the_first(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.teacher, sid) as proctor:
        await proctor.until("state_sync_response")
        async with await session_socket(world.student, sid) as first:
            await first.until("state_sync_response")
            async with await session_socket(world.student, sid) as second:
                await second.until("state_sync_response")
                await first.until("superseded")
                with pytest.raises(ConnectionClosed):
                    await first.receive(timeout=5)
                assert first.connection.close_code == 4409
                # The superseded socket leaving does not mark the student as gone.
                pong = await second.request("heartbeat")
                assert pong["type"] == "pong"
                grid = await world.teacher.get(f"/sessions/{sid}/participants")
                assert grid[0]["connected"] is True
        kinds = [m["type"] for m in proctor.seen]
        assert kinds.count("participant_disconnected") == 0
        assert (await proctor.until("participant_disconnected"))["data"]["connected_count"] == 0


async def test_a_test_reserved_for_a_session_cannot_be_taken_self_paced(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    test_id = (await world.teacher.get(f"/sessions/{sid}"))["test_id"]
    refused = await world.student.post("/attempts", {"test_id": test_id}, expect=409)
    assert refused["error"]["code"] == "reserved_for_session"
    assert refused["error"]["details"] == {"session_id": sid}
    # A session paper stays one whatever becomes of the session: cancelled too.
    await world.teacher.post(f"/sessions/{sid}/cancel")
    refused = await world.student.post("/attempts", {"test_id": test_id}, expect=409)
    assert refused["error"]["code"] == "reserved_for_session"


async def test_a_proctor_who_reconnects_gets_exactly_what_they_missed(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as student:
        await student.until("state_sync_response")
        async with await session_socket(world.teacher, sid) as proctor:
            greeting = await proctor.until("connected")
            latest: dict[str, str] = dict(greeting["data"]["positions"])
            assert set(latest) == {"session", "proctor"}
            await proctor.until("state_sync_response")
            await world.teacher.post(f"/sessions/{sid}/start")
            await proctor.until("session_started")
            for message in proctor.seen:
                if message.get("seq"):
                    latest[message["seq"].split(":")[0]] = message["seq"]
        await student.until("session_started")
        await student.request(
            "answer_submitted", {"item_id": "q1", "response": "B", "client_seq": 1}
        )
        await student.request(
            "answer_submitted", {"item_id": "q2", "response": "C", "client_seq": 2}
        )
        await student.request("tab_violation", {"duration_ms": 1000})
        resume = ",".join(latest.values())
        async with await session_socket(world.teacher, sid, last_event_id=resume) as again:
            hello = await again.until("connected")
            assert hello["data"]["recovered"] is True
            await again.until("state_sync_response")
            missed = [(m["seq"].split(":")[0], m["type"]) for m in again.seen if m.get("seq")]
            # The two status-change copies it left before reading, then what happened meanwhile.
            assert missed == [
                ("session", "session_status_changed"),
                ("proctor", "session_status_changed"),
                ("proctor", "answer_submitted"),
                ("proctor", "answer_submitted"),
                ("proctor", "tab_violation"),
                ("proctor", "integrity_alert"),
            ]
        async with await session_socket(world.teacher, sid, last_event_id="proctor:gone:9") as old:
            assert (await old.until("connected"))["data"]["recovered"] is False


async def _resuming_student(world: World) -> tuple[str, str]:
    """A student in a running session who saw one notice and left, and a notice they missed:
    (session id, the `last_event_id` they come back with)."""
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.student, sid) as student:
        hello = await student.until("connected")
        latest = dict(hello["data"]["positions"])
        await student.until("state_sync_response")
        await world.teacher.post(f"/sessions/{sid}/start")
        await student.until("session_started")
        for message in student.seen:
            if message.get("seq"):
                latest[message["seq"].split(":")[0]] = message["seq"]
    await world.teacher.post(f"/sessions/{sid}/notices", {"message": "missed"}, expect=201)
    return sid, ",".join(latest.values())


def _notice_just_before(
    world: World, monkeypatch: pytest.MonkeyPatch, target: Any, method: str, sid: str
) -> None:
    """Publish a notice ("meanwhile") on the session's channel each time, just before
    `target.method` runs: an event landing at that point of a greeting."""
    original = getattr(target, method)
    bus = world.served.runtime.bus

    async def with_a_notice_first(*args: Any, **kwargs: Any) -> Any:
        await bus.publish(f"session:{sid}", "notice", {"message": "meanwhile"})
        return await original(*args, **kwargs)

    monkeypatch.setattr(target, method, with_a_notice_first)


def _notices_and_state(messages: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    """The notices (message, offset) and the state syncs ("state", None), in order received."""
    return [
        ("state", None) if m["type"] == "state_sync_response"
        else (m["data"]["message"], int(m["seq"].rsplit(":", 1)[1]))
        for m in messages
        if m["type"] in ("notice", "state_sync_response")
    ]  # fmt: skip


async def test_an_event_during_the_greeting_comes_after_the_state_it_is_newer_than(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice published while the greeting reads the state from the database is sent after
    that state (sent before it, the older state would come last), missed events before it."""
    sid, resume = await _resuming_student(world)
    _notice_just_before(world, monkeypatch, world.served.runtime.greeter, "state", sid)
    async with await session_socket(world.student, sid, last_event_id=resume) as student:
        assert (await student.until("connected"))["data"]["recovered"] is True
        await student.until("state_sync_response")
        await student.until("notice")
    (missed, first), state, meanwhile = _notices_and_state(student.seen)
    assert (missed, state, meanwhile) == ("missed", ("state", None), ("meanwhile", first + 1))


async def test_an_event_while_positions_are_read_arrives_once_and_in_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice published just as the greeting reads its channels' positions reaches the
    socket twice (live, and in the stream): the student gets it once, after the one they
    missed, and before the state."""
    sid, resume = await _resuming_student(world)
    _notice_just_before(world, monkeypatch, world.served.runtime.bus, "read", sid)
    async with await session_socket(world.student, sid, last_event_id=resume) as student:
        await student.until("state_sync_response")
        await student.send("ping", {"client_time": 0})  # its reply comes after anything held
        await student.until("timer")
    (missed, first), meanwhile, state = _notices_and_state(student.seen)
    assert (missed, meanwhile, state) == ("missed", ("meanwhile", first + 1), ("state", None))


async def test_monitoring_events_resent_with_the_same_id_are_stored_once(world: World) -> None:
    _, sid = await scheduled(world, "student1")
    await world.teacher.post(f"/sessions/{sid}/start-waiting")
    async with await session_socket(world.teacher, sid) as proctor:
        await proctor.until("state_sync_response")
        async with await session_socket(world.student, sid) as ws:
            await ws.until("state_sync_response")
            event = {"kind": "copy", "detail": "Ctrl+C", "client_event_id": "e-17"}
            first = await ws.request("integrity_event", event)
            again = await ws.request("integrity_event", event)
            assert first["type"] == again["type"] == "event_recorded"
            assert first["data"]["event_id"] == again["data"]["event_id"]
            assert (first["data"]["duplicate"], again["data"]["duplicate"]) == (False, True)
            other = await ws.request(
                "integrity_event", {"kind": "paste", "client_event_id": "e-18"}
            )
            assert other["data"]["count"] == 2
            wrong = await ws.request("integrity_event", {"kind": "teleport"})
            assert wrong["data"]["code"] == "invalid_message"
        relayed = [m for m in proctor.seen if m["type"] == "integrity_event"]
        while len(relayed) < 2:
            relayed.append(await proctor.until("integrity_event"))
        assert [m["data"]["kind"] for m in relayed] == ["copy", "paste"]
    async with world.sessions() as s:
        rows = await s.scalars(select(LedgerEvent).where(LedgerEvent.type.in_(SENSORS)))
        stored = [(e.type, e.client_event_id) for e in rows]
    assert sorted(stored) == [("copy", "e-17"), ("paste", "e-18")]
