"""Pub/sub is at most once: after its connection dies, a worker resubscribes and its sockets
resynchronise (DESIGN.md §5). Real Redis only: the test kills the connection from the server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from delivery_service.settings import Settings
from tests.integration.conftest import World
from tests.support import Socket


@pytest.fixture
def settings(real_settings: Settings) -> Settings:
    """Only the real Redis has connections to kill."""
    return real_settings


async def test_events_published_while_pubsub_is_down_are_replayed_in_order(world: World) -> None:
    """The worker's pub/sub connection is killed and events keep being published: the socket
    gets every one of them exactly once and in order, from the channel's stream (no snapshot)."""
    aid = await world.started_attempt()
    metrics = world.served.runtime.metrics
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await ws.until("attempt_state")
        first = await ws.until("timer")
        assert first.get("seq") is None  # the greeting's timer, not a bus event
        admin = Redis.from_url(world.settings.redis_url)
        try:
            killed = await admin.client_kill_filter(_type="pubsub", skipme=True)
        finally:
            await admin.aclose()
        assert killed >= 1
        deadlines = []
        for _ in range(8):  # some of these land while the worker is resubscribing
            extended = await world.teacher.post(
                f"/attempts/{aid}/extend", {"seconds": 5, "reason": "test"}
            )
            deadlines.append(extended["deadline"])
        seen = []
        while len(seen) < len(deadlines):
            message = await ws.receive(timeout=15)
            assert message["type"] != "attempt_state", "replayed, not a snapshot"
            if message["type"] == "timer":
                seen.append(message)
        offsets = [int(m["seq"].rsplit(":", 1)[1]) for m in seen]
        assert offsets == list(range(offsets[0], offsets[0] + len(deadlines)))
        assert [m["data"]["timer"]["deadline"] for m in seen] == deadlines
    replayed = metrics.resyncs.labels("replayed")._value.get()
    snapshots = metrics.resyncs.labels("snapshot")._value.get()
    assert (replayed, snapshots) == (1, 0)


async def test_a_socket_whose_stream_lost_its_place_gets_a_snapshot(world: World) -> None:
    """When the stream cannot fill the gap (here: the channel's epoch is gone, as after Redis
    lost its data), the socket falls back to a full snapshot from the database."""
    aid = await world.started_attempt()
    runtime = world.served.runtime
    async with Socket.open(world.student.ws_url(aid, ticket=await world.student.ticket())) as ws:
        await ws.until("attempt_state")
        await ws.until("timer")
        from delivery_service.live.keys import attempt_channel

        _, epoch_key, _ = runtime.keys.channel_keys(attempt_channel(aid))
        await runtime.redis.delete(epoch_key)
        admin = Redis.from_url(world.settings.redis_url)
        try:
            assert await admin.client_kill_filter(_type="pubsub", skipme=True) >= 1
        finally:
            await admin.aclose()
        resync = await ws.until("attempt_state", timeout=15)
        assert resync["data"]["id"] == aid
        # Subscribed again: a live event still reaches the socket.
        extended = await world.teacher.post(
            f"/attempts/{aid}/extend", {"seconds": 60, "reason": "test"}
        )
        event = await ws.until("timer", timeout=10)
        while event.get("seq") is None:  # the snapshot's own timer
            event = await ws.until("timer", timeout=10)
        assert event["data"]["timer"]["deadline"] == extended["deadline"]
    assert runtime.metrics.resyncs.labels("snapshot")._value.get() == 1
