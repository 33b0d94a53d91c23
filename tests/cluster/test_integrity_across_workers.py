"""The integrity ledger and its alerts on two real workers sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.cluster.conftest import Cluster
from tests.cluster.test_proctored_session import open_session
from tests.support import Api, sample_test


async def test_two_workers_writing_to_one_attempt_keep_one_valid_chain(cluster: Cluster) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    on_a = await Api.login(a.base_url, "student1")
    on_b = Api(b.base_url, on_a.token)
    test = await teacher.post("/tests", sample_test(), expect=201)
    aid = (await on_a.post("/attempts", {"test_id": test["id"]}, expect=201))["id"]
    await on_b.post(f"/attempts/{aid}/start")

    async def answer(seq: int) -> None:
        body = {"item_id": f"q{seq % 4 + 1}", "response": "A", "client_seq": seq}
        await on_a.post(f"/attempts/{aid}/answers", body)

    async def sensor(n: int) -> None:
        event = {"type": "integrity_event",
                 "data": {"kind": "window_blur", "client_event_id": f"blur-{n}"}}  # fmt: skip
        await on_b.post(f"/attempts/{aid}/events", {"events": [event]})

    await asyncio.gather(*(answer(n) for n in range(1, 31)), *(sensor(n) for n in range(30)))

    chain = await teacher.get(f"/attempts/{aid}/ledger")
    assert [e["seq"] for e in chain] == list(range(1, 63))
    assert sum(e["type"] == "answer_saved" for e in chain) == 30
    assert sum(e["type"] == "window_blur" for e in chain) == 30
    assert [e["prev_hash"] for e in chain[1:]] == [e["hash"] for e in chain[:-1]]
    teacher_b = Api(b.base_url, teacher.token)
    verdict = await teacher_b.get(f"/attempts/{aid}/ledger/verify")
    assert (verdict["ok"], verdict["events"]) == (True, 62)
    for api in (teacher, teacher_b, on_a, on_b):
        await api.close()


async def test_an_alert_raised_on_one_worker_reaches_the_proctor_on_the_other(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    student = await Api.login(b.base_url, "student1")
    klass = await teacher.post("/classes", {"name": "Beacon 31"}, expect=201)
    await teacher.post(f"/classes/{klass['id']}/students", {"username": "student1"}, expect=201)
    lockdown = {"allowed_tab_switches": 0, "on_exceed": "flag", "require_fullscreen": True}
    test = await teacher.post("/tests", sample_test(lockdown=lockdown), expect=201)
    session = await teacher.post(
        "/sessions",
        {"class_id": klass["id"], "test_id": test["id"], "title": "Mock",
         "scheduled_at": datetime.now(UTC).isoformat()},
        expect=201,
    )  # fmt: skip
    sid = session["id"]
    await teacher.post(f"/sessions/{sid}/start-waiting")

    async with await open_session(teacher, sid) as proctor:
        await proctor.until("state_sync_response")
        async with await open_session(student, sid) as ws:
            await ws.until("state_sync_response")
            await teacher.post(f"/sessions/{sid}/start")
            started = (await ws.until("session_started"))["data"]
            now = datetime.now(UTC).timestamp() * 1000
            burst: list[dict[str, Any]] = [
                {"type": "integrity_event",
                 "data": {"kind": "fullscreen_exit", "client_event_id": "x1", "client_time": now}},
                {"type": "integrity_event",
                 "data": {"kind": "tab_hidden", "client_event_id": "x2", "client_time": now + 50}},
                {"type": "integrity_event",
                 "data": {"kind": "tab_visible", "duration_ms": 30_000, "client_event_id": "x3",
                          "client_time": now + 30_050}},
            ]  # fmt: skip
            acked = await ws.request("integrity_batch", {"events": burst})
            assert acked["type"] == "events_recorded"
            warnings = {m["data"]["rule"] for m in ws.seen if m["type"] == "integrity_warning"}
            while warnings != {"fullscreen_exit", "tab_switch_limit"}:
                warnings.add((await ws.until("integrity_warning"))["data"]["rule"])

            # One burst, one incident on the proctor's screen, however many signals it made.
            alert = (await proctor.until("integrity_alert"))["data"]
            assert alert["attempt_id"] == started["attempt_id"]
            assert (alert["kinds"], alert["longest_absence_ms"]) == (
                {"fullscreen_exit": 1, "tab_hidden": 1, "tab_visible": 1},
                30_000,
            )
            assert {v["rule"] for v in alert["violations"]} == {
                "fullscreen_exit",
                "tab_switch_limit",
            }
            assert alert["marked_for_review"] is True
            assert sum(m["type"] == "integrity_alert" for m in proctor.seen) == 1

    review = await teacher.get("/integrity/review")
    assert [r["attempt_id"] for r in review] == [started["attempt_id"]]
    for api in (teacher, student):
        await api.close()
