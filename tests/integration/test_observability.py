"""/metrics and request ids, against both deployments."""

from __future__ import annotations

import httpx

from tests.integration.conftest import World
from tests.integration.test_attempt_socket import greeted
from tests.support import Socket


async def metric(world: World, name: str, **labels: str) -> float:
    """One sample from /metrics, parsed the way Prometheus would."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(base_url=world.base_url) as http:
        reply = await http.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_follow_sockets_messages_answers_fanout_and_expiry(world: World) -> None:
    aid = await world.started_attempt()
    assert await metric(world, "examserver_sockets_open", kind="attempt") == 0
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await greeted(ws)
        assert await metric(world, "examserver_sockets_open", kind="attempt") == 1
        for seq in (1, 2, 3):
            await ws.request("submit_answer", {"item_id": "q1", "response": "A", "client_seq": seq})
        assert await metric(world, "examserver_ws_messages_in_total", type="submit_answer") == 3
        assert await metric(world, "examserver_answer_save_seconds_count") == 3
        assert await metric(world, "examserver_ws_messages_out_total", type="answer_feedback") == 3
        # An extension is published, fanned out to this worker and timed on the way.
        await world.teacher.post(f"/attempts/{aid}/extend", {"seconds": -599, "reason": "test"})
        await ws.until("timer")
        assert await metric(world, "examserver_fanout_seconds_count") >= 1
        await ws.until("assessment_completed", timeout=10)
    assert await metric(world, "examserver_expiry_lag_seconds_count") == 1
    assert await metric(world, "examserver_sockets_open", kind="attempt") == 0
    # The loop watch has been waking every 250 ms since the worker started.
    assert await metric(world, "examserver_event_loop_lag_seconds_count") >= 1


async def test_every_response_carries_a_request_id(world: World) -> None:
    reply = await world.student.http.get("/auth/me")
    assert len(reply.headers["x-request-id"]) == 16
    given = await world.student.http.get("/auth/me", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    odd = await world.student.http.get("/auth/me", headers={"X-Request-ID": "no spaces <here>"})
    assert odd.headers["x-request-id"] != "no spaces <here>"
