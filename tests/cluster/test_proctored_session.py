"""Source 002's whole user flow on two real workers sharing one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.cluster.conftest import Cluster
from tests.support import Api, Socket, sample_test


def session_url(api: Api, session_id: str, ticket: str) -> str:
    base = api.base_url.replace("http://", "ws://")
    return f"{base}/api/v1/sessions/{session_id}/ws?ticket={ticket}"


async def open_session(api: Api, session_id: str) -> Any:
    return Socket.open(session_url(api, session_id, await api.ticket()))


async def setup_session(
    teacher: Api, *students: str, limit: int = 600
) -> tuple[str, dict[str, str]]:
    klass = await teacher.post("/classes", {"name": "Beacon 31"}, expect=201)
    for username in students:
        klass = await teacher.post(
            f"/classes/{klass['id']}/students", {"username": username}, expect=201
        )
    test = await teacher.post("/tests", sample_test(time_limit_seconds=limit), expect=201)
    session = await teacher.post(
        "/sessions",
        {
            "class_id": klass["id"],
            "test_id": test["id"],
            "title": "Monday 8 PM mock exam",
            "scheduled_at": datetime.now(UTC).isoformat(),
        },
        expect=201,
    )
    return session["id"], {s["username"]: s["id"] for s in klass["students"]}


async def test_the_whole_proctored_session_across_two_workers(cluster: Cluster) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    s1_b = await Api.login(b.base_url, "student1")
    s2_a = await Api.login(a.base_url, "student2")
    s3_b = await Api.login(b.base_url, "student3")
    sid, ids = await setup_session(teacher, "student1", "student2", "student3", limit=12)

    async with await open_session(teacher, sid) as proctor:
        assert (await proctor.until("connected"))["data"]["role"] == "proctor"
        await proctor.until("state_sync_response")
        await teacher.post(f"/sessions/{sid}/start-waiting")
        assert (await proctor.until("waiting_room_opened"))["data"]["session_id"] == sid

        async with await open_session(s1_b, sid) as one, await open_session(s2_a, sid) as two:
            for ws in (one, two):
                await ws.until("state_sync_response")
            joined = {(await proctor.until("participant_joined"))["data"]["username"] for _ in "12"}
            assert joined == {"student1", "student2"}

            session = await teacher.post(f"/sessions/{sid}/start")
            ends_at = session["ends_at"]
            s1_start = (await one.until("session_started"))["data"]
            assert (await two.until("session_started"))["data"]["deadline"] == ends_at
            assert s1_start["deadline"] == ends_at
            seen = (await proctor.until("session_started"))["data"]
            assert set(seen["assignments"]) == {ids["student1"], ids["student2"]}

            # A student on worker B acts; the proctor on worker A sees it live.
            ack = await one.request(
                "answer_submitted", {"item_id": "q1", "response": "B", "client_seq": 1}
            )
            assert ack["data"]["applied"] is True
            live = (await proctor.until("answer_submitted"))["data"]
            assert (live["student_id"], live["item_id"], live["answered"]) == (
                ids["student1"],
                "q1",
                1,
            )
            await one.request("tab_violation", {"duration_ms": 3000})
            violation = (await proctor.until("tab_violation"))["data"]
            assert (violation["student_id"], violation["count"]) == (ids["student1"], 1)
            await two.request(
                "answer_submitted", {"item_id": "q1", "response": "A", "client_seq": 1}
            )
            assert (await proctor.until("answer_submitted"))["data"]["student_id"] == ids[
                "student2"
            ]

        # Both sockets closed: student1 dropped, student2 too.
        gone = {
            (await proctor.until("participant_disconnected"))["data"]["student_id"] for _ in "12"
        }
        assert gone == {ids["student1"], ids["student2"]}

        # student1 comes back, on the other worker this time: the same attempt, exactly.
        s1_a = Api(a.base_url, s1_b.token)
        async with await open_session(s1_a, sid) as again:
            attempt = (await again.until("state_sync_response"))["data"]["attempt"]
            assert attempt["id"] == s1_start["attempt_id"]
            assert attempt["responses"] == {"q1": ["B"]}
            assert attempt["timer"]["deadline"] == ends_at
            assert (await proctor.until("participant_joined"))["data"]["username"] == "student1"

            # The late joiner gets an attempt that ends with everyone else's: less time.
            async with await open_session(s3_b, sid) as late:
                late_attempt = (await late.until("state_sync_response"))["data"]["attempt"]
                assert late_attempt["timer"]["deadline"] == ends_at
                assert late_attempt["started_at"] > session["started_at"]
                await proctor.until("participant_joined")

                # Time runs out: each attempt expires once, and the session completes by itself.
                for ws in (again, late):
                    done = await ws.until("assessment_completed", timeout=30)
                    assert done["data"]["reason"] == "expired"
                await again.until("session_completed", timeout=30)
        completed = await proctor.until("session_completed", timeout=30)
        assert completed["data"]["session_id"] == sid
        finished = [m for m in proctor.seen if m["type"] == "assessment_completed"]
        assert sorted(m["data"]["student_id"] for m in finished) == sorted(ids.values())

    stats = await teacher.get(f"/sessions/{sid}/stats")
    assert (stats["state"], stats["by_state"], stats["joined"]) == ("completed", {"expired": 3}, 3)
    assert (stats["highest_score"], stats["lowest_score"]) == (1.0, 0.0)
    for api in (teacher, s1_b, s2_a, s3_b, s1_a):
        await api.close()


async def test_a_second_tab_on_another_worker_supersedes_the_session_socket(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    on_a = await Api.login(a.base_url, "student1")
    on_b = Api(b.base_url, on_a.token)
    sid, _ = await setup_session(teacher, "student1")
    await teacher.post(f"/sessions/{sid}/start-waiting")
    async with await open_session(on_a, sid) as first:
        await first.until("state_sync_response")
        async with await open_session(on_b, sid) as second:
            await second.until("state_sync_response")
            await first.until("superseded")
            with pytest.raises(ConnectionClosed):
                await first.receive(timeout=5)
            assert first.connection.close_code == 4409
            await asyncio.sleep(0.3)
            grid = await teacher.get(f"/sessions/{sid}/participants")
            assert grid[0]["connected"] is True, "the superseded tab must not mark them gone"
    for api in (teacher, on_a, on_b):
        await api.close()


async def test_a_completed_attempt_cannot_be_reopened(cluster: Cluster) -> None:
    a = await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    student = await Api.login(a.base_url, "student1")
    sid, ids = await setup_session(teacher, "student1")
    await teacher.post(f"/sessions/{sid}/start-waiting")
    async with await open_session(student, sid) as ws:
        await ws.until("state_sync_response")
        await teacher.post(f"/sessions/{sid}/start")
        started = (await ws.until("session_started"))["data"]
        await teacher.post(
            f"/sessions/{sid}/participants/{ids['student1']}/terminate", {"reason": "left early"}
        )
        await ws.until("assessment_completed")
    async with await open_session(student, sid) as ws:
        attempt = (await ws.until("state_sync_response"))["data"]["attempt"]
        assert (attempt["id"], attempt["state"]) == (started["attempt_id"], "terminated")
        refused = await ws.request(
            "answer_submitted", {"item_id": "q1", "response": "A", "client_seq": 1}
        )
        assert refused["data"]["code"] == "attempt_not_in_progress"
    reopen = await student.post(f"/attempts/{started['attempt_id']}/start", expect=409)
    assert reopen["error"]["code"] == "invalid_transition"
    await teacher.close()
    await student.close()
