"""What crosses workers, proven with two real worker processes on one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from delivery_service.live.keys import attempt_channel
from delivery_service.storage.models import Attempt, ResponseEvent
from tests.cluster.conftest import Cluster
from tests.support import Api, Socket, sample_test


async def hello(socket: Socket) -> dict[str, object]:
    await socket.until("auth_success")
    state = await socket.until("attempt_state")
    await socket.until("timer")
    return dict(state["data"])


async def new_attempt(teacher: Api, student: Api, *, start: bool = True, **spec: object) -> str:
    test = await teacher.post("/tests", sample_test(**spec), expect=201)
    attempt = await student.post("/attempts", {"test_id": test["id"]}, expect=201)
    if start:
        await student.post(f"/attempts/{attempt['id']}/start")
    return str(attempt["id"])


async def test_a_candidate_resumes_on_another_worker_after_theirs_dies(cluster: Cluster) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    on_a = await Api.login(a.base_url, "student1")
    aid = await new_attempt(teacher, on_a, start=False)

    async with Socket.open(on_a.ws_url(aid, ticket=await on_a.ticket())) as ws:
        await hello(ws)
        started = await ws.request("start_assessment")
        deadline = started["data"]["timer"]["deadline"]
        for seq, (item, choice) in enumerate([("q1", "B"), ("q2", "C"), ("q4", "A")], start=1):
            ack = await ws.request(
                "submit_answer", {"item_id": item, "response": choice, "client_seq": seq}
            )
            assert ack["type"] == "answer_feedback"
        await ws.request("flag", {"item_id": "q3", "flagged": True})
        await ws.request("navigate", {"to": 2})
        a.kill()
        with pytest.raises(ConnectionClosed):
            await ws.receive(timeout=5)

    await asyncio.sleep(1.0)
    on_b = Api(b.base_url, on_a.token)  # the same token works on every worker
    async with Socket.open(on_b.ws_url(aid, ticket=await on_b.ticket())) as ws:
        state = await hello(ws)
        assert state["position"] == 2
        assert state["responses"] == {"q1": ["B"], "q2": ["C"], "q4": ["A"]}
        assert state["flags"] == ["q3"]
        timer = state["timer"]
        assert isinstance(timer, dict)
        assert timer["deadline"] == deadline, "the timer must not pause while the candidate is away"
        assert timer["running"] is True
        elapsed = datetime.fromisoformat(timer["server_now"]) - datetime.fromisoformat(
            started["data"]["timer"]["server_now"]
        )
        assert timer["remaining_ms"] <= 600_000 - elapsed.total_seconds() * 1000 + 50
        ack = await ws.request(
            "submit_answer", {"item_id": "q3", "response": ["A", "C"], "client_seq": 4}
        )
        assert ack["data"]["applied"] is True
    async with cluster.sessions() as s:
        seqs = sorted(await s.scalars(select(ResponseEvent.client_seq)))
    assert seqs == [1, 2, 3, 4]
    for api in (teacher, on_a, on_b):
        await api.close()


async def test_a_second_connection_on_another_worker_supersedes_the_first(cluster: Cluster) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    on_a = await Api.login(a.base_url, "student1")
    on_b = Api(b.base_url, on_a.token)
    aid = await new_attempt(teacher, on_a)
    async with Socket.open(on_a.ws_url(aid, ticket=await on_a.ticket())) as first:
        await hello(first)
        async with Socket.open(on_b.ws_url(aid, ticket=await on_b.ticket())) as second:
            await hello(second)
            assert (await first.until("superseded"))["type"] == "superseded"
            with pytest.raises(ConnectionClosed):
                await first.receive(timeout=5)
            assert first.connection.close_code == 4409
            ack = await second.request(
                "submit_answer", {"item_id": "q1", "response": "A", "client_seq": 1}
            )
            assert ack["type"] == "answer_feedback"
    for api in (teacher, on_a, on_b):
        await api.close()


async def test_an_event_on_one_worker_reaches_a_socket_on_the_other(cluster: Cluster) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    student = await Api.login(b.base_url, "student1")
    aid = await new_attempt(teacher, student)
    async with Socket.open(student.ws_url(aid, ticket=await student.ticket())) as ws:
        await hello(ws)
        await teacher.post(f"/attempts/{aid}/extend", {"seconds": 120, "reason": "test"})
        event = await ws.until("timer")
        assert event["data"]["timer"]["remaining_ms"] > 700_000
        await teacher.post(f"/attempts/{aid}/terminate", {"reason": "left the room"})
        completed = await ws.until("assessment_completed")
        assert completed["data"]["reason"] == "terminated"
    await teacher.close()
    await student.close()


async def test_with_both_workers_sweeping_each_attempt_expires_exactly_once(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    test = await teacher.post("/tests", sample_test(), expect=201)
    attempts: list[str] = []
    students: list[Api] = []
    for n in range(1, 13):
        student = await Api.login((a, b)[n % 2].base_url, f"student{n}")
        students.append(student)
        attempt = await student.post("/attempts", {"test_id": test["id"]}, expect=201)
        await student.post(f"/attempts/{attempt['id']}/start")
        await student.post(
            f"/attempts/{attempt['id']}/answers",
            {"item_id": "q1", "response": "B", "client_seq": 1},
        )
        attempts.append(attempt["id"])
    for aid in attempts:  # all due within the same moment
        await teacher.post(f"/attempts/{aid}/extend", {"seconds": -599, "reason": "test"})
    for _ in range(100):
        async with cluster.sessions() as s:
            states = list(await s.scalars(select(Attempt.state)))
        if states.count("expired") == len(attempts):
            break
        await asyncio.sleep(0.1)
    assert states.count("expired") == len(attempts)
    for aid in attempts:
        _, _, stream = cluster.keys.channel_keys(attempt_channel(aid))
        entries = await cluster.redis.xrange(stream)
        kinds = [json.loads(fields["e"])["type"] for _, fields in entries]
        assert kinds.count("assessment_completed") == 1, (aid, kinds)
    async with cluster.sessions() as s:
        scores = list(await s.scalars(select(Attempt.score)))
    assert scores == [1.0] * len(attempts)
    for api in [teacher, *students]:
        await api.close()


async def test_redis_losing_everything_mid_exam_changes_nothing_for_the_candidate(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    student = await Api.login(a.base_url, "student1")
    on_b = Api(b.base_url, student.token)
    aid = await new_attempt(teacher, student)
    async with Socket.open(student.ws_url(aid, ticket=await student.ticket())) as old:
        state = await hello(old)
        deadline = state["timer"]["deadline"]  # type: ignore[index]
        await old.request("submit_answer", {"item_id": "q1", "response": "B", "client_seq": 1})

        await cluster.redis.flushdb()  # every key of ours: timers, deadlines, streams, owners

        timer = await old.request("ping", {"client_time": 1})
        assert timer["data"]["timer"]["deadline"] == deadline
        for _ in range(50):  # the sweepers notice the missing epoch and rebuild from PostgreSQL
            if await cluster.redis.get(cluster.keys.timer(aid)) is not None:
                break
            await asyncio.sleep(0.1)
        restored = int(await cluster.redis.get(cluster.keys.timer(aid)) or 0)
        assert restored == int(datetime.fromisoformat(deadline).timestamp() * 1000)

        async with Socket.open(on_b.ws_url(aid, ticket=await on_b.ticket())) as new:
            assert (await hello(new))["responses"] == {"q1": ["B"]}
            # The owner key was lost, so no one could tell the old socket; it finds out itself
            # on its next write and can change nothing.
            refused = await old.request(
                "submit_answer", {"item_id": "q2", "response": "C", "client_seq": 2}
            )
            assert refused["data"]["code"] == "superseded"
            with pytest.raises(ConnectionClosed):
                await old.until("never", timeout=5)
            assert old.connection.close_code == 4409

            ack = await new.request(
                "submit_answer", {"item_id": "q2", "response": "A", "client_seq": 2}
            )
            assert ack["data"]["applied"] is True
            await teacher.post(f"/attempts/{aid}/extend", {"seconds": -599, "reason": "test"})
            completed = await new.until("assessment_completed", timeout=15)
            assert completed["data"]["reason"] == "expired"
            assert completed["data"]["answered"] == 2
    for api in (teacher, student, on_b):
        await api.close()


async def test_timers_survive_every_worker_restarting_with_redis_emptied_meanwhile(
    cluster: Cluster,
) -> None:
    a = await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    student = await Api.login(a.base_url, "student1")
    running = await new_attempt(teacher, student)
    due = await new_attempt(teacher, student, attempt_limit=1)
    before = await student.get(f"/attempts/{running}")
    await teacher.post(f"/attempts/{due}/extend", {"seconds": -598, "reason": "test"})
    await teacher.close()
    await student.close()

    cluster.stop_all()
    await cluster.redis.flushdb()
    await asyncio.sleep(2.5)  # `due` passes its deadline while no worker runs

    c, d = await cluster.start_worker(), await cluster.start_worker()
    student = await Api.login(d.base_url, "student1")
    for _ in range(50):
        if (await student.get(f"/attempts/{due}"))["state"] == "expired":
            break
        await asyncio.sleep(0.1)
    assert (await student.get(f"/attempts/{due}"))["state"] == "expired"
    after = await student.get(f"/attempts/{running}")
    assert after["state"] == "in_progress"
    assert after["timer"]["deadline"] == before["timer"]["deadline"]
    assert await cluster.redis.zscore(cluster.keys.deadlines, running) is not None
    await student.close()
    assert c.process.poll() is None


async def test_the_regular_timer_rebuild_runs_on_one_worker_per_interval(
    cluster: Cluster,
) -> None:
    """Both workers sweep, but each interval only one of them rebuilds Redis from the database
    (it repairs the Redis they share); a timer entry Redis lost comes back all the same."""
    from prometheus_client.parser import text_string_to_metric_families

    cluster.env["EXAMSERVER_RECONCILE_INTERVAL_SECONDS"] = "1"
    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(a.base_url, "teacher")
    student = await Api.login(b.base_url, "student1")
    running = await new_attempt(teacher, student)
    await cluster.redis.zrem(cluster.keys.deadlines, running)

    async def rebuilds(worker_url: str) -> float:
        async with httpx.AsyncClient(base_url=worker_url) as http:
            text = (await http.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "examserver_timer_rebuilds_total":
                    return float(sample.value)
        raise AssertionError("examserver_timer_rebuilds_total is not exposed")

    before = [await rebuilds(w.base_url) for w in (a, b)]
    await asyncio.sleep(5.2)
    after = [await rebuilds(w.base_url) for w in (a, b)]
    runs = sum(after) - sum(before)
    # About five intervals passed: one rebuild each across the cluster (two workers each
    # rebuilding every interval would make about ten).
    assert 3 <= runs <= 7, (before, after)
    assert await cluster.redis.zscore(cluster.keys.deadlines, running) is not None
    await teacher.close()
    await student.close()


async def test_a_terminated_worker_drains_and_its_candidate_continues_elsewhere(
    cluster: Cluster,
) -> None:
    import httpx

    a, b = await cluster.start_worker(), await cluster.start_worker()
    teacher = await Api.login(b.base_url, "teacher")
    student = await Api.login(a.base_url, "student1")
    aid = await new_attempt(teacher, student)
    async with Socket.open(student.ws_url(aid, ticket=await student.ticket())) as ws:
        await hello(ws)
        await ws.request("submit_answer", {"item_id": "q1", "response": "B", "client_seq": 1})
        a.process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=a.base_url) as http:
            for _ in range(20):
                ready = await http.get("/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json()["checks"]["draining"] is True
        # Still serving its candidate while the load balancer moves traffic away.
        ack = await ws.request("submit_answer", {"item_id": "q2", "response": "A", "client_seq": 2})
        assert ack["type"] == "answer_feedback"
        with pytest.raises(ConnectionClosed):
            await ws.until("never", timeout=15)
        assert ws.connection.close_code == 1012
    a.process.wait(timeout=15)
    on_b = Api(b.base_url, student.token)
    async with Socket.open(on_b.ws_url(aid, ticket=await on_b.ticket())) as ws:
        assert (await hello(ws))["responses"] == {"q1": ["B"], "q2": ["A"]}
    for api in (teacher, student, on_b):
        await api.close()
